"""Run a guide over an EditWorld dataset and score it: the engine of ``editkit eval``.

``run_eval(guide, dataset, out)`` takes a guide *instance* (anything with ``name``, ``needs``,
``accepts``, ``config`` and ``edit(EditRequest) -> EditResult``), so it is testable without the
registry. It writes::

    OUT/outputs/<id>.png   the guide's output for every sample
    OUT/metrics.jsonl      one JSON per sample: id, edit_type, family, action, edit_success,
                           failed_checks, l1, psnr, psnr_background, l1_source, seconds, [text,
                           expressive_exact_match]
    OUT/summary.json       edit_success, edit_success_by_type, edit_success_by_family, psnr,
                           psnr_background, l1, seconds_per_edit, count, [expressive_exact_match], ...

Masks are passed only to guides that declare ``"mask"`` in ``needs`` or ``accepts``; extra inputs
(``image1`` as an RGB PIL image, ``audio1`` as a float32 16 kHz waveform) only where declared too.
Samples lacking an input the guide *needs* are skipped and counted in ``summary["skipped"]``.
Samples with extra inputs for the guide are run one per call; the others in batches of
``batch_size``. Sample ``i`` of the dataset always uses seed ``seed + i``, whatever the batching.
A sample the guide refuses (``GuideError``/``InvalidInputError`` from ``edit``) is scored as
unedited, with the error in its row and in ``summary["errors"]``; other exceptions stop the run.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from ..editworld.audio import SAMPLE_RATE
from ..editworld.dataset import EditWorldDataset, load_dataset
from ..editworld.generator import Sample
from ..editworld.world import normalize_text
from ..errors import GuideError, InvalidInputError
from ..types import EditRequest
from . import editworld_metrics as M

REFUSALS = (GuideError, InvalidInputError)
"""Errors of ``guide.edit`` that concern one sample (an instruction the guide cannot follow): the sample
is scored as unedited (its source), the message is kept in its metrics row, and the run goes on."""

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
OUTPUTS_DIR = "outputs"


def _declared(guide: Any) -> tuple[frozenset[str], frozenset[str]]:
    needs = frozenset(getattr(guide, "needs", frozenset()) or ())
    accepts = frozenset(getattr(guide, "accepts", frozenset()) or ())
    return needs, accepts


def _config_dict(guide: Any) -> dict[str, Any]:
    config = getattr(guide, "config", None)
    if config is None:
        return {}
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    return dict(config) if isinstance(config, dict) else {"repr": repr(config)}


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals) / len(vals)) if vals else None


def _round(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def check_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out`` (its parent must exist); refuse a folder holding results unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InvalidInputError(f"{out} is not empty; pass --overwrite to replace the results there")
    if not out.parent.exists():
        raise InvalidInputError(f"the parent folder of {out} does not exist")
    (out / OUTPUTS_DIR).mkdir(parents=True, exist_ok=True)
    return out


class _Plan:
    """Which dataset fields one guide gets."""

    def __init__(self, guide: Any):
        needs, accepts = _declared(guide)
        self.needs = needs
        self.wants = needs | accepts
        self.use_mask = "mask" in self.wants
        self.input_names = sorted(n for n in self.wants if n != "mask")

    def missing(self, sample: Sample) -> list[str]:
        return [n for n in sorted(self.needs) if n != "mask" and n not in sample.inputs]

    def inputs(self, sample: Sample) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.input_names:
            if name in sample.inputs:
                value = sample.inputs[name]
                out[name] = Image.fromarray(value) if getattr(value, "ndim", 0) == 3 else value
        return out


def _batches(indexed: Sequence[tuple[int, Sample]], plan: _Plan, batch_size: int):
    """Consecutive samples without extra inputs go together (up to batch_size); others alone."""
    pending: list[tuple[int, Sample]] = []
    for item in indexed:
        if plan.inputs(item[1]):
            if pending:
                yield pending
                pending = []
            yield [item]
        else:
            pending.append(item)
            if len(pending) >= batch_size:
                yield pending
                pending = []
    if pending:
        yield pending


def _run_batch(guide: Any, plan: _Plan, batch: list[tuple[int, Sample]], seed: int):
    samples = [s for _, s in batch]
    first = batch[0][0]
    if any(i != first + k for k, (i, _) in enumerate(batch)):  # pragma: no cover - _batches keeps order
        raise RuntimeError("batches must hold consecutive samples")
    request = EditRequest(
        images=[Image.fromarray(s.source) for s in samples],
        instructions=[s.instruction for s in samples],
        masks=[Image.fromarray(s.mask.astype(np.uint8) * 255, mode="L") for s in samples] if plan.use_mask else None,
        inputs=plan.inputs(samples[0]) if len(samples) == 1 else {},
        seed=seed + first,
    )
    t0 = time.perf_counter()
    result = guide.edit(request)
    seconds = time.perf_counter() - t0
    if len(result.images) != len(samples):
        raise GuideError(f"guide '{getattr(guide, 'name', guide)}' returned {len(result.images)} images "
                         f"for {len(samples)} requests")
    texts = list(result.text or [])
    return result, seconds, [texts[k] if k < len(texts) else None for k in range(len(samples))]


def run_eval(
    guide: Any,
    dataset: str | Path | EditWorldDataset | Sequence[Sample],
    out: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    extra_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``guide`` on ``dataset`` (a folder, an EditWorldDataset, or a list of Samples); returns the summary."""
    if batch_size < 1:
        raise InvalidInputError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    dataset_name = str(dataset) if isinstance(dataset, (str, Path)) else getattr(dataset, "root", "<in memory>")
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(dataset, limit=limit)
    samples = list(dataset)[: limit if limit is not None else None]
    if not samples:
        raise InvalidInputError("the dataset holds no samples")
    out = check_out_dir(out, overwrite)
    plan = _Plan(guide)
    name = getattr(guide, "name", type(guide).__name__)

    runnable = [(i, s) for i, s in enumerate(samples) if not plan.missing(s)]
    skipped = {s.id: plan.missing(s) for s in samples if plan.missing(s)}
    if not runnable:
        needed = sorted({n for v in skipped.values() for n in v})
        raise InvalidInputError(f"guide '{name}' needs {', '.join(needed)}, which no sample of the dataset has "
                                "(generate one with --types multimodal)")

    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    resized = 0
    total_seconds = 0.0
    bar = tqdm(total=len(runnable), desc=f"eval {name}", unit="edit", disable=not progress)
    with (out / METRICS_FILE).open("w") as fh:
        def record(index: int, sample: Sample, image: Image.Image, seconds: float, text: str | None,
                   error: str | None = None) -> None:
            nonlocal resized
            image = image.convert("RGB") if hasattr(image, "convert") else Image.fromarray(M.as_array(image))
            if image.size != (sample.size, sample.size):
                image = image.resize((sample.size, sample.size), Image.Resampling.BICUBIC)
                resized += 1
            image.save(out / OUTPUTS_DIR / f"{sample.id}.png")
            row: dict[str, Any] = {
                "id": sample.id,
                "index": index,
                "edit_type": sample.edit_type,
                "family": sample.family,
                "action": sample.action,
                "instruction": sample.instruction,
                **M.sample_metrics(np.asarray(image), sample),
                "seconds": seconds,
                "seed": seed + index,
            }
            if error is not None:
                row["error"] = error
            if text is not None:
                row["text"] = text
                row["expressive_exact_match"] = int(normalize_text(text) == normalize_text(sample.rewrite))
            rows.append(row)
            fh.write(json.dumps(_round(row)) + "\n")

        def run(batch: list[tuple[int, Sample]]) -> None:
            try:
                result, seconds, texts = _run_batch(guide, plan, batch, seed)
            except REFUSALS as exc:
                if len(batch) > 1:  # find the sample(s) the guide refuses; the others count normally
                    for item in batch:
                        run([item])
                    return
                index, sample = batch[0]
                message = " ".join(str(exc).split()) or type(exc).__name__
                record(index, sample, Image.fromarray(sample.source), 0.0, None, error=message)
                bar.update(1)
                return
            for (index, sample), image, text in zip(batch, result.images, texts):
                record(index, sample, image, seconds / len(batch), text)
            bar.update(len(batch))

        for batch in _batches(runnable, plan, batch_size):
            run(batch)
    bar.close()

    summary = summarize(rows)
    summary.update({
        "guide": name,
        "config": _config_dict(guide),
        "dataset": str(dataset_name),
        "dataset_size": len(samples),
        "skipped": len(skipped),
        "seed": seed,
        "batch_size": batch_size,
        "limit": limit,
        "inputs_passed": (["mask"] if plan.use_mask else []) + plan.input_names,
        "outputs_resized": resized,
        "seconds_total": total_seconds,
        "audio_sample_rate": SAMPLE_RATE,
        "metric_constants": M.CONSTANTS,
        **(extra_summary or {}),
    })
    if skipped:
        summary["skipped_reason"] = {f"needs {','.join(v)}": sum(1 for x in skipped.values() if x == v)
                                     for v in {tuple(x) for x in skipped.values()}}
    (out / SUMMARY_FILE).write_text(json.dumps(_round(summary), indent=2, sort_keys=True) + "\n")
    return summary


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-sample rows: means overall, by edit type and by family."""
    by_type: dict[str, list[int]] = defaultdict(list)
    by_family: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        by_type[r["edit_type"]].append(r["edit_success"])
        by_family[r["family"]].append(r["edit_success"])
    count = len(rows)
    summary: dict[str, Any] = {
        "count": count,
        "edit_success": _mean(r["edit_success"] for r in rows),
        "edit_success_by_type": {k: _mean(v) for k, v in sorted(by_type.items())},
        "edit_success_by_family": {k: _mean(v) for k, v in sorted(by_family.items())},
        "count_by_type": {k: len(v) for k, v in sorted(by_type.items())},
        "psnr": _mean(r["psnr"] for r in rows),
        "psnr_background": _mean(r["psnr_background"] for r in rows),
        "l1": _mean(r["l1"] for r in rows),
        "seconds_per_edit": _mean(r["seconds"] for r in rows if "error" not in r),
        "errors": sum(1 for r in rows if "error" in r),
    }
    texts = [r for r in rows if "expressive_exact_match" in r]
    if texts:
        summary["expressive_exact_match"] = _mean(r["expressive_exact_match"] for r in texts)
        summary["expressive_count"] = len(texts)
    return summary
