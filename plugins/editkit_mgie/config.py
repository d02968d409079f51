"""Options of the ``mgie`` guide (validated; errors name the guide and the option)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from editkit.config import DiffusionGuideConfig, DualGuidanceConfig, SamplingConfig
from editkit.quantization import Quantize


class MGIEConfig(SamplingConfig, DualGuidanceConfig, DiffusionGuideConfig):
    model: str = Field(
        "editworld", min_length=1,
        description="Weights: 'editworld' (committed tiny EditWorld MGIE), a folder in the editkit MGIE layout "
        "('editkit train mgie' / 'editkit convert mgie'), a hub id holding that layout, or the official release "
        "folder with LLaVA-7B-v1/ and mgie_7b/ (converted in memory).",
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=1024, description="Most LLM tokens to generate; None: the checkpoint's value (official 96).")
    no_repeat_ngram_size: int | None = Field(
        None, ge=0, le=16, description="Ban repeated n-grams while decoding (0: off); None: the checkpoint's value "
        "(official 3; tiny EditWorld 0, since rewrites repeat 3-grams of the prompt).")
    conditioning: Literal["visual_tokens", "expressive_text"] = Field(
        "visual_tokens", description="What conditions the UNet: 'visual_tokens' (MGIE: the edit head over the [IMG] "
        "states, null edit_head(0, EMB)) or 'expressive_text' (the paper's LGIE ablation: the expressive instruction "
        "through the pipeline's text encoder, null the empty prompt; the edit head is not used).")
    resolution: int = Field(
        0, ge=0, le=4096, description="0: edit at the native size (demo.ipynb). N > 0: centre-crop to a square and "
        "resize to N x N first, as the author's app.py does with 512 (the output then has that size).")
    vision_tower: str = Field(
        "openai/clip-vit-large-patch14", min_length=1,
        description="Official release only: the CLIP vision tower (hub id or folder) paired with LLaVA-7B-v1.")
    pipeline: str | None = Field(
        None, description="InstructPix2Pix shell for the VAE and scheduler (hub id or folder); None: the checkpoint's "
        "(official: timbrooks/instruct-pix2pix).")
    llm_cache: Literal["dynamic", "static"] = Field(
        "dynamic", description="KV cache of the LLM decode: 'dynamic' (grows each token) or 'static' (preallocated, "
        "fixed shapes: what compile_llm and CUDA graphs need).")
    compile_llm: bool = Field(
        False, description="Compile the LLM's decode step (transformers' generate with a static cache, CUDA graphs); "
        "needs llm_cache='static' and a GPU; the first edit compiles.")
    quantize: Quantize = Field(
        "none", description="Load the LLM in 8 or 4 bits with bitsandbytes (CUDA only, optional dependency).")
