"""editkit: instruction-guided image editing with pluggable guides on a shared latent-diffusion backend.

The top-level names are resolved lazily so that ``import editkit`` does not import torch or diffusers.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["edit", "load_guide", "available_guides", "EditRequest", "EditResult", "Guide", "__version__"]


def __getattr__(name: str) -> Any:
    if name in {"edit", "load_guide", "available_guides"}:
        from . import api

        return getattr(api, name)
    if name in {"EditRequest", "EditResult", "Conditioning", "StepState"}:
        from . import types

        return getattr(types, name)
    if name == "Guide":
        from .guide import Guide

        return Guide
    raise AttributeError(f"module 'editkit' has no attribute {name!r}")
