"""The ``mgie`` guide: a multimodal LLM writes the expressive instruction and [IMG] tokens whose hidden
states, through the edit head, condition an InstructPix2Pix UNet (Fu et al., ICLR 2024)."""
from __future__ import annotations

import json
import time
from typing import Any

from editkit.errors import GuideConfigError
from editkit.guide import Guide
from editkit.types import Conditioning, EditRequest, EditResult

from .config import MGIEConfig



class MGIEGuide(Guide):
    name = "mgie"
    Config = MGIEConfig

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        """Cheap options for the guide contract. Until the tiny EditWorld MGIE is committed, random tiny
        weights are written to a temporary folder once per process (plumbing only, never a demo)."""
        from .layout import CONFIG_FILE, EDITWORLD_MGIE

        options: dict[str, Any] = {"steps": 2, "progress": False}
        if not (EDITWORLD_MGIE / CONFIG_FILE).is_file():
            from editkit.testing import temporary_weights

            from .tiny import build_random

            options["model"] = temporary_weights("mgie-contract", build_random)
        return options

    # ------------------------------------------------------------------ loading
    def load(self, backends) -> None:
        import torch

        from editkit.backend.cache import resolve_device
        from editkit.quantization import check_quantize

        from .layout import diffusion_loader, load

        cfg = self.config
        self._check_llm_options()
        device = resolve_device(cfg.device)
        check_quantize(self.name, cfg.quantize, device)
        dtype = getattr(torch, cfg.dtype)
        parts = load(cfg.model, device=device, dtype=dtype, quantize=cfg.quantize,
                     vision_tower=cfg.vision_tower, pipeline=cfg.pipeline)
        self.mllm, self.edit_head, self.emb, self.weights = parts.mllm, parts.edit_head, parts.emb, parts
        # One backend per (shell, UNet weights, recommended guidance): a second mgie guide with other options
        # shares it, and the shell's own UNet and text encoder are never loaded.
        sampling = (parts.config or {}).get("sampling", {})
        text = cfg.conditioning == "expressive_text"  # LGIE also needs the shell's text encoder
        self.backend = backends.get(parts.pipeline, device=cfg.device, dtype=cfg.dtype,
                                    loader=diffusion_loader(parts.unet, sampling, text=text),
                                    key=f"mgie:{parts.unet}:{json.dumps(sampling, sort_keys=True)}:text={text}")
        with torch.inference_mode():
            # edit_head(zeros, EMB) (LGIE: the empty prompt), computed once
            self._null = self.backend.encode_text([""]) if text else self.edit_head.null(self.emb)

    def _check_llm_options(self) -> None:
        if self.config.compile_llm and self.config.llm_cache != "static":
            raise GuideConfigError(self.name, "compile_llm", "needs llm_cache='static'")

    random_sizes = ("test", "7b")

    def load_random(self, backends, size: str) -> None:
        """Random weights in MGIE's shapes ('7b': LLaVA-7B + ViT-L/14, 77 x 768 edit head, SD1.5 UNet), for
        benchmarks: the LLM never writes [IMG] tokens, so it decodes max_new_tokens and uses the fallback."""
        import torch

        from editkit.backend.cache import resolve_device

        from .random_arch import build

        cfg = self.config
        self._check_llm_options()
        device = resolve_device(cfg.device)
        parts = build(size, device, getattr(torch, cfg.dtype))
        self.mllm, self.edit_head, self.emb = parts["mllm"], parts["edit_head"], parts["emb"]
        self.backend = backends.get(f"random:mgie-{size}", device=cfg.device, dtype=cfg.dtype, key="mgie",
                                    loader=lambda _src: parts["components"])
        with torch.inference_mode():
            self._null = self.edit_head.null(self.emb)

    # ------------------------------------------------------------------ stages
    def generation_options(self) -> dict[str, Any]:
        cfg, meta = self.config, self.mllm.meta
        return {
            "cache": cfg.llm_cache,
            "compile": cfg.compile_llm,
            "max_new_tokens": int(cfg.max_new_tokens or meta.get("max_new_tokens", 96)),
            "no_repeat_ngram_size": int(cfg.no_repeat_ngram_size if cfg.no_repeat_ngram_size is not None
                                        else meta.get("no_repeat_ngram_size", 3)),
        }

    def run_llm(self, request: EditRequest):
        """The LLM stage: expressive instructions and the [IMG] hidden states of the whole batch."""
        return self.mllm.run(request.images, request.instructions, **self.generation_options())

    def conditioning(self, hidden, texts: list[str] | None = None) -> Conditioning:
        """The UNet conditioning of a batch: the edit head over the [IMG] states ``hidden``, or with
        ``conditioning='expressive_text'`` the text encoder over the expressive instructions ``texts``."""
        import torch

        if self.config.conditioning == "expressive_text":
            if texts is None:
                raise ValueError("conditioning='expressive_text' needs the expressive instructions")
            cond = self.backend.encode_text(list(texts))
        else:
            with torch.inference_mode():
                cond = self.edit_head(hidden.to(self.emb.dtype), self.emb)
        return Conditioning(cond=cond, null=self._null, mode="ip2p", **self.dual_guidance_scales())

    def prepare(self, request: EditRequest) -> Conditioning:
        out = self.run_llm(request)
        return self.conditioning(out.hidden, out.texts)

    def _resize(self, request: EditRequest) -> EditRequest:
        n = self.config.resolution
        if not n:
            return request
        from dataclasses import replace

        from PIL import Image, ImageOps

        images = [ImageOps.fit(im, (n, n), Image.Resampling.LANCZOS) for im in request.images]
        masks = None if request.masks is None else [ImageOps.fit(m, (n, n), Image.Resampling.NEAREST)
                                                     for m in request.masks]
        return replace(request, images=images, masks=masks)

    def edit(self, request: EditRequest) -> EditResult:
        if self.backend is None:
            raise RuntimeError(f"guide '{self.name}' is not loaded; call load() first")
        self.check_inputs(request)
        request = self._resize(request)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        out = self.run_llm(request)
        timings["llm"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cond = self.conditioning(out.hidden, out.texts)
        timings["edit_head"] = time.perf_counter() - t0
        timings["prepare"] = timings["llm"] + timings["edit_head"]
        sampling = self.sampling_options()
        images = self.backend.generate(cond, request, hooks=self, timings=timings, speed=self.speed_options(),
                                       **sampling)
        n = self.mllm.n_img
        warnings = [
            f"mgie: sample {i}: the model generated no [IMG0] token within "
            f"{self.generation_options()['max_new_tokens']} new tokens; the edit head used the last {n} "
            "positions instead (the reference's fallback)"
            for i, ok in enumerate(out.found) if not ok
        ]
        return EditResult(images=images, guide=self.name, config=self.effective_config(sampling), seed=request.seed,
                          text=list(out.texts), timings=timings, warnings=warnings,
                          extras={"img_token_found": list(out.found), "llm_output": list(out.raw)})
