"""Scheduler construction by name from one base configuration (the checkpoint's, when it has one)."""
from __future__ import annotations

from typing import Any

SCHEDULERS = ("ddim", "ddpm", "euler_ancestral")


def make_scheduler(name: str, base_config: dict[str, Any] | None = None):
    """Build a diffusers scheduler of kind ``name`` sharing the noise schedule of ``base_config``."""
    from diffusers import DDIMScheduler, DDPMScheduler, EulerAncestralDiscreteScheduler

    classes = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "euler_ancestral": EulerAncestralDiscreteScheduler}
    if name not in classes:
        raise ValueError(f"unknown scheduler '{name}' (choose from {', '.join(SCHEDULERS)})")
    config = dict(base_config or {})
    cls = classes[name]
    if name == "ddim":
        config.setdefault("set_alpha_to_one", False)
        config.setdefault("clip_sample", False)
    if name == "ddpm":
        config.setdefault("clip_sample", False)
    return cls.from_config(config)
