"""``editkit bench``: end-to-end latency of a guide, per stage, optionally beside diffusers' own pipeline.

Sizes: ``tiny`` loads the guide's committed EditWorld weights (the offline default); ``full`` builds the
released architectures with random weights through the guide's ``load_random`` (latency does not depend
on weight values); ``test`` the tiny random plumbing shapes. ``--compare diffusers`` times
``StableDiffusionInstructPix2PixPipeline`` over the same UNet, VAE, text encoder and scheduler in the same
process, before editkit's fast paths touch the shared modules.
"""
from __future__ import annotations

import platform
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import CompileMode, EditkitModel
from .timing import Measurement, measure

FULL_SIZES = {"ip2p": "sd15", "mgie": "7b"}


class BenchSpec(EditkitModel):
    guide: str = Field("ip2p", min_length=1, description="Guide to time (ip2p or mgie; any guide for size=tiny).")
    size: Literal["tiny", "full", "test"] = Field(
        "tiny", description="tiny: the committed EditWorld weights; full: released architectures with random "
        "weights; test: tiny random plumbing shapes.")
    steps: int | None = Field(None, ge=1, le=1000, description="Sampling steps; None: the guide's own (its "
                              "weights' recommendation, as `editkit edit` runs it).")
    batch_sizes: list[int] = Field([1], min_length=1, description="Batch sizes to time, one result each.")
    resolution: int | None = Field(None, ge=16, le=4096, description="Square input size (default: 64 tiny, "
                                   "512 full, 32 test).")
    device: str = Field("cpu", description="Torch device.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Compute dtype.")
    fast: bool = Field(None, description="editkit's eager fast paths: channels-last, fused QKV (the fused DDIM "
                       "sampler and the batched branches are always on unless --set turns them off). Default: on "
                       "for CUDA only; on CPU they measured no faster, so the default times what `editkit edit` runs.")
    compile: CompileMode = Field("off", description="torch.compile mode of the UNet (warm-up reported apart).")
    scheduler: Literal["ddim", "euler_ancestral", "ddpm", "dpmpp_2m"] = Field("ddim", description="Sampler of both sides.")
    new_tokens: int = Field(40, ge=1, le=1024, description="mgie with random weights: tokens the LLM decodes "
                            "(random weights never write [IMG], so exactly this many; 32 words + 8 [IMG]).")
    repeats: int = Field(5, ge=1, le=1000, description="Timed runs (the median is reported).")
    warmup: int = Field(1, ge=0, le=100, description="Untimed runs first (their times are reported apart).")
    compare: Literal["none", "diffusers"] = Field("none", description="Also time diffusers' InstructPix2Pix "
                                                  "pipeline on the same modules (ip2p and mgie shapes).")
    options: dict[str, Any] = Field(default_factory=dict, description="Extra guide options (--set KEY=VALUE).")

    @model_validator(mode="before")
    @classmethod
    def _fast_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("fast") is None:
            data = {**data, "fast": str(data.get("device", "cpu")).startswith("cuda")}
        return data

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 or b > 256 for b in v):
            raise ValueError("batch sizes must be between 1 and 256")
        return v

    @property
    def side(self) -> int:
        return self.resolution or {"tiny": 64, "full": 512, "test": 32}[self.size]


def guide_options(spec: BenchSpec, known: set[str] | None = None) -> dict[str, Any]:
    """The guide options of a bench run; the bench's own settings only where the guide has them."""
    opts: dict[str, Any] = {"device": spec.device, "dtype": spec.dtype, "progress": False,
                            "scheduler": spec.scheduler, "compile": spec.compile}
    if spec.steps is not None:
        opts["steps"] = spec.steps
    if spec.fast:
        opts.update(channels_last=True, fuse_qkv=True)
    if spec.guide == "mgie" and spec.size != "tiny":
        opts["max_new_tokens"] = spec.new_tokens
    if known is not None:
        opts = {k: v for k, v in opts.items() if k in known}
    opts.update(spec.options)
    return opts


def load_guide(spec: BenchSpec):
    """The guide, loaded with its committed weights (tiny) or random weights of the named architecture."""
    from .. import api, registry
    from ..errors import InvalidInputError

    cls = registry.load_guide_class(spec.guide)
    guide = api._guide_instance(spec.guide, guide_options(spec, set(cls.Config.model_fields)))
    if spec.size == "tiny":
        api._ensure_loaded(guide)
        return guide
    size = "test" if spec.size == "test" else FULL_SIZES.get(spec.guide, "")
    if size not in getattr(guide, "random_sizes", ()):
        raise InvalidInputError(f"guide '{spec.guide}' has no random-weight '{spec.size}' architecture "
                                f"(bench --size full supports: {', '.join(FULL_SIZES)})")
    guide.load_random(api.backend_cache(), size)
    guide._editkit_loaded = True
    if spec.guide == "mgie":
        _decode_exactly(guide)
    return guide


def _decode_exactly(guide) -> None:
    """Random LLM weights: forbid end-of-sequence and [IMG0] so every run decodes exactly ``max_new_tokens``."""
    from transformers import SuppressTokensLogitsProcessor

    mllm = guide.mllm
    banned = [mllm.tokenizer.eos_token_id, mllm.img_ids[0]]
    mllm.logits_processors = [SuppressTokensLogitsProcessor(banned, device=mllm.device)]


def inputs(spec: BenchSpec, batch: int):
    """Source images, instructions and edit masks: EditWorld scenes with their edit masks for tiny weights,
    noise images with a centred box (half the side) otherwise."""
    import numpy as np
    from PIL import Image

    if spec.size == "tiny":
        from .. import editworld

        samples = editworld.generate("test", batch, seed=0, types="explicit", size=spec.side)
        masks = [Image.fromarray(s.mask.astype(np.uint8) * 255, mode="L") for s in samples]
        return [Image.fromarray(s.source) for s in samples], [s.instruction for s in samples], masks
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (spec.side, spec.side, 3), dtype=np.uint8)) for _ in range(batch)]
    box = np.zeros((spec.side, spec.side), dtype=np.uint8)
    box[spec.side // 4: 3 * spec.side // 4, spec.side // 4: 3 * spec.side // 4] = 255
    return images, ["make the red circle blue"] * batch, [Image.fromarray(box, mode="L")] * batch


def time_editkit(guide, spec: BenchSpec, batch: int) -> Measurement:
    from ..types import EditRequest

    images, instructions, masks = inputs(spec, batch)
    # only guides that need a mask get one, so the others time exactly what a plain edit does
    request = EditRequest(images=images, instructions=instructions, seed=0,
                          masks=masks if "mask" in guide.needs else None)

    def run() -> dict[str, float]:
        return guide.edit(request).timings

    return measure(run, device=guide.backend.device.type, warmup=spec.warmup, repeats=spec.repeats)


def diffusers_pipeline(backend, scheduler: str):
    """diffusers' InstructPix2Pix pipeline over the backend's own modules (nothing copied)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from ..backend.schedulers import make_scheduler

    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=backend.vae, text_encoder=backend.text_encoder, tokenizer=backend.tokenizer, unet=backend.unet,
        scheduler=make_scheduler(scheduler, backend.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sampling_steps(guide) -> int:
    """The steps an edit of the loaded guide runs (set, or the weights' recommendation)."""
    return int(guide.sampling_options()["steps"])


def time_diffusers(guide, spec: BenchSpec, batch: int, compiled: bool) -> Measurement:
    import torch

    from ..backend.speed import SpeedOptions, apply

    backend = guide.backend
    if backend.text_encoder is None:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"--compare diffusers needs a guide whose backend has a text encoder (ip2p), "
                                f"not '{spec.guide}'")
    apply(backend, SpeedOptions(fused_sampler=False))  # diffusers' pipeline sees the plain modules
    pipe = diffusers_pipeline(backend, spec.scheduler)
    if compiled:
        pipe.unet = torch.compile(backend.unet, mode=spec.compile)
    images, instructions, _ = inputs(spec, batch)
    device = backend.device.type
    steps = sampling_steps(guide)

    def run() -> None:
        pipe(prompt=instructions, image=images, num_inference_steps=steps, guidance_scale=7.5,
             image_guidance_scale=1.5, generator=torch.Generator("cpu").manual_seed(0))

    return measure(run, device=device, warmup=spec.warmup, repeats=spec.repeats)


def environment(guide) -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    from ..backend.architectures import parameter_count

    device = guide.backend.device
    env: dict[str, Any] = {
        "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "parameters": {"unet": parameter_count(guide.backend.unet), "vae": parameter_count(guide.backend.vae)},
    }
    if getattr(guide, "mllm", None) is not None:
        env["parameters"]["llm"] = parameter_count(guide.mllm.model)
        env["parameters"]["edit_head"] = parameter_count(guide.edit_head)
    if guide.backend.text_encoder is not None:
        env["parameters"]["text_encoder"] = parameter_count(guide.backend.text_encoder)
    return env


def run_bench(spec: BenchSpec, log=print) -> dict[str, Any]:
    guide = load_guide(spec)
    steps = sampling_steps(guide)
    out: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "guide_options": guide.config.model_dump(mode="json"),
                           "steps": steps, "environment": environment(guide), "results": []}
    log(f"{spec.guide}: {steps} sampling steps" + (" (the weights' recommendation)" if spec.steps is None else ""))
    for batch in spec.batch_sizes:
        row: dict[str, Any] = {"batch": batch}
        if spec.compare == "diffusers":
            row["diffusers"] = time_diffusers(guide, spec, batch, compiled=False).summary()
            log(f"batch {batch}: diffusers {row['diffusers']['median_s']:.3f} s")
            if spec.compile != "off":
                row["diffusers_compiled"] = time_diffusers(guide, spec, batch, compiled=True).summary()
                log(f"batch {batch}: diffusers + compiled UNet {row['diffusers_compiled']['median_s']:.3f} s")
        row["editkit"] = time_editkit(guide, spec, batch).summary()
        log(f"batch {batch}: editkit {row['editkit']['median_s']:.3f} s")
        if "diffusers" in row:
            row["ratio_to_diffusers"] = round(row["editkit"]["median_s"] / row["diffusers"]["median_s"], 3)
        out["results"].append(row)
    return out


def table(result: dict[str, Any]) -> str:
    """A Markdown table of the medians and per-stage times."""
    stages = sorted({k for r in result["results"] for k in r["editkit"]["stages_median_s"]})
    head = ["batch", "editkit s", *[f"{s} s" for s in stages], "warm-up s", "diffusers s", "ratio", "memory GB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["results"]:
        e = r["editkit"]
        mem = e.get("peak_gpu_memory_gb", e.get("peak_rss_gb", ""))
        cells = [str(r["batch"]), f"{e['median_s']:.3f}", *[f"{e['stages_median_s'].get(s, 0):.3f}" for s in stages],
                 ", ".join(f"{t:.2f}" for t in e["warmup_s"]) or "-",
                 f"{r['diffusers']['median_s']:.3f}" if "diffusers" in r else "-",
                 f"{r['ratio_to_diffusers']:.2f}" if "ratio_to_diffusers" in r else "-", str(mem)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
