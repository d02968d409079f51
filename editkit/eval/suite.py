"""Choosing, running and summarising the metrics of one evaluation (:class:`MetricSuite`).

Selection: ``MetricsConfig.select`` names the metrics (aliases such as ``l2`` or ``clip-i`` work), or
by default every registered metric marked ``default``, plus the PIE-Bench-compatible ones when
``piebench`` is on (by default for PIE-Bench datasets), plus the guide's own ``eval_metrics`` (metric
classes a guide lists; they are used for that guide's runs without being registered globally).
A metric whose dataset fields are absent from every sample is skipped with a note; one whose learned
backbone has no local weights too (or, when it was selected by name, that is an error). Backbones are
loaded once per process and settings, so an ablation over many variants loads CLIP once.
"""
from __future__ import annotations

import importlib
import json
import time
from collections import defaultdict
from typing import Any, Sequence

from ..errors import InvalidInputError
from .metrics import Metric, MetricBatch, MetricsConfig, mean, metric_class, registry
from .samples import FIELDS, EvalDataset

BACKBONES = {
    "clip": "editkit.eval.metrics.clip:ClipEmbedder",
    "dino": "editkit.eval.metrics.dino:DinoEmbedder",
    "lpips": "editkit.eval.metrics.lpips:LpipsModel",
}
_LOADED: dict[tuple[str, str], Any] = {}


def _backbone_class(kind: str) -> Any:
    module, _, name = BACKBONES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


class Backbones:
    """The learned models of one settings object, loaded on first use and cached per process.

    ``injected`` maps a kind to a ready object (tests, or a caller's own embedder): anything with
    ``encode_images(list[uint8 array]) -> (N, D)`` (and ``encode_texts`` for CLIP) and ``describe()``.
    """

    def __init__(self, settings: MetricsConfig, injected: dict[str, Any] | None = None):
        self.settings = settings
        self.injected = dict(injected or {})

    def _settings(self, kind: str) -> Any:
        return getattr(self.settings, kind)

    def unavailable(self, kind: str) -> str | None:
        if kind in self.injected:
            return None
        return _backbone_class(kind).unavailable(self._settings(kind))

    def get(self, kind: str) -> Any:
        if kind in self.injected:
            return self.injected[kind]
        key = (kind, json.dumps([self._settings(kind).model_dump(mode="json"), self.settings.device], sort_keys=True))
        if key not in _LOADED:
            reason = self.unavailable(kind)
            if reason:
                raise InvalidInputError(f"{kind.upper()} metrics: {reason}")
            _LOADED[key] = _backbone_class(kind)(self._settings(kind), self.settings.device)
        return _LOADED[key]


def _no_values_reason(metric: Metric) -> str:
    if "text" in metric.needs:
        return "the guide returned no text"
    extras = [n[6:] for n in metric.needs if n.startswith("extra:")]
    if extras:
        return f"the guide returned no {', '.join(extras)}"
    return "no sample had a defined value"


class MetricSuite:
    """The metrics of one run over one dataset; see the module docstring."""

    def __init__(self, settings: MetricsConfig | dict[str, Any] | None, dataset: EvalDataset, *,
                 extra: Sequence[type[Metric]] = (), backbones: Backbones | dict[str, Any] | None = None):
        if not isinstance(settings, MetricsConfig):
            settings = MetricsConfig.model_validate(settings or {})
        self.settings = settings
        if isinstance(backbones, Backbones):
            self.backbones = backbones
        else:
            self.backbones = Backbones(settings, backbones)
        self.extra = {cls.name: cls for cls in extra}  # the guide's own metrics: selected for this run only
        explicit = settings.select is not None
        reg = registry()
        piebench = settings.piebench if settings.piebench is not None else dataset.format == "piebench"
        if explicit:
            names = list(settings.select or [])
        else:
            names = [n for n, c in reg.items() if c.default]
            names += [n for n, c in reg.items() if piebench and c.family == "piebench"]
            names += [c.name for c in extra]
        excluded = {self._class(n).name for n in settings.exclude}
        have = dataset.fields()
        self.metrics: list[Metric] = []
        self.skipped: dict[str, str] = {}
        seen: set[str] = set()
        for name in names:
            cls = self._class(name)
            if cls.name in seen or cls.name in excluded:
                continue
            seen.add(cls.name)
            missing = sorted(n for n in cls.needs if n in FIELDS and n not in have)
            if missing:
                self.skipped[cls.name] = f"the dataset has no {', '.join(missing)}"
                continue
            if cls.backbone:
                reason = self.backbones.unavailable(cls.backbone)
                if reason:
                    if explicit:
                        raise InvalidInputError(f"metric '{cls.name}': {cls.backbone.upper()} backbone: {reason}")
                    self.skipped[cls.name] = f"{cls.backbone.upper()} backbone: {reason}"
                    continue
            self.metrics.append(cls(settings, self.backbones))
        for kind in sorted({m.backbone for m in self.metrics if m.backbone}):
            self.backbones.get(kind)  # bad checkpoints fail now, before the guide runs
        self.seconds: dict[str, float] = defaultdict(float)

    def _class(self, name: str) -> type[Metric]:
        return self.extra[name] if name in self.extra else metric_class(name)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def compute(self, batch: MetricBatch) -> list[dict[str, Any]]:
        """Row fields of every sample of ``batch`` (a metric a sample lacks inputs for adds no field)."""
        rows: list[dict[str, Any]] = [{} for _ in range(len(batch))]
        for metric in self.metrics:
            indices = [i for i in range(len(batch)) if all(batch.has(i, n) for n in metric.needs)]
            if not indices:
                continue
            t0 = time.perf_counter()
            values = metric.compute(batch, indices)
            self.seconds[metric.name] += time.perf_counter() - t0
            if len(values) != len(indices):
                raise RuntimeError(f"metric '{metric.name}' returned {len(values)} values for {len(indices)} samples")
            for i, value in zip(indices, values):
                if isinstance(value, dict):
                    rows[i].update(value)
                else:
                    rows[i][metric.name] = value
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
        """(summary fields, notes on selected metrics that produced no value)."""
        out: dict[str, Any] = {}
        notes: dict[str, str] = {}
        for metric in self.metrics:
            part = metric.summarize(rows)
            if part.get(metric.name) is None:
                notes[metric.name] = _no_values_reason(metric)
                part = {k: v for k, v in part.items() if k != metric.name}
            out.update(part)
        return out, notes

    def breakdown(self, rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
        """Means of every metric per value of a row field (``edit_type``) or per tag (``key="tags"``)."""
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            values = r.get(key)
            for v in (values if isinstance(values, list) else [values]):
                if v is not None:
                    groups[str(v)].append(r)
        result: dict[str, dict[str, Any]] = {}
        for group, members in sorted(groups.items()):
            entry: dict[str, Any] = {"count": len(members)}
            for metric in self.metrics:
                value = mean(m.get(metric.name) for m in members)
                if value is not None:
                    entry[metric.name] = value
            result[group] = entry
        return result

    def info(self) -> dict[str, dict[str, Any]]:
        return {m.name: m.info() for m in self.metrics}

    def directions(self) -> dict[str, bool | None]:
        classes = {**registry(), **self.extra}
        return {name: cls.higher_is_better for name, cls in classes.items()}
