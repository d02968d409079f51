"""Metric base class, registry and settings.

A metric is a class with a ``name``, the sample fields it ``needs``, whether ``higher_is_better``, an
optional learned ``backbone`` ("clip", "dino", "lpips") and ``compute(batch, indices)``, which returns
one value (or a dict of row fields holding ``name``) per listed sample. The suite only passes the
samples that have every field in ``needs``, so a metric never checks for missing inputs itself.

``needs`` may name: ``target``, ``mask``, ``source_caption``, ``target_caption``, ``edit_type``,
``rewrite``, ``editworld`` (dataset fields), ``text`` (the guide's text output, e.g. MGIE's expressive
instruction), or ``extra:KEY`` (``EditResult.extras[KEY]``, e.g. a retrieval result of a guide).

Adding a metric (in a plugin or a dataset module)::

    from editkit.eval.metrics import Metric, register_metric

    @register_metric
    class EditedFraction(Metric):
        name = "edited_fraction"
        needs = frozenset()
        higher_is_better = None
        description = "fraction of pixels that differ from the source"

        def compute(self, batch, indices):
            return [float((batch.outputs[i] != batch.sources[i]).any(-1).mean()) for i in indices]

A guide can also list metric classes in an ``eval_metrics`` class attribute (no registration): the
runner selects them whenever that guide is evaluated, and only then.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from pydantic import Field

from ...config import EditkitModel
from ...errors import InvalidInputError

PSNR_MAX = 100.0
"""PSNR of identical images (infinite) is reported as this cap, in dB (as the EditWorld metrics do)."""


# ------------------------------------------------------------------------------------ settings
class ClipSettings(EditkitModel):
    model: str = Field("ViT-B-32", min_length=1, description="open_clip model name (e.g. ViT-B-32 for MagicBrush "
                       "parity, ViT-L-14 for InstructPix2Pix/PIE-Bench parity), a path to an open_clip model-config "
                       "JSON, or 'editworld' (the committed tiny EditWorld CLIP, no checkpoint needed).")
    checkpoint: str | None = Field(None, description="Local weights (.safetensors or weights-only .pt); without "
                                   "them the CLIP metrics are skipped (nothing is downloaded).")
    preprocess: Literal["crop", "squash"] = Field("crop", description="'crop': resize the short side + centre crop "
                                                  "(CLIP's own); 'squash': resize to a square without crop (InstructPix2Pix).")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per encoder call.")


class DinoSettings(EditkitModel):
    model: str = Field("vit_small_patch16_224", min_length=1, description="timm model name (DINO ViT-S/16 = "
                       "vit_small_patch16_224 with DINO weights).")
    checkpoint: str | None = Field(None, description="Local weights for the timm model; without them DINO is skipped.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra timm.create_model arguments "
                                         "(e.g. img_size, patch_size, embed_dim for small test models).")
    image_size: int = Field(224, ge=8, le=1024, description="Centre-crop size fed to the model.")
    resize: int | None = Field(None, ge=8, le=2048, description="Short-side resize before the crop "
                               "(default: image_size * 256 / 224, MagicBrush's 256/224).")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per model call.")


class LpipsSettings(EditkitModel):
    net: Literal["alex", "vgg", "squeeze"] = Field("alex", description="LPIPS backbone ('squeeze' for PIE-Bench parity).")
    checkpoint: str | None = Field(None, description="Local torchvision weights of the backbone (the 'lpips' "
                                   "package ships only the linear heads); without them LPIPS is skipped.")


class MetricsConfig(EditkitModel):
    """Which metrics an evaluation computes and how (stored in run.json and summary.json)."""

    select: list[str] | None = Field(None, description="Metric names to compute; default: every default metric "
                                     "the dataset supports.")
    exclude: list[str] = Field(default_factory=list, description="Metric names to leave out.")
    piebench: bool | None = Field(None, description="Also compute the PIE-Bench-compatible background metrics "
                                  "(piebench_*); default: only on PIE-Bench datasets.")
    device: str = Field("cpu", description="Torch device of the learned metrics (CLIP, DINO, LPIPS).")
    clip: ClipSettings = Field(default_factory=ClipSettings)
    dino: DinoSettings = Field(default_factory=DinoSettings)
    lpips: LpipsSettings = Field(default_factory=LpipsSettings)


# ------------------------------------------------------------------------------------ batches
class MetricBatch:
    """Outputs of one guide call with everything metrics compare them to, all at the source size.

    ``outputs``/``sources``/``targets``: (H, W, 3) uint8; ``masks``: (H, W) bool, True = edit region;
    ``texts``: the guide's text per sample; ``extras``: per-sample dicts from ``EditResult.extras``, plus
    ``candidates`` (the images of ``EditResult.candidates``, best first, as the guide returned them) when it has any.
    ``cache`` is shared by the metrics of this batch (e.g. CLIP embeddings computed once).
    """

    def __init__(self, samples: Sequence[Any], outputs: Sequence[np.ndarray], sources: Sequence[np.ndarray],
                 targets: Sequence[np.ndarray | None], masks: Sequence[np.ndarray | None],
                 texts: Sequence[str | None] | None = None, extras: Sequence[dict[str, Any]] | None = None):
        self.samples = list(samples)
        self.outputs = list(outputs)
        self.sources = list(sources)
        self.targets = list(targets)
        self.masks = list(masks)
        self.texts = list(texts) if texts is not None else [None] * len(self.samples)
        self.extras = list(extras) if extras is not None else [{} for _ in self.samples]
        self.cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def has(self, i: int, need: str) -> bool:
        if need == "target":
            return self.targets[i] is not None
        if need == "mask":
            return self.masks[i] is not None
        if need == "text":
            return bool(self.texts[i])
        if need.startswith("extra:"):
            return need[6:] in self.extras[i]
        value = getattr(self.samples[i], need, None)
        return value is not None and not (isinstance(value, str) and not value.strip())


# ------------------------------------------------------------------------------------ metrics
class Metric:
    """Base class of every metric; see the module docstring."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    higher_is_better: ClassVar[bool | None] = None
    backbone: ClassVar[str | None] = None
    default: ClassVar[bool] = True
    family: ClassVar[str] = ""  # target | preservation | instruction | exact | piebench | guide
    description: ClassVar[str] = ""

    def __init__(self, settings: MetricsConfig, backbones: Any = None):
        self.settings = settings
        self.backbones = backbones

    def compute(self, batch: MetricBatch, indices: list[int]) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def summarize(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Summary fields from the per-sample rows: by default the mean of ``name`` over defined values."""
        value = mean(r.get(self.name) for r in rows)
        return {} if value is None else {self.name: value}

    def config(self) -> dict[str, Any]:
        """How this metric is computed (backbone, preprocessing, convention), stored beside the numbers."""
        return {}

    def info(self) -> dict[str, Any]:
        return {
            "higher_is_better": self.higher_is_better,
            "needs": sorted(self.needs),
            "family": self.family,
            "description": self.description,
            **({"backbone": self.backbone} if self.backbone else {}),
            **self.config(),
        }


def mean(values: Any) -> float | None:
    """Mean of the finite numbers among ``values`` (None, strings and NaN are left out); None if none."""
    vals = [float(v) for v in values if isinstance(v, (int, float, np.integer, np.floating))]
    vals = [v for v in vals if math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else None


_REGISTRY: dict[str, type[Metric]] = {}
ALIASES = {"l2": "mse", "clip-i": "clip_i", "clip-t": "clip_t", "cvs": "clip_i", "cts": "clip_t",
           "clipdir": "clip_direction", "clip_dir": "clip_direction", "clipimg": "clip_image"}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Register a metric class under ``cls.name`` (usable as a decorator). A different class under a taken
    name is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)) or not cls.name:
        raise TypeError(f"{cls!r} is not a Metric subclass with a name")
    old = _REGISTRY.get(cls.name)
    if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"metric '{cls.name}' is already registered by {old.__module__}.{old.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_metric(name: str) -> None:
    _REGISTRY.pop(name, None)


def metric_names() -> list[str]:
    return sorted(_REGISTRY)


def metric_class(name: str) -> type[Metric]:
    key = ALIASES.get(name.lower(), name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise InvalidInputError(f"Unknown metric '{name}'.{hint} Available: {', '.join(sorted(_REGISTRY))}.")


def registry() -> dict[str, type[Metric]]:
    return dict(_REGISTRY)
