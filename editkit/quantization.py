"""8/4-bit LLM loading with bitsandbytes (optional, CUDA only), shared by the guides that run an LLM."""
from __future__ import annotations

import importlib.util
from typing import Any, Literal

from .errors import GuideConfigError

Quantize = Literal["none", "8bit", "4bit"]


def check_quantize(guide: str, quantize: str, device: str) -> None:
    """A clear option error when 8/4-bit loading cannot work here (no bitsandbytes, or not a CUDA device)."""
    if quantize == "none":
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        raise GuideConfigError(guide, "quantize", "needs bitsandbytes (pip install bitsandbytes)")
    if not device.startswith("cuda"):
        raise GuideConfigError(guide, "quantize", "8/4-bit loading needs a CUDA device")


def quantized_kwargs(quantize: str, dtype: Any, device: str, skip_modules: list[str]) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``quantize`` ({} for "none"); ``skip_modules`` stay unquantised."""
    if quantize == "none":
        return {}
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_8bit=quantize == "8bit", load_in_4bit=quantize == "4bit", bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=skip_modules), "device_map": {"": device}}
