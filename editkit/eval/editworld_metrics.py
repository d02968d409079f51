"""Exact EditWorld metrics: L1, PSNR, background PSNR and the strict per-sample ``edit_success``.

All images are (H, W, 3) uint8 arrays (or PIL images) of the sample's size; values are in 0-255.

Edit success
------------
A sample's output succeeds only if **every** check of its kind passes. A pixel of the output
*matches* the target when each channel lies within ``COLOUR_TOLERANCE`` of the range of the target's
3x3 neighbourhood (:func:`matches`): in uniform regions that is ``max_c |out_c - target_c| <= 48``,
next to a boundary a blend of both sides is accepted too, so a correct edit that is blurred by about
a pixel (a VAE round trip) still passes. *Core* pixels are those not partly covered by any object of
the source or target scene (anti-aliased boundaries are ambiguous by nature).

Object edits (recolour, remove, add, replace, resize, move; referring and multimodal edits too):

1. ``changed``: of the core pixels inside the edit mask that the edit changes (``d(source, target) >
   COLOUR_TOLERANCE``), at least ``EDIT_FRACTION`` match the target. Checked when there are at least
   ``MIN_CHANGED_PIXELS`` of them (always, except for some shape swaps whose outlines nearly coincide).
2. ``result``: when the edit leaves an object (all but remove), at least ``EDIT_FRACTION`` of that
   object's core pixels match the target (right colour, right place).
3. ``nearest``: over the edit region (mask plus the footprints of the alternatives), the output's L1
   distance to the target is at most ``NEAREST_RATIO`` times its distance to the unedited source, and
   strictly smaller than its distance to every other near miss: the target with the resulting object
   drawn as any other shape kind, at the other size or in any other colour. This makes shape and
   size edits strict where outlines are thin, rejects half-way blends, and fails the unedited input
   by construction. The reported value is the worst of ``ratio_source / NEAREST_RATIO`` and the
   other ratios; it must be below 1.
4. ``keep_objects``: every object the edit does not touch keeps at least ``KEEP_OBJECT_FRACTION`` of its
   core pixels matching.
5. ``keep_background``: at least ``KEEP_BACKGROUND_FRACTION`` of the core background pixels outside the
   edit mask match (a spurious object or a repainted background fails).

Background edits: ``region`` (mean absolute error against the target over the core background pixels
<= ``REGION_MAE_TOLERANCE``) and ``keep_objects``. Brightness and contrast edits: ``region`` over the
whole image. The generator only produces background/global edits whose source is at least
``MIN_REGION_CHANGE`` = 2 x ``REGION_MAE_TOLERANCE`` away from the target, and colours are far apart
(object colours >= 110 apart, >= 67 from any background pixel; background tones >= 30 apart in mean),
so by construction: the unedited input scores 0 on every edit type, the ground-truth target scores 1,
an edit applied to the wrong object fails (``changed``/``nearest`` on the right object and
``keep_objects`` on the wrong one), and the right object with a wrong colour fails ``changed``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..editworld.edit_types import GLOBAL_ACTIONS
from ..editworld.generator import MIN_REGION_CHANGE, Sample
from ..editworld.render import obj_masks, object_alpha, render_scene
from ..editworld.world import Obj, near_misses, swap_object

COLOUR_TOLERANCE = 48
"""A pixel matches when every channel is within 48 levels (of 255). Object colours are >= 110 apart and
>= 67 from any background pixel, so a matching pixel can only have the right colour."""
EDIT_FRACTION = 0.85
"""Fraction of the changed core pixels inside the mask, and of the resulting object's core pixels,
that must match the target."""
MIN_CHANGED_PIXELS = 6
"""Below this many changed core pixels the ``changed`` check is skipped (``nearest`` still applies)."""
KEEP_OBJECT_FRACTION = 0.85
"""Fraction of each untouched object's core pixels that must still match."""
KEEP_BACKGROUND_FRACTION = 0.99
"""Fraction of the core background pixels outside the mask that must still match (1% of a 64x64
background is about 35 pixels, less than the core of one small object)."""
NEAREST_RATIO = 0.75
"""Object edits: over the edit region, the output's L1 distance to the target must be at most this
fraction of its distance to the unedited source (a half-way blend has ratio 1 and fails; a correct
edit blurred by a VAE round trip stays below about 0.6, shape swaps of one colour up to 0.8 at 64x64),
and strictly smaller than its distance to the resulting object drawn as another kind, size or colour."""
REGION_MAE_TOLERANCE = 12.0
"""Background/global edits: mean absolute error (0-255 levels, over pixels and channels) allowed
against the target in the edited region. The source is always >= MIN_REGION_CHANGE (24) away."""
PSNR_MAX = 100.0
"""PSNR of identical images (infinite) is reported as this cap, in dB."""

CONSTANTS: dict[str, float] = {
    "COLOUR_TOLERANCE": COLOUR_TOLERANCE,
    "EDIT_FRACTION": EDIT_FRACTION,
    "MIN_CHANGED_PIXELS": MIN_CHANGED_PIXELS,
    "KEEP_OBJECT_FRACTION": KEEP_OBJECT_FRACTION,
    "KEEP_BACKGROUND_FRACTION": KEEP_BACKGROUND_FRACTION,
    "NEAREST_RATIO": NEAREST_RATIO,
    "REGION_MAE_TOLERANCE": REGION_MAE_TOLERANCE,
    "MIN_REGION_CHANGE": MIN_REGION_CHANGE,
    "PSNR_MAX": PSNR_MAX,
}


# --------------------------------------------------------------------------- basic metrics
def as_array(image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PIL image or array -> (H, W, 3) uint8; ``size`` (H, W) is checked when given."""
    if hasattr(image, "convert") and hasattr(image, "size"):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {arr.shape}")
    if size is not None and arr.shape[:2] != tuple(size):
        raise ValueError(f"image is {arr.shape[1]}x{arr.shape[0]}, expected {size[1]}x{size[0]}")
    return arr


def l1(a: Any, b: Any) -> float:
    """Mean absolute difference over pixels and channels, images scaled to [0, 1] (MagicBrush L1)."""
    a, b = as_array(a), as_array(b)
    return float(np.abs(a.astype(np.float64) - b).mean() / 255.0)


def psnr(a: Any, b: Any, mask: np.ndarray | None = None) -> float | None:
    """PSNR in dB (data range 255) over all pixels or the pixels of a boolean (H, W) mask.

    None when the mask selects no pixel; ``PSNR_MAX`` when the images are identical there.
    """
    a, b = as_array(a), as_array(b)
    diff = a.astype(np.float64) - b
    if mask is not None:
        if not mask.any():
            return None
        diff = diff[mask]
    mse = float(np.mean(diff * diff))
    if mse == 0:
        return PSNR_MAX
    return min(PSNR_MAX, 10.0 * math.log10(255.0**2 / mse))


def psnr_background(output: Any, sample: Sample) -> float | None:
    """PSNR against the source outside the edit mask (None for whole-image edits)."""
    return psnr(output, sample.source, ~sample.mask)


# --------------------------------------------------------------------------- edit success
def _maxdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def _neighbourhood_range(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel min and max of every pixel's 3x3 neighbourhood (edges replicated)."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    shifts = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return shifts.min(axis=0), shifts.max(axis=0)


def matches(output: np.ndarray, target: np.ndarray, tolerance: int = COLOUR_TOLERANCE) -> np.ndarray:
    """(H, W) bool: the output pixel is within ``tolerance`` of the target up to a 1-px blur or shift.

    Every channel must lie in ``[min - tolerance, max + tolerance]`` of the target's 3x3 neighbourhood.
    Inside a uniform region this is the plain ``max_c |out_c - target_c| <= tolerance``; next to a
    boundary it also accepts a blend of the two sides.
    """
    lo, hi = _neighbourhood_range(target.astype(np.int16))
    out = output.astype(np.int16)
    return ((out >= lo - tolerance) & (out <= hi + tolerance)).all(axis=2)


def _match_fraction(close: np.ndarray, region: np.ndarray) -> float | None:
    n = int(region.sum())
    return None if n == 0 else float(close[region].mean())


def _mae(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    return float(np.abs(a[region].astype(np.float64) - b[region]).mean())


def _check(value: float | None, threshold: float, higher_is_better: bool = True) -> dict[str, Any]:
    if value is None:
        return {"value": None, "threshold": threshold, "passed": True, "note": "no pixels"}
    passed = value >= threshold if higher_is_better else value <= threshold
    return {"value": round(value, 6), "threshold": threshold, "passed": bool(passed)}


def edit_checks(output: Any, sample: Sample) -> dict[str, Any]:
    """Every check of :func:`edit_success` with its value and threshold: ``{"success", "failed", "checks"}``."""
    size = sample.size
    out = as_array(output, (size, size))
    src, tgt = sample.source, sample.target
    action = sample.action
    checks: dict[str, dict[str, Any]] = {}

    if action in GLOBAL_ACTIONS:
        everything = np.ones((size, size), bool)
        checks["region"] = _check(_mae(out, tgt, everything), REGION_MAE_TOLERANCE, higher_is_better=False)
        return _verdict(checks)

    partial = np.zeros((size, size), bool)
    covered = np.zeros((size, size), bool)
    for scene in (sample.scene, sample.target_scene):
        for o in scene.objects:
            footprint, _, o_partial = obj_masks(o, size)
            partial |= o_partial
            covered |= object_alpha(o.kind, o.size, o.position, size) > 0
    core = ~partial
    close = matches(out, tgt)
    background_core = ~covered

    edited = [Obj.from_dict(sample.edit[k]) for k in ("object", "result") if sample.edit.get(k)]
    untouched = [o for o in sample.target_scene.objects if o in sample.scene.objects and o not in edited]
    keep_values = [_match_fraction(close, obj_masks(o, size)[1]) for o in untouched]
    keep_values = [v for v in keep_values if v is not None]
    checks["keep_objects"] = _check(min(keep_values) if keep_values else None, KEEP_OBJECT_FRACTION)

    if action == "background":
        checks["region"] = _check(_mae(out, tgt, background_core), REGION_MAE_TOLERANCE, higher_is_better=False)
        return _verdict(checks)

    mask = sample.mask
    changed = core & mask & (_maxdiff(src, tgt) > COLOUR_TOLERANCE)
    n_changed = int(changed.sum())
    if n_changed >= MIN_CHANGED_PIXELS:
        checks["changed"] = _check(_match_fraction(close, changed), EDIT_FRACTION)
    else:
        checks["changed"] = {"value": None, "threshold": EDIT_FRACTION, "passed": True,
                             "note": f"only {n_changed} changed core pixels"}

    result = Obj.from_dict(sample.edit["result"]) if sample.edit.get("result") else None
    misses: list[np.ndarray] = [src]
    region = mask.copy()
    if result is not None:
        checks["result"] = _check(_match_fraction(close, obj_masks(result, size)[1]), EDIT_FRACTION)
        for alt in near_misses(result):
            region |= obj_masks(alt, size)[0]
            misses.append(render_scene(swap_object(sample.target_scene, result, alt), size))

    # nearest: much closer (L1 over the edit region) to the target than to every near miss
    d_target = _mae(out, tgt, region)
    ratios = []
    for k, miss in enumerate(misses):
        if np.array_equal(miss[region], tgt[region]):
            continue  # not a distinct alternative here
        d_miss = _mae(out, miss, region)
        ratio = d_target / d_miss if d_miss > 0 else math.inf
        # the source must be far (a half-way blend fails); other renders of the result only farther
        ratios.append(ratio / NEAREST_RATIO if k == 0 else ratio)
    worst = max(ratios) if ratios else None
    checks["nearest"] = {"value": None if worst is None else round(worst, 6), "threshold": 1.0,
                         "passed": bool(worst is None or worst < 1.0)}

    checks["keep_background"] = _check(_match_fraction(close, background_core & ~mask), KEEP_BACKGROUND_FRACTION)
    return _verdict(checks)


def _verdict(checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    failed = [name for name, c in checks.items() if not c["passed"]]
    return {"success": not failed, "failed": failed, "checks": checks}


def edit_success(output: Any, sample: Sample) -> int:
    """1 if the output is a correct edit of the sample by the strict criterion (module docstring), else 0."""
    return int(edit_checks(output, sample)["success"])


def sample_metrics(output: Any, sample: Sample) -> dict[str, Any]:
    """All exact metrics of one output: edit_success (+ failed checks), l1, psnr, psnr_background."""
    out = as_array(output, (sample.size, sample.size))
    verdict = edit_checks(out, sample)
    return {
        "edit_success": int(verdict["success"]),
        "failed_checks": verdict["failed"],
        "l1": l1(out, sample.target),
        "psnr": psnr(out, sample.target),
        "psnr_background": psnr_background(out, sample),
        "l1_source": l1(out, sample.source),
    }
