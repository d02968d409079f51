"""Masks of the blended guide: pixel masks as tensors, latent masks, the dilation schedule, paste-back."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


def pixel_masks(masks: list[Image.Image], height: int, width: int) -> torch.Tensor:
    """(B, 1, height, width) float {0, 1}; masks smaller than the (padded) size are zero-padded right/bottom."""
    out = torch.zeros(len(masks), 1, height, width)
    for i, m in enumerate(masks):
        a = torch.from_numpy(np.asarray(m.convert("L")) >= 128).float()
        out[i, 0, : a.shape[0], : a.shape[1]] = a
    return out


def latent_masks(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """Latent cells that touch the pixel mask (max pooling), so the editable latents cover every masked pixel.

    The reference resizes with nearest neighbour and thresholds at 0.5, which can drop thin strokes; here a
    cell is editable as soon as one of its pixels is, and the pixel paste-back restores the rest exactly.
    """
    if factor == 1:
        return pixels
    return F.max_pool2d(pixels, kernel_size=factor, stride=factor)


def dilate(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    return F.max_pool2d(mask, kernel_size=kernel, stride=1, padding=kernel // 2)


def dilation_schedule(mask: torch.Tensor, iterations: int) -> list[torch.Tensor]:
    """Blended Latent Diffusion's progressive masks: dilated with kernels 3+2(k-1), ..., 5, 3, then the mask."""
    return [dilate(mask, 3 + 2 * i) for i in reversed(range(iterations))] + [mask]


def stage(step: int, steps: int, stages: int) -> int:
    """Which of ``stages`` masks step ``step`` of ``steps`` uses (equal shares of the trajectory, in order)."""
    return min(stages - 1, step * stages // max(1, steps))


def paste_back(output: Image.Image, source: Image.Image, mask: Image.Image, feather: float = 0.0) -> Image.Image:
    """Source pixels outside the mask, output pixels inside; with ``feather`` > 0 the output fades in over
    that many pixels inside the mask edge (outside stays exact)."""
    out = np.asarray(output.convert("RGB"))
    src = np.asarray(source.convert("RGB"))
    inside = np.asarray(mask.convert("L")) >= 128
    if feather <= 0:
        return Image.fromarray(np.where(inside[..., None], out, src))
    soft = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(feather)))
    # the blurred mask is about 0.5 on the edge: rescale [0.5, 1] -> [0, 1] so the fade lies inside the mask
    alpha = (np.clip(soft.astype(np.float64) / 255.0 * 2.0 - 1.0, 0.0, 1.0) * inside)[..., None]
    mixed = np.rint(alpha * out + (1.0 - alpha) * src).astype(np.uint8)
    return Image.fromarray(np.where(inside[..., None], mixed, src))
