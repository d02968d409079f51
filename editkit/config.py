"""Pydantic base models for every configuration in editkit (guides, backend, evaluation specs)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import GuideConfigError


class EditkitModel(BaseModel):
    """Strict, immutable config: unknown keys are errors, values are validated on creation."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


Device = Literal["auto", "cpu", "cuda", "mps"] | str


class GuideConfig(EditkitModel):
    """Options every guide understands. Guides subclass this and add their own fields."""

    device: str = Field("cpu", description="Torch device: 'cpu', 'cuda', 'cuda:1', or 'auto' (cuda when available).")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Compute dtype of the models: float16 needs a GPU; bfloat16 also runs on CPUs "
        "with AVX512-BF16 (about 1.7x faster there, results differ slightly from float32)."
    )
    progress: bool = Field(True, description="Show a tqdm progress bar over the denoising steps.")


#: Sampler names of the diffusion guides (editkit.backend.schedulers); 'auto' = the weights' own or recommended one.
SchedulerName = Literal["auto", "ddim", "ddpm", "euler_ancestral", "dpmpp_2m"]

CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


class SpeedOptions(EditkitModel):
    """The backend's switchable fast paths (see :mod:`editkit.backend.speed`); results stay the same within
    floating-point tolerance whichever are on."""

    channels_last: bool = Field(False, description="UNet and VAE in channels-last memory format (faster on GPUs).")
    fuse_qkv: bool = Field(False, description="Fused query/key/value projections in the UNet's attention.")
    compile: CompileMode = Field(
        "off", description="torch.compile the UNet: 'off', 'default', 'reduce-overhead' (CUDA graphs) or "
        "'max-autotune'. The first edit at each new shape pays the compilation.")
    vae_tiling: bool = Field(False, description="Tiled VAE encode/decode for large images (bounded memory).")
    fused_sampler: bool = Field(
        True, description="DDIM as precomputed per-step coefficients with a preallocated guidance batch (no "
        "scheduler work inside the loop); false: diffusers' scheduler step every iteration.")


class DiffusionGuideConfig(SpeedOptions, GuideConfig):
    """Options of guides that sample with the shared diffusion backend: the common ones plus the fast paths."""

    def speed_options(self) -> SpeedOptions:
        return SpeedOptions(**{k: getattr(self, k) for k in SpeedOptions.model_fields})


class SamplingConfig(EditkitModel):
    """Steps and sampler of a diffusion guide; unset, they take the weights' recommendation
    (:meth:`editkit.guide.Guide.sampling_options`)."""

    steps: int | None = Field(
        None, ge=1, le=1000, description="Sampling steps; None: the weights' recommendation (editkit_sampling.json, "
        "or 'sampling' in the guide's own weights config; 10 for the EditWorld weights), else 20 (the reference "
        "pipelines use 100 at full size).")
    scheduler: SchedulerName = Field(
        "auto", description="Sampler; 'auto': the weights' recommendation (DDIM for the EditWorld weights), else the "
        "checkpoint's own scheduler as diffusers' pipeline does (Euler ancestral for timbrooks/instruct-pix2pix "
        "and the official MGIE release). dpmpp_2m is DPM-Solver++(2M).")


class DualGuidanceConfig(EditkitModel):
    """InstructPix2Pix-style dual classifier-free guidance scales; None takes the weights' recommendation
    (:meth:`editkit.guide.Guide.guidance_scale`)."""

    #: InstructPix2Pix's reference scales, used when neither the config nor the weights set one.
    REFERENCE: ClassVar[dict[str, float]] = {"text_scale": 7.5, "image_scale": 1.5}

    text_scale: float | None = Field(
        None, ge=0.0, le=50.0, description="Text guidance scale s_T; None: the weights' recommendation "
        "(editkit_sampling.json, or 'sampling' in mgie_config.json), else the reference 7.5.")
    image_scale: float | None = Field(
        None, ge=0.0, le=50.0, description="Image guidance scale s_I (8-channel InstructPix2Pix UNets); None: the "
        "weights' recommendation, else the reference 1.5.")


def validate_config(guide_name: str, config_cls: type[EditkitModel], options: dict[str, Any]) -> EditkitModel:
    """Validate ``options`` into ``config_cls``; errors become :class:`GuideConfigError` naming the option."""
    try:
        return config_cls.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = ".".join(str(p) for p in err.get("loc", ())) or "<config>"
        if err.get("type") == "extra_forbidden":
            known = ", ".join(sorted(config_cls.model_fields))
            raise GuideConfigError(guide_name, option, f"unknown option (known: {known})") from None
        raise GuideConfigError(guide_name, option, f"{err.get('msg')} (got {err.get('input')!r})") from None
