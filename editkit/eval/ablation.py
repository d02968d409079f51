"""Ablations: a YAML spec of a base run and a grid of overrides, expanded into validated variants and
run with :func:`editkit.eval.runner.run_eval` (the engine of ``editkit ablate``).

Spec (validated by :class:`AblationSpec`; unknown keys are errors)::

    name: editworld-guides
    dataset: editworld:data/editworld-test     # a dataset SPEC, as for editkit eval
    limit: 50                                  # optional
    seed: 0
    batch_size: 8
    base: {guide: ip2p, options: {steps: 20}}  # options apply to every variant
    guide_options: {ip2p: {scheduler: ddim}}   # options for the variants of one guide
    grid:                                      # a list of grids; each is a Cartesian product
      - {guide: [ip2p, mgie]}
      - {guide: ip2p, image_scale: [1.0, 1.5, 2.0]}
    metrics: {select: null, clip: {checkpoint: null}}   # MetricsConfig
    report: {samples: 8}

A variant's options are ``base.options`` + ``guide_options[guide]`` + its grid values (dotted keys set
nested fields), validated with the guide's own ``Config.model_validate`` (never ``model_copy``, which
would skip validation). Every invalid variant is reported up front, by name, before anything runs.
A variant whose guide is not installed (or whose plugin fails to import) is skipped with a note.
Each variant runs in ``OUT/runs/<slug>-<hash>``, the hash covering guide, validated config, dataset,
seed and metric settings, so re-running a spec resumes finished work and a changed spec starts fresh
folders.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ..config import EditkitModel
from ..errors import EditkitError, InvalidInputError, UnknownGuideError
from .metrics import MetricsConfig

RUNS_DIR = "runs"
SPEC_FILE = "ablation.json"


class BaseRun(EditkitModel):
    guide: str = Field(min_length=1, description="Guide of the base run (and of grid entries without 'guide').")
    options: dict[str, Any] = Field(default_factory=dict, description="Options applied to every variant.")


class ReportSettings(EditkitModel):
    samples: int = Field(8, ge=0, le=500, description="Samples shown in the HTML image grid.")
    plots: bool = Field(True, description="Draw PNG plots (matplotlib, Agg backend).")


class AblationSpec(EditkitModel):
    name: str = Field(min_length=1, max_length=100, description="Name of the ablation (report title).")
    description: str = Field("", description="Free text shown in the report.")
    dataset: str = Field(min_length=1, description="Dataset SPEC: a folder, or FORMAT:PATH.")
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N samples.")
    seed: int = Field(0, ge=0, description="Sample i uses seed SEED + i in every variant.")
    batch_size: int = Field(8, ge=1, le=1024, description="Samples per guide call.")
    device: str | None = Field(None, description="Sets the 'device' option of every variant whose guide has one.")
    base: BaseRun
    guide_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grid: list[dict[str, Any]] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @field_validator("grid", mode="before")
    @classmethod
    def _one_grid(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for k, entry in enumerate(value):
            for key, values in entry.items():
                if isinstance(values, list) and not values:
                    raise ValueError(f"grid entry {k + 1}: '{key}' has an empty list of values")
        return value


@dataclass
class Variant:
    """One run of an ablation."""

    name: str
    guide: str
    overrides: dict[str, Any]
    options: dict[str, Any]
    config: dict[str, Any] | None = None
    run_id: str = ""
    status: str = "pending"  # pending | ok | failed | skipped | duplicate
    note: str | None = None
    summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> str:
        return f"{RUNS_DIR}/{self.run_id}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "guide": self.guide, "overrides": self.overrides, "config": self.config,
                "run_id": self.run_id or None, "run_dir": self.run_dir if self.run_id else None,
                "status": self.status, "note": self.note}


def load_spec(path: str | Path) -> AblationSpec:
    """Read and validate a YAML (or JSON) spec; errors name the file and the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"ablation spec {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"ablation spec {path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"ablation spec {path}: expected a mapping at the top level")
    try:
        return AblationSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<spec>"
        problem = "unknown key" if err.get("type") == "extra_forbidden" else err.get("msg")
        raise InvalidInputError(f"ablation spec {path}: '{loc}': {problem}") from None


def _nest(options: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = options
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[parts[-1]] = value


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:80] or "variant"


def _grid_points(spec: AblationSpec) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for entry in spec.grid or [{}]:
        keys = list(entry)
        lists = [v if isinstance(v, list) else [v] for v in entry.values()]
        for combo in itertools.product(*lists):
            points.append(dict(zip(keys, combo)))
    return points


def expand(spec: AblationSpec, *, available: list[str] | None = None) -> list[Variant]:
    """All variants of ``spec`` with validated configs; raises one error listing every invalid variant."""
    from .. import registry

    names = registry.names() if available is None else available
    variants: list[Variant] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for point in _grid_points(spec):
        guide = str(point.get("guide", spec.base.guide))
        overrides = {k: v for k, v in point.items() if k != "guide"}
        label = " ".join([guide] + [f"{k}={_fmt(v)}" for k, v in overrides.items()])
        options: dict[str, Any] = {}
        for key, value in {**spec.base.options, **spec.guide_options.get(guide, {}), **overrides}.items():
            _nest(options, key, value)
        variant = Variant(label, guide, overrides, options)
        variants.append(variant)
        if guide not in names:
            variant.status, variant.note = "skipped", f"guide '{guide}' is not installed"
            continue
        try:
            cls = registry.load_guide_class(guide)
        except UnknownGuideError:
            variant.status, variant.note = "skipped", f"guide '{guide}' is not installed"
            continue
        except EditkitError as exc:
            variant.status, variant.note = "skipped", " ".join(str(exc).split())
            continue
        fields = getattr(cls.Config, "model_fields", {})
        if "progress" in fields:
            options.setdefault("progress", False)
        if spec.device is not None and "device" in fields:
            options["device"] = spec.device
        try:
            config = cls.validate(options)  # Config.model_validate, wrapped as GuideConfigError
        except EditkitError as exc:
            problems.append(f"variant '{label}': {exc}")
            continue
        variant.config = config.model_dump(mode="json")
        key = json.dumps({"guide": guide, "config": {k: v for k, v in variant.config.items() if k != "progress"},
                          "dataset": spec.dataset, "seed": spec.seed, "metrics": spec.metrics.model_dump(mode="json")},
                         sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        variant.run_id = f"{slug(label)}-{digest}"
        if digest in seen:
            variant.status, variant.note = "duplicate", f"same configuration as '{seen[digest]}'"
        else:
            seen[digest] = label
    if problems:
        raise InvalidInputError(f"{len(problems)} invalid variant(s): " + "; ".join(problems))
    if not any(v.run_id and v.status == "pending" for v in variants):
        notes = "; ".join(f"{v.name}: {v.note}" for v in variants if v.note)
        raise InvalidInputError(f"no variant of ablation '{spec.name}' can run ({notes})")
    return variants


def _finished(run_dir: Path, dataset_size: int) -> dict[str, Any] | None:
    """The summary of a complete earlier run of this variant over the same samples, else None."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if run.get("status") == "complete" and summary.get("dataset_size") == dataset_size:
        return summary
    return None


def run_ablation(spec: AblationSpec, out: str | Path, *, limit: int | None = None, progress: bool = True,
                 backbones: Any = None, log: Any = None) -> list[Variant]:
    """Run every variant of ``spec`` into ``out`` (resumable) and write the report; returns the variants."""
    from .. import api
    from .datasets import load
    from .report import write_report
    from .runner import run_eval

    limit = limit if limit is not None else spec.limit
    variants = expand(spec)
    dataset = load(spec.dataset, limit=limit)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a folder")
    if not out.parent.exists():
        raise InvalidInputError(f"the parent folder of {out} does not exist")
    if out.is_dir() and any(out.iterdir()) and not (out / SPEC_FILE).is_file():
        raise InvalidInputError(f"{out} is not empty and holds no ablation ({SPEC_FILE}); use another --out")
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)

    def save_state() -> None:
        from .results import write_json

        write_json(out / SPEC_FILE, {"spec": spec.model_dump(mode="json"), "limit": limit,
                                     "dataset": dataset.describe(), "variants": [v.to_json() for v in variants]})

    save_state()
    todo = [v for v in variants if v.status == "pending"]
    for k, variant in enumerate(todo, start=1):
        run_dir = out / variant.run_dir
        summary = _finished(run_dir, len(dataset))
        if summary is not None:
            variant.status, variant.summary = "ok", summary
            say(f"[{k}/{len(todo)}] {variant.name}: already complete")
            continue
        say(f"[{k}/{len(todo)}] {variant.name}")
        t0 = time.perf_counter()
        try:
            guide = api.load_guide(variant.guide, **(variant.config or {}))
            load_seconds = time.perf_counter() - t0
            variant.summary = run_eval(guide, dataset, run_dir, seed=spec.seed, batch_size=spec.batch_size,
                                       progress=progress, resume=True, metrics=spec.metrics, backbones=backbones,
                                       extra_summary={"load_seconds": load_seconds, "variant": variant.name},
                                       run_info={"ablation": spec.name, "variant": variant.name})
            variant.status = "ok"
        except EditkitError as exc:
            variant.status, variant.note = "failed", " ".join(str(exc).split())
            say(f"    failed: {variant.note}")
        save_state()
    write_report(out, spec, variants, dataset)
    save_state()
    return variants
