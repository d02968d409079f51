"""Evaluation metrics: a registry of classes that declare their inputs and direction.

Built-in metrics (``editkit eval --metrics ...``; see docs/evaluation.md for definitions):

* target fidelity: ``l1``, ``mse`` (MagicBrush's L2), ``psnr``, ``ssim``, ``l1_in_mask``,
  ``psnr_in_mask``, ``clip_i``, ``dino``, ``lpips``;
* preservation of the input: ``l1_source``, ``l1_background``, ``mse_background``,
  ``psnr_background``, ``ssim_background``, ``clip_image``, ``dino_source``, ``lpips_background``;
* instruction following: ``clip_t``, ``clip_direction``;
* exact (EditWorld): ``edit_success``; guide text: ``expressive_exact_match``;
* PIE-Bench-compatible (off unless asked or on PIE-Bench): ``piebench_psnr_unedited``,
  ``piebench_mse_unedited``, ``piebench_ssim_unedited``, ``piebench_clip_whole``, ``piebench_clip_edited``.
"""
from __future__ import annotations

from . import clip, dino, editworld, lpips, pixel  # noqa: F401  (registration)
from .base import (
    PSNR_MAX,
    ClipSettings,
    DinoSettings,
    LpipsSettings,
    Metric,
    MetricBatch,
    MetricsConfig,
    mean,
    metric_class,
    metric_names,
    register_metric,
    registry,
    unregister_metric,
)

__all__ = [
    "PSNR_MAX", "ClipSettings", "DinoSettings", "LpipsSettings", "Metric", "MetricBatch", "MetricsConfig",
    "mean", "metric_class", "metric_names", "register_metric", "registry", "unregister_metric",
]
