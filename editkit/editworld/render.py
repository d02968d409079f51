"""Vectorised numpy rasterisation of EditWorld scenes (no per-pixel Python loops).

Object coverage maps are computed once per (kind, size, position, image size) with 4x4 supersampling
(anti-aliased edges) and cached, as are the background textures, so rendering a scene is a copy of a
cached background plus one small alpha blend per object.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .world import (
    BACKGROUND_AMPLITUDE,
    BACKGROUND_STYLES,
    BACKGROUND_VARIANTS,
    BACKGROUNDS,
    COLOURS,
    CUTOUT_BACKGROUND,
    KINDS,
    POSITION_CELL,
    SIZE_SCALE,
    Background,
    Obj,
    Scene,
)

SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 24, 1024


def check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"EditWorld image size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    return int(size)


# --------------------------------------------------------------------------- shapes
def _inside(kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean inside-test of a shape of bounding radius ``r`` centred at 0 (y grows downwards)."""
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        half = 0.8 * r
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.04 * r
    if kind == "triangle":  # apex up, flat base
        top, base = -1.02 * r, 0.82 * r
        half_width = 1.02 * r * (dy - top) / (base - top)
        return (dy >= top) & (dy <= base) & (np.abs(dx) <= half_width)
    raise ValueError(f"unknown shape kind {kind!r}; known: {list(KINDS)}")


def _geometry(size_name: str, position: str, size: int) -> tuple[float, float, float]:
    cell = size / 3.0
    row, col = POSITION_CELL[position]
    return (col + 0.5) * cell, (row + 0.5) * cell, SIZE_SCALE[size_name] * cell / 2.0


@lru_cache(maxsize=4096)
def object_patch(kind: str, size_name: str, position: str, size: int) -> tuple[int, int, int, int, np.ndarray]:
    """``(y0, y1, x0, x1, alpha)``: the coverage (0..1, float32) of one object inside its bounding box."""
    cx, cy, r = _geometry(size_name, position, size)
    x0, x1 = max(int(np.floor(cx - r)) - 1, 0), min(int(np.ceil(cx + r)) + 1, size)
    y0, y1 = max(int(np.floor(cy - r)) - 1, 0), min(int(np.ceil(cy + r)) + 1, size)
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1) - cx
    ys = (np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1) - cy
    inside = _inside(kind, xs[None, :], ys[:, None], r).astype(np.float32)
    alpha = inside.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    alpha.setflags(write=False)
    return y0, y1, x0, x1, alpha


@lru_cache(maxsize=4096)
def object_alpha(kind: str, size_name: str, position: str, size: int) -> np.ndarray:
    """Full-image coverage map (H, W) float32 of one object."""
    y0, y1, x0, x1, patch = object_patch(kind, size_name, position, size)
    alpha = np.zeros((size, size), np.float32)
    alpha[y0:y1, x0:x1] = patch
    alpha.setflags(write=False)
    return alpha


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation with a (2r+1)^2 square, by shifted ORs."""
    out = mask.copy()
    for _ in range(radius):
        padded = np.pad(out, 1)
        out = (
            padded[:-2, :-2] | padded[:-2, 1:-1] | padded[:-2, 2:]
            | padded[1:-1, :-2] | padded[1:-1, 1:-1] | padded[1:-1, 2:]
            | padded[2:, :-2] | padded[2:, 1:-1] | padded[2:, 2:]
        )
    return out


@lru_cache(maxsize=4096)
def object_masks(kind: str, size_name: str, position: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(footprint, full, partial)`` boolean maps of one object.

    footprint: any coverage, dilated by 1 px (what an edit of this object may change);
    full: fully covered pixels; partial: partly covered (anti-aliased boundary) pixels.
    """
    alpha = object_alpha(kind, size_name, position, size)
    footprint = dilate(alpha > 0, 1)
    full = alpha >= 1
    partial = (alpha > 0) & (alpha < 1)
    for arr in (footprint, full, partial):
        arr.setflags(write=False)
    return footprint, full, partial


def obj_masks(obj: Obj, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return object_masks(obj.kind, obj.size, obj.position, size)


# --------------------------------------------------------------------------- backgrounds
@lru_cache(maxsize=256)
def background_modulation(style: str, variant: int, size: int) -> np.ndarray:
    """Luminance modulation in [-1, 1] (H, W) float32 for a texture style and variant."""
    if style not in BACKGROUND_STYLES:
        raise ValueError(f"unknown background style {style!r}; known: {list(BACKGROUND_STYLES)}")
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1  # -1..1
    x, y = coords[None, :], coords[:, None]
    if style == "flat":
        mod = np.zeros((size, size), np.float32)
    elif style == "gradient":
        angle = 2 * np.pi * variant / BACKGROUND_VARIANTS
        mod = (np.cos(angle) * x + np.sin(angle) * y) / np.sqrt(2)
    elif style == "radial":
        angle = 2 * np.pi * variant / BACKGROUND_VARIANTS
        cx, cy = 0.5 * np.cos(angle), 0.5 * np.sin(angle)
        dist = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        mod = 1 - dist  # 1 at the centre, about -1 in the far corner
    else:  # soft value noise: a seeded 5x5 grid of values, bicubically upsampled
        from PIL import Image

        grid = np.random.default_rng(1000 + variant).uniform(-1, 1, (5, 5)).astype(np.float32)
        mod = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    mod = np.clip(np.asarray(mod, np.float32), -1, 1)
    mod = np.ascontiguousarray(np.broadcast_to(mod, (size, size)), dtype=np.float32)
    mod.setflags(write=False)
    return mod


@lru_cache(maxsize=1024)
def background_array(colour: str, style: str, variant: int, size: int) -> np.ndarray:
    """The background as (H, W, 3) float32 in 0..255 (read-only; copy before drawing)."""
    base = CUTOUT_BACKGROUND if colour == "plain" else BACKGROUNDS[colour]
    mod = background_modulation(style, variant, size) * BACKGROUND_AMPLITUDE
    img = np.clip(np.asarray(base, np.float32)[None, None, :] + mod[:, :, None], 0, 255).astype(np.float32)
    img.setflags(write=False)
    return img


def _bg(background: Background, size: int) -> np.ndarray:
    return background_array(background.colour, background.style, background.variant, size)


# --------------------------------------------------------------------------- rendering
_COLOUR_F32 = {name: np.asarray(rgb, np.float32) for name, rgb in COLOURS.items()}


def render_float(scene: Scene, size: int = 64) -> np.ndarray:
    img = _bg(scene.background, size).copy()
    for obj in scene.objects:
        y0, y1, x0, x1, alpha = object_patch(obj.kind, obj.size, obj.position, size)
        region = img[y0:y1, x0:x1]
        a = alpha[:, :, None]
        region += a * (_COLOUR_F32[obj.colour] - region)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_scene(scene: Scene, size: int = 64) -> np.ndarray:
    """Render a scene as an (H, W, 3) uint8 RGB array of side ``size`` (positions and sizes scale)."""
    return to_uint8(render_float(scene, check_size(size)))


def render_cutout(obj: Obj, size: int = 64) -> np.ndarray:
    """The object alone, centred at its own size, on a plain neutral grey image of the same side."""
    scene = Scene((obj.replace(position="center"),), Background("plain"))
    return to_uint8(render_float(scene, check_size(size)))


def objects_alpha(scene: Scene, size: int) -> np.ndarray:
    """Total object coverage (H, W) float32 (objects never overlap)."""
    total = np.zeros((size, size), np.float32)
    for obj in scene.objects:
        y0, y1, x0, x1, alpha = object_patch(obj.kind, obj.size, obj.position, size)
        total[y0:y1, x0:x1] += alpha
    return total


# --------------------------------------------------------------------------- global adjustments
BRIGHTNESS_DELTA = 64.0
"""Brightness edits add or subtract this many levels (then clip to 0..255)."""
CONTRAST_FACTORS = {"increase": 1.5, "decrease": 0.5}
CONTRAST_PIVOT = 128.0
"""Contrast edits map v -> (v - 128) * factor + 128 (then clip)."""


def adjust(image: np.ndarray, action: str, direction: str) -> np.ndarray:
    """Apply a global brightness (``brighter``/``darker``) or contrast (``increase``/``decrease``) edit."""
    img = image.astype(np.float32)
    if action == "brightness":
        out = img + (BRIGHTNESS_DELTA if direction == "brighter" else -BRIGHTNESS_DELTA)
    elif action == "contrast":
        out = (img - CONTRAST_PIVOT) * CONTRAST_FACTORS[direction] + CONTRAST_PIVOT
    else:
        raise ValueError(f"unknown global adjustment {action!r}")
    return to_uint8(out)
