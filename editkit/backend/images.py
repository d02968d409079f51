"""Conversion between PIL images and model tensors, and the size rule of the backend.

Size rule: images whose sides are not multiples of the VAE factor are padded at the right and bottom
by replicating the edge pixels (never resized), sampled, decoded, and cropped back. Every output has
exactly the input size and no pixel is resampled.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images of one size -> float tensor (B, 3, H, W) in [-1, 1]."""
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise ValueError(f"all images of one batch must have the same size, got {sorted(sizes)}")
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB PIL images (rounded, clamped)."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in arr.permute(0, 2, 3, 1).cpu().numpy()]


def pad_to_multiple(x: torch.Tensor, factor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad (right, bottom) to a multiple of ``factor``; return the padded tensor and (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


def mask_to_tensor(masks: list[Image.Image]) -> torch.Tensor:
    """Single-channel masks (255 = edit) -> float tensor (B, 1, H, W) in {0, 1}."""
    arr = np.stack([np.asarray(m.convert("L")) > 127 for m in masks])
    return torch.from_numpy(arr).unsqueeze(1).float()
