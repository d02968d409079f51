"""Scheduler construction by name from one base configuration (the checkpoint's, when it has one)."""
from __future__ import annotations

from typing import Any

SCHEDULERS = ("auto", "ddim", "ddpm", "euler_ancestral", "dpmpp_2m")
_BY_CLASS = {"DDIMScheduler": "ddim", "DDPMScheduler": "ddpm", "EulerAncestralDiscreteScheduler": "euler_ancestral"}


def resolve_name(name: str, base_config: dict[str, Any] | None) -> str:
    """``auto`` means the scheduler named by the checkpoint's config (DDIM when it names another one)."""
    if name != "auto":
        return name
    return _BY_CLASS.get(str((base_config or {}).get("_class_name")), "ddim")


def make_scheduler(name: str, base_config: dict[str, Any] | None = None):
    """Build a diffusers scheduler of kind ``name`` sharing the noise schedule of ``base_config``."""
    name = resolve_name(name, base_config)
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    classes = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "euler_ancestral": EulerAncestralDiscreteScheduler,
               "dpmpp_2m": DPMSolverMultistepScheduler}
    if name not in classes:
        raise ValueError(f"unknown scheduler '{name}' (choose from {', '.join(SCHEDULERS)})")
    config = dict(base_config or {})
    cls = classes[name]
    if name == "ddim":
        config.setdefault("set_alpha_to_one", False)
        config.setdefault("clip_sample", False)
    if name == "ddpm":
        config.setdefault("clip_sample", False)
    if name == "dpmpp_2m":
        # DPM-Solver++(2M), deterministic; the last step lands on the clean sample (final sigma 0).
        config.update(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    return cls.from_config(config)
