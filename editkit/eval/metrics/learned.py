"""Shared helpers of the learned metrics: image preprocessing in torch and embedding caches (weights load
through :func:`editkit.weights.load_into`).

torch is imported inside functions only; nothing here downloads anything.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise the rows of (N, D); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> float:
    """Cosine similarity of two vectors; 0.0 when either is (nearly) zero, as torch's cosine_similarity."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = max(float(np.linalg.norm(a)), eps) * max(float(np.linalg.norm(b)), eps)
    return float(np.dot(a, b) / denom)


def preprocess(images: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float], *,
               crop: bool = True, resize: int | None = None) -> Any:
    """uint8 (H, W, 3) images -> a normalised float tensor (N, 3, size, size).

    ``crop``: bicubic resize of the short side to ``resize`` (default ``size``) then a centre crop of
    ``size`` (CLIP / DINO preprocessing); otherwise a bicubic resize straight to ``size`` x ``size``
    (InstructPix2Pix's squash, no crop). Resizing is antialiased, as PIL's.
    """
    import torch
    import torch.nn.functional as F

    out = []
    for image in images:
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0  # a writable copy
        h, w = x.shape[-2:]
        if crop:
            short = resize or size
            scale = short / min(h, w)
            nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
            if (nh, nw) != (h, w):
                x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
            top, left = (nh - size) // 2, (nw - size) // 2
            x = x[..., top:top + size, left:left + size]
        elif (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        out.append(x.clamp(0.0, 1.0))
    batch = torch.cat(out)
    m = torch.tensor(mean, dtype=batch.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch - m) / s


def embed_cached(batch: Any, key: str, indices: Sequence[int], images: Any, encode: Any) -> dict[int, np.ndarray]:
    """Embeddings of ``images(i)`` for ``indices``, computed once per batch under ``key``."""
    store: dict[int, np.ndarray] = batch.cache.setdefault(key, {})
    todo = [i for i in indices if i not in store]
    if todo:
        for i, e in zip(todo, encode([images(i) for i in todo])):
            store[i] = e
    return store
