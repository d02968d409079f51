"""The ``any2pix`` guide: ImageBind references -> LLM [base]/[gen] -> refinement prior -> condition mix ->
IP-Adapter diffusion from the DDIM-inverted base image."""
from __future__ import annotations

from typing import Any, ClassVar

from editkit.errors import GuideLoadError
from editkit.guide import Guide
from editkit.types import Conditioning, EditRequest

from .config import Any2PixConfig

MAX_REFERENCES = 3
#: The reference's sampling settings, used when neither the options nor the weights' "sampling" set them.
REFERENCE_SAMPLING = {"steps": 25, "cfg": 10.0}
#: The reference's prompt prefix (with the separator it forgot) and negative prompt, used when the weights' config
#: does not set its own.
PROMPT_PREFIX = "best quality, high quality, "
NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"


class Any2PixGuide(Guide):
    name = "any2pix"
    Config = Any2PixConfig
    accepts: ClassVar[frozenset[str]] = frozenset(
        [f"image{i}" for i in range(1, MAX_REFERENCES + 1)] + [f"audio{i}" for i in range(1, MAX_REFERENCES + 1)])

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        """The committed tiny EditWorld weights, or a scripted random folder (plumbing only, built once per
        process) where they are absent; without the optional ImageBind code the contract is skipped."""
        from . import layout
        from .encoders import import_imagebind

        try:
            import_imagebind()
        except GuideLoadError as exc:
            import pytest

            pytest.skip(str(exc))
        options: dict[str, Any] = {"steps": 2, "progress": False}
        if not (layout.EDITWORLD_ANY2PIX / layout.CONFIG_FILE).is_file():
            from editkit.testing import temporary_weights

            from .tiny import build_folder

            options["model"] = temporary_weights("any2pix-contract", build_folder)
        return options

    def load(self, backends) -> None:
        import torch

        from editkit.backend import LatentDiffusionBackend, load_components
        from editkit.backend.cache import resolve_device
        from editkit.backend.components import sampling_settings, text_to_image_unet
        from editkit.quantization import check_quantize

        from . import layout

        cfg = self.config
        dtype = getattr(torch, cfg.dtype)
        device = resolve_device(cfg.device)
        check_quantize(self.name, cfg.quantize, device)
        self.weights = layout.load(cfg.model, device=device, dtype=dtype, quantize=cfg.quantize)
        # own backend: the IP-Adapter processors change the UNet, so it is never shared with other guides
        comps = load_components(self.weights.pipeline)
        comps.unet = text_to_image_unet(comps.unet)  # an ip2p UNet without its source channels
        # the recommendation is this folder's, not the pipeline folder's (whose editkit_sampling.json is ip2p's)
        comps.extra["sampling"] = sampling_settings(self.weights.config.get("sampling", {}),
                                                    "guide 'any2pix': 'sampling' in any2pix_config.json")
        self.backend = LatentDiffusionBackend(comps, device=device, dtype=dtype)
        layout.attach_adapter(self.backend.unet, self.weights.adapter, cfg.adapter_scale)
        unet = self.backend.unet.to(self.backend.device)  # the adapter's new layers
        if dtype != torch.float32:
            unet.to(dtype=dtype)
        unet.requires_grad_(False)
        self._texts: list[str | None] = []

    def sampling_value(self, name: str):
        """Option ``name`` (steps, cfg) as set, else the weights' recommendation, else the reference."""
        value = getattr(self.config, name)
        return value if value is not None else self.recommended(name, REFERENCE_SAMPLING[name])

    def text_output(self, request: EditRequest) -> list[str | None]:
        return list(self._texts)

    def prepare(self, request: EditRequest) -> Conditioning:
        import torch

        from . import language, mixing
        from .inputs import referenced

        cfg, w, backend = self.config, self.weights, self.backend
        norm = cfg.norm
        gens, bases, captions, self._texts, self._chosen = [], [], [], [], []
        for i, (image, instruction) in enumerate(zip(request.images, request.instructions)):
            names = language.references(instruction)
            inputs = referenced(request.inputs, names)
            feats = [w.encoder.encode_images([image.convert("RGB")])]
            for name in names:
                value = inputs[name]
                feats.append(w.encoder.encode_images([value]) if name.startswith("image")
                             else w.encoder.encode_audio([value]))
            features = mixing.to_norm(torch.cat(feats), norm)
            answer = w.llm.answer(instruction, features.to(w.llm.device), temperature=cfg.temperature,
                                  max_new_tokens=cfg.max_new_tokens, seed=request.seed + i)
            # the base image: among the image inputs (the source first), the best cosine match of [base]
            candidates = [image] + [inputs[n] for n in names if n.startswith("image")]
            cand_feats = torch.cat([features[:1]] + [features[1 + k:2 + k] for k, n in enumerate(names)
                                                     if n.startswith("image")])
            pick = 0
            if answer.base is not None and len(candidates) > 1:
                pick = int((mixing.to_norm(answer.base[None].to(cand_feats), norm) @ cand_feats.T).argmax())
            self._chosen.append(pick)
            bases.append((candidates[pick], cand_feats[pick]))
            gens.append(answer.gen.to(cand_feats))
            captions.append(answer.caption or "")
            self._texts.append(answer.text)

        gen = torch.stack(gens)
        base_feat = torch.stack([b[1] for b in bases])
        prior = w.prior.refine(gen.to(next(w.prior.parameters()).device), guidance=cfg.prior_guidance,
                               score=cfg.score, negative_score=cfg.negative_score).to(gen)
        condition = mixing.condition_mix(base_feat, gen, prior, (cfg.h_base, cfg.h_gen, cfg.h_prior), norm)

        # DDIM inversion of the base images (resized to the source size), mixed with fresh noise by alpha
        size = request.images[0].size
        base_images = [b[0].convert("RGB").resize(size) if b[0].size != size else b[0] for b in bases]
        pixels, _ = backend.images_to_tensor(base_images)
        latents = backend.encode(pixels, scaled=True)
        meta = w.config.get("llm", {})
        null_text, null_pooled = backend.encode_prompts([""])
        zeros = torch.zeros_like(condition)
        added = {"image_embeds": [zeros[:, None].to(backend.device, backend.dtype)]}
        if backend.is_sdxl:  # SDXL's pooled prompt and size conditioning, as in sampling
            added.update(backend.sdxl_added_cond(null_pooled, pixels.shape[-2], pixels.shape[-1], len(base_images)))
        inverted = backend.invert(latents, null_text.expand(len(base_images), -1, -1), steps=self.sampling_value("steps"),
                                  unet_kwargs={"added_cond_kwargs": added})
        gen_noise = [torch.Generator().manual_seed(s) for s in request.seeds()]
        noise = torch.cat([torch.randn((1, *inverted.shape[1:]), generator=g) for g in gen_noise]).to(inverted)
        init = mixing.polar_mix(inverted.float(), noise.float(), cfg.alpha).to(backend.dtype)

        prefix = meta.get("prompt_prefix", PROMPT_PREFIX)
        prompts = [prefix + c if c else prefix.rstrip(", ") for c in captions]
        negative = meta.get("negative_prompt", NEGATIVE_PROMPT)
        text, pooled = backend.encode_prompts(prompts)
        null, null_pooled = backend.encode_prompts([negative])
        extra = {"image_embeds": condition.to(backend.device, backend.dtype), "null_image_embeds": zeros}
        if pooled is not None:
            extra.update(text_embeds=pooled, null_text_embeds=null_pooled)
        return Conditioning(cond=text, null=null, mode="noise", text_scale=float(self.sampling_value("cfg")),
                            init_latents=init, extra=extra)

    def sampling_options(self) -> dict[str, Any]:
        return {"steps": self.sampling_value("steps"), "scheduler": "ddim", "progress": self.config.progress}

    def edit(self, request: EditRequest):
        result = super().edit(request)
        result.extras["base_index"] = list(self._chosen)
        return result
