"""The results folder of one evaluation run: layout, resuming, summary.json / summary.csv / run.json.

::

    OUT/run.json         validated guide config, dataset, metric settings, versions, git commit, seed,
                         device, timings, attempts; its "fingerprint" decides whether a run may resume
    OUT/metrics.jsonl    one JSON object per finished sample (appended as samples finish)
    OUT/outputs/<id>.png the guide's output per sample (written atomically)
    OUT/summary.json     means, breakdowns by edit type and tag, metric definitions, skipped metrics
    OUT/summary.csv      metric, value, direction (arrow from higher_is_better), count
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from ..errors import InvalidInputError
from .samples import safe_name

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
SUMMARY_CSV = "summary.csv"
RUN_FILE = "run.json"
OUTPUTS_DIR = "outputs"
RESULT_FILES = (METRICS_FILE, SUMMARY_FILE, SUMMARY_CSV, RUN_FILE)
ARROWS = {True: "↑", False: "↓", None: ""}


def clean(value: Any, digits: int = 7) -> Any:
    """JSON-ready: numpy scalars -> Python, floats to ``digits`` significant digits, non-finite -> None."""
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, digits) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(clean(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def output_path(out: Path, sample_id: str) -> Path:
    return out / OUTPUTS_DIR / f"{safe_name(sample_id)}.png"


def save_output(out: Path, sample_id: str, image: np.ndarray) -> Path:
    """Write an output PNG atomically (a killed run never leaves a half-written image)."""
    path = output_path(out, sample_id)
    tmp = path.with_name(path.stem + ".part.png")
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)
    return path


def clear_results(out: Path) -> None:
    """Remove the files of an earlier run (and nothing else) from ``out``."""
    for name in RESULT_FILES:
        (out / name).unlink(missing_ok=True)
    outputs = out / OUTPUTS_DIR
    if outputs.is_dir():
        for png in outputs.glob("*.png"):
            png.unlink()


def _differences(old: Any, new: Any) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["run"]
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _has_content(out: Path) -> bool:
    """Anything in ``out`` besides an empty outputs/ folder."""
    for entry in out.iterdir():
        if entry.name == OUTPUTS_DIR and entry.is_dir() and not any(entry.iterdir()):
            continue
        return True
    return False


def prepare_out(out: str | Path, fingerprint: dict[str, Any] | None = None, *, overwrite: bool = False,
                resume: bool = False, create: bool = True) -> Path:
    """Create ``out`` or check it may be used (``create=False``: check only, change nothing).

    A non-empty folder is refused unless ``overwrite`` (earlier results removed) or ``resume`` and its
    run.json has the same ``fingerprint`` (guide, config, dataset, seed, metric settings).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a folder")
    if out.is_dir() and _has_content(out):
        if overwrite:
            if create:
                clear_results(out)
        elif resume and (out / RUN_FILE).is_file():
            try:
                previous = json.loads((out / RUN_FILE).read_text()).get("fingerprint")
            except (ValueError, AttributeError):
                raise InvalidInputError(f"{out / RUN_FILE} is unreadable; pass --overwrite to start again") from None
            if fingerprint is not None and clean(previous) != clean(fingerprint):
                what = ", ".join(_differences(clean(previous), clean(fingerprint)))
                raise InvalidInputError(f"{out} holds a run with a different {what}; use another --out, or "
                                        "--overwrite to replace it")
        elif resume:
            raise InvalidInputError(f"{out} is not empty and holds no editkit run (run.json); use another --out, "
                                    "or --overwrite")
        else:
            raise InvalidInputError(f"{out} is not empty; pass --overwrite to replace the results there")
    if not out.parent.exists():
        raise InvalidInputError(f"the parent folder of {out} does not exist")
    if create:
        (out / OUTPUTS_DIR).mkdir(parents=True, exist_ok=True)
    return out


def check_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out``; refuse a folder holding results unless ``overwrite`` (kept for callers of 0.1)."""
    return prepare_out(out, overwrite=overwrite)


def read_finished(out: Path, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Rows of metrics.jsonl for samples in ``ids`` whose output PNG exists (the finished samples).

    A line cut short by a kill, a row without its PNG, and repeated ids (the last wins) are dropped, and
    the file is rewritten without them, so appending can go on.
    """
    path = out / METRICS_FILE
    if not path.is_file():
        return {}
    wanted = set(ids)
    rows: dict[str, dict[str, Any]] = {}
    kept: list[str] = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or "id" not in row:
            continue
        if not output_path(out, str(row["id"])).is_file():
            continue
        kept.append(json.dumps(row, ensure_ascii=False))
        if str(row["id"]) in wanted:
            rows[str(row["id"])] = row
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)
    return rows


def csv_rows(summary: dict[str, Any], directions: dict[str, bool | None]) -> list[list[Any]]:
    """summary.csv body: one row per scalar metric, then per-type and per-tag rows as ``metric[group]``."""
    counts = summary.get("metric_counts", {})
    rows: list[list[Any]] = [["count", summary.get("count"), "", summary.get("count")]]
    for name in summary.get("metric_order", []):
        if summary.get(name) is not None:
            rows.append([name, summary[name], ARROWS.get(directions.get(name)), counts.get(name)])
    if summary.get("seconds_per_edit") is not None:
        rows.append(["seconds_per_edit", summary["seconds_per_edit"], ARROWS[False], summary.get("count")])
    for key in ("by_type", "by_tag"):
        for group, entry in (summary.get(key) or {}).items():
            for name in summary.get("metric_order", []):
                if entry.get(name) is not None:
                    rows.append([f"{name}[{group}]", entry[name], ARROWS.get(directions.get(name)), entry.get("count")])
    return rows


def write_summary(out: Path, summary: dict[str, Any], directions: dict[str, bool | None]) -> None:
    write_json(out / SUMMARY_FILE, summary)
    tmp = out / (SUMMARY_CSV + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["metric", "value", "better", "count"])
        for row in csv_rows(clean(summary), directions):
            writer.writerow(row)
    os.replace(tmp, out / SUMMARY_CSV)
