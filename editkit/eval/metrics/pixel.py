"""Pixel metrics (numpy, no weights): L1, MSE (= MagicBrush's "L2"), PSNR, SSIM, full and masked.

Images are compared as floats in [0, 1] (``uint8 / 255``), so L1 is MagicBrush's L1, MSE is
``nn.MSELoss`` (no square root) and PSNR uses data range 1 (equal to data range 255 on 0-255 values),
capped at :data:`PSNR_MAX` for identical images.

SSIM follows Wang et al. (2004) as torchmetrics computes it: an 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, data range 1, population (co)variances, the map evaluated where the window lies
inside the image ("valid"), averaged over positions and channels.

**editkit masked convention** (``*_background``: output vs source over the unedited region ``~mask``;
``*_in_mask``: output vs target inside the edit region): means over the selected pixels x channels
only; masked PSNR is computed from that MSE; masked SSIM averages the SSIM map over the positions whose
whole window lies in the region (the region eroded by the window radius).

**PIE-Bench-compatible mode** (``piebench_*``, reproduction only): the 1-pixel border is forced into the
edit region (PIE-Bench's ``mask_decode``), both images are multiplied by the unedited region (zero
fill), and PSNR / MSE / SSIM are taken over the whole image. The zeroed pixels match exactly, so these
numbers are inflated relative to the editkit convention and are comparable only with PIE-Bench tables.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import PSNR_MAX, Metric, MetricBatch, register_metric

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def l1(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean |a - b| over pixels x channels (of ``region`` when given), images uint8 -> [0, 1]."""
    d = np.abs(to_float(a) - to_float(b))
    if region is not None:
        if not region.any():
            return None
        d = d[region]
    return float(d.mean())


def mse(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean squared difference over pixels x channels (of ``region``), images in [0, 1]."""
    d = to_float(a) - to_float(b)
    if region is not None:
        if not region.any():
            return None
        d = d[region]
    return float(np.mean(d * d))


def psnr_from_mse(value: float | None, data_range: float = 1.0) -> float | None:
    if value is None:
        return None
    if value <= 0:
        return PSNR_MAX
    return min(PSNR_MAX, 10.0 * math.log10(data_range**2 / value))


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps at offsets -(size-1)/2 .. (size-1)/2."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (H, W, ...) with ``taps`` along both spatial axes."""
    k = len(taps)
    h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
    rows = sum(taps[i] * x[i:i + h] for i in range(k))
    return sum(taps[j] * rows[:, j:j + w] for j in range(k))


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, window: int = WINDOW,
             sigma: float = SIGMA) -> np.ndarray | None:
    """SSIM at every position whose window fits in the image: (H - window + 1, W - window + 1, C).

    ``a``/``b`` are float arrays (H, W, C) in units of ``data_range``; None if smaller than the window.
    """
    if a.shape[0] < window or a.shape[1] < window:
        return None
    taps = gaussian_window(window, sigma)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a * mu_a
    var_b = _filter_valid(b * b, taps) - mu_b * mu_b
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean SSIM of two uint8 images; with ``region``, over window positions lying wholly inside it."""
    smap = ssim_map(to_float(a), to_float(b))
    if smap is None:
        return None
    if region is None:
        return float(smap.mean())
    inside = _filter_valid(region.astype(np.float64), np.ones(WINDOW)) >= WINDOW * WINDOW - 0.5
    if not inside.any():
        return None
    return float(smap[inside].mean())


# ------------------------------------------------------------------------------------ target fidelity
class _PairMetric(Metric):
    """value(output, reference, region) for each sample; subclasses pick the reference and region."""

    reference = "target"
    region = "all"  # all | background | edit
    fn: Any = None

    def compute(self, batch: MetricBatch, indices: list[int]) -> list[Any]:
        values = []
        for i in indices:
            ref = batch.targets[i] if self.reference == "target" else batch.sources[i]
            region = None
            if self.region == "background":
                region = ~batch.masks[i]
            elif self.region == "edit":
                region = batch.masks[i]
            values.append(type(self).fn(batch.outputs[i], ref, region))
        return values

    def config(self) -> dict[str, Any]:
        return {"reference": self.reference, "region": self.region, "scale": "images in [0, 1]"}


def _psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    return psnr_from_mse(mse(a, b, region))


@register_metric
class L1(_PairMetric):
    name, needs, higher_is_better, family = "l1", frozenset({"target"}), False, "target"
    description = "mean |output - target| over pixels and channels, [0, 1] (MagicBrush L1)"
    fn = staticmethod(l1)


@register_metric
class MSE(_PairMetric):
    name, needs, higher_is_better, family = "mse", frozenset({"target"}), False, "target"
    description = "mean squared error to the target, [0, 1]; this is MagicBrush's 'L2' (no square root)"
    fn = staticmethod(mse)


@register_metric
class PSNR(_PairMetric):
    name, needs, higher_is_better, family = "psnr", frozenset({"target"}), True, "target"
    description = f"PSNR to the target in dB, data range 1, capped at {PSNR_MAX:g}"
    fn = staticmethod(_psnr)


@register_metric
class SSIM(_PairMetric):
    name, needs, higher_is_better, family = "ssim", frozenset({"target"}), True, "target"
    description = "SSIM to the target (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1)"
    fn = staticmethod(ssim)


# ------------------------------------------------------------------------------------ preservation
@register_metric
class L1Source(_PairMetric):
    name, higher_is_better, family = "l1_source", False, "preservation"
    reference = "source"
    description = "mean |output - source| over the whole image (Emu Edit's L1 input-edit)"
    fn = staticmethod(l1)


@register_metric
class L1Background(_PairMetric):
    name, needs, higher_is_better, family = "l1_background", frozenset({"mask"}), False, "preservation"
    reference, region = "source", "background"
    description = "mean |output - source| over the unedited region (~mask), pixels x channels"
    fn = staticmethod(l1)


@register_metric
class MSEBackground(_PairMetric):
    name, needs, higher_is_better, family = "mse_background", frozenset({"mask"}), False, "preservation"
    reference, region = "source", "background"
    description = "MSE to the source over the unedited region only"
    fn = staticmethod(mse)


@register_metric
class PSNRBackground(_PairMetric):
    name, needs, higher_is_better, family = "psnr_background", frozenset({"mask"}), True, "preservation"
    reference, region = "source", "background"
    description = "PSNR to the source over the unedited region only (from its MSE); None if the mask covers all"
    fn = staticmethod(_psnr)


@register_metric
class SSIMBackground(_PairMetric):
    name, needs, higher_is_better, family = "ssim_background", frozenset({"mask"}), True, "preservation"
    reference, region = "source", "background"
    description = "SSIM map to the source averaged over window positions wholly inside the unedited region"
    fn = staticmethod(ssim)


@register_metric
class OutsideMaskMaxAbsDiff(Metric):
    """Exact background preservation: the largest |output - source| outside the edit mask, in 0-255 levels.

    The summary reports the **maximum** over samples (0 means every unedited pixel of every sample is
    bit-identical to the source), not the mean.
    """

    name, needs, higher_is_better, family = "outside_mask_max_abs_diff", frozenset({"mask"}), False, "preservation"
    description = "max |output - source| over the unedited region (~mask), 0-255 levels; summary: max over samples"

    def compute(self, batch: MetricBatch, indices: list[int]) -> list[Any]:
        out = []
        for i in indices:
            keep = ~batch.masks[i]
            diff = np.abs(batch.outputs[i].astype(np.int16) - batch.sources[i].astype(np.int16))
            out.append(int(diff[keep].max(initial=0)))
        return out

    def summarize(self, rows):
        values = [r.get(self.name) for r in rows if isinstance(r.get(self.name), (int, float))]
        return {self.name: max(values)} if values else {}


@register_metric
class L1InMask(_PairMetric):
    name, needs, higher_is_better, family = "l1_in_mask", frozenset({"target", "mask"}), False, "target"
    region = "edit"
    description = "mean |output - target| inside the edit region only"
    fn = staticmethod(l1)


@register_metric
class PSNRInMask(_PairMetric):
    name, needs, higher_is_better, family = "psnr_in_mask", frozenset({"target", "mask"}), True, "target"
    region = "edit"
    description = "PSNR to the target inside the edit region only"
    fn = staticmethod(_psnr)


# ------------------------------------------------------------------------------------ PIE-Bench mode
def piebench_unedited(mask: np.ndarray) -> np.ndarray:
    from ..datasets.piebench import force_border

    return ~force_border(mask)


def _zero_filled(batch: MetricBatch, i: int) -> tuple[np.ndarray, np.ndarray]:
    keep = piebench_unedited(batch.masks[i])[..., None]
    return to_float(batch.outputs[i]) * keep, to_float(batch.sources[i]) * keep


class _PieBench(Metric):
    needs = frozenset({"mask"})
    family = "piebench"
    default = False

    def config(self) -> dict[str, Any]:
        return {"convention": "PIE-Bench-compatible: border forced into the edit region, both images "
                              "multiplied by the unedited region, metric over the whole image"}


@register_metric
class PieBenchMSE(_PieBench):
    name, higher_is_better = "piebench_mse_unedited", False
    description = "PIE-Bench-compatible MSE of the unedited part (zero-filled, whole image); PIE-Bench reports x1e4"

    def compute(self, batch, indices):
        out = []
        for i in indices:
            a, b = _zero_filled(batch, i)
            out.append(float(np.mean((a - b) ** 2)))
        return out


@register_metric
class PieBenchPSNR(_PieBench):
    name, higher_is_better = "piebench_psnr_unedited", True
    description = "PIE-Bench-compatible PSNR of the unedited part (zero-filled, whole image, data range 1)"

    def compute(self, batch, indices):
        out = []
        for i in indices:
            a, b = _zero_filled(batch, i)
            out.append(psnr_from_mse(float(np.mean((a - b) ** 2))))
        return out


@register_metric
class PieBenchSSIM(_PieBench):
    name, higher_is_better = "piebench_ssim_unedited", True
    description = "PIE-Bench-compatible SSIM of the unedited part (zero-filled, whole image); PIE-Bench reports x1e2"

    def compute(self, batch, indices):
        out = []
        for i in indices:
            a, b = _zero_filled(batch, i)
            smap = ssim_map(a, b)
            out.append(None if smap is None else float(smap.mean()))
        return out
