"""SDXL's added conditioning, as diffusers' StableDiffusionXLPipeline feeds it to the UNet.

An SDXL UNet (``addition_embed_type="text_time"``) reads, besides the token states of two text encoders
(penultimate layers, concatenated on the feature axis), ``added_cond_kwargs`` with ``text_embeds`` (the second
encoder's pooled, projected prompt embedding) and ``time_ids`` (original size, crop top-left, target size in
pixels: here ``(H, W, 0, 0, H, W)``, no crop).
"""
from __future__ import annotations

from typing import Any

import torch

#: Where guides put the pooled prompt embeddings in ``Conditioning.extra``.
TEXT_EMBEDS, NULL_TEXT_EMBEDS = "text_embeds", "null_text_embeds"


def takes_text_time(unet) -> bool:
    """Whether ``unet`` wants SDXL's added conditioning (``text_embeds`` and ``time_ids``)."""
    config = getattr(unet, "config", None)
    return config is not None and config.get("addition_embed_type") == "text_time"


def time_ids(height: int, width: int, rows: int, device=None, dtype=None) -> torch.Tensor:
    """(rows, 6): original size, crop top-left (0, 0) and target size, all (height, width) in pixels."""
    ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype)
    return ids.repeat(rows, 1)


def added_cond(pooled: torch.Tensor, height: int, width: int, batch: int, device=None,
               dtype=None) -> dict[str, torch.Tensor]:
    """``added_cond_kwargs`` entries for one branch of ``batch`` rows (a batch-1 ``pooled`` is expanded)."""
    return {"text_embeds": _rows(pooled, batch, device, dtype),
            "time_ids": time_ids(height, width, batch, device, dtype)}


def branch_added_cond(extra: dict[str, Any], branches: int, batch: int, pixel_size: tuple[int, int] | None,
                      device, dtype) -> dict[str, torch.Tensor]:
    """The entries for all guidance branches of one UNet call: the conditional branch's pooled embedding, then
    the null branch's for the others (the order of the encoder hidden states)."""
    if extra.get(TEXT_EMBEDS) is None:
        raise ValueError("this UNet is SDXL-shaped (addition_embed_type 'text_time'): the conditioning needs "
                         "extra['text_embeds'], the pooled prompt embeddings of backend.encode_prompts")
    if branches > 1 and extra.get(NULL_TEXT_EMBEDS) is None:
        raise ValueError("this UNet is SDXL-shaped (addition_embed_type 'text_time'): guidance needs "
                         "extra['null_text_embeds'], the null branch's pooled prompt embeddings")
    if pixel_size is None:
        raise ValueError("an SDXL-shaped UNet needs the image size in pixels for its time_ids")
    pooled = _rows(extra[TEXT_EMBEDS], batch, device, dtype)
    if branches > 1:
        pooled = torch.cat([pooled] + [_rows(extra[NULL_TEXT_EMBEDS], batch, device, dtype)] * (branches - 1))
    return {"text_embeds": pooled, "time_ids": time_ids(*pixel_size, branches * batch, device, dtype)}


def encode_two(tokenizers: tuple[Any, Any], encoders: tuple[Any, Any], prompts: list[str],
               device) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's prompt encoding: the penultimate hidden states of both encoders concatenated on the feature axis
    (B, L, D1 + D2), and the second encoder's projected pooled embedding (B, P)."""
    first, second = (encoder(token_ids(tokenizer, prompts, device), output_hidden_states=True)
                     for tokenizer, encoder in zip(tokenizers, encoders))
    a, b = first.hidden_states[-2], second.hidden_states[-2]
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two SDXL tokenizers pad to different lengths ({a.shape[1]} and {b.shape[1]}); "
                         "their model_max_length must match")
    return torch.cat([a, b], dim=-1), second.text_embeds


def token_ids(tokenizer, prompts: list[str], device) -> torch.Tensor:
    """Token ids padded to the tokenizer's ``model_max_length``, as the Stable Diffusion pipelines tokenize."""
    return tokenizer(prompts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                     return_tensors="pt").input_ids.to(device)


def _rows(pooled: torch.Tensor, batch: int, device, dtype) -> torch.Tensor:
    pooled = pooled.to(device, dtype)
    return pooled.expand(batch, -1) if pooled.shape[0] == 1 and batch > 1 else pooled
