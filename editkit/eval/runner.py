"""Run a guide over a dataset and score it: the engine of ``editkit eval``.

``run_eval(guide, dataset, out)`` takes a guide *instance* (anything with ``name``, ``needs``,
``accepts``, ``config`` and ``edit(EditRequest) -> EditResult``), so it is testable without the
registry. ``dataset`` is a spec (``PATH`` or ``FORMAT:PATH``, see :mod:`editkit.eval.datasets`), an
:class:`~editkit.eval.samples.EvalDataset`, an EditWorld dataset, or a list of samples. It writes the
folder described in :mod:`editkit.eval.results`; per sample, ``metrics.jsonl`` holds id, index,
edit_type, family, action, instruction, the metric values (e.g. edit_success, failed_checks, l1, psnr,
psnr_background, l1_source), seconds, seed, and [text, error].

Masks are passed only to guides that declare ``"mask"`` in ``needs`` or ``accepts``; extra inputs
(``image1`` as an RGB PIL image, ``audio1`` as a float32 16 kHz waveform) only where declared too.
Samples lacking an input the guide *needs* are skipped and counted in ``summary["skipped"]``.
Samples with extra inputs for the guide are run one per call; the others in batches of
``batch_size`` (a batch never spans a gap or a multi-turn chain). Sample ``i`` of the dataset always
uses seed ``seed + i``, whatever the batching. A sample the guide refuses (``GuideError`` /
``InvalidInputError`` from ``edit``) is scored as unedited, with the error in its row and in
``summary["errors"]``; other exceptions stop the run.

**Resuming** (``resume=True``, the CLI default): finished samples (a row in metrics.jsonl and its PNG)
are skipped, the guide runs only on the others, and the summary covers them all. The folder's run.json
must match the run's fingerprint (guide, config without ``progress``, dataset, seed, metric settings);
``limit`` and ``batch_size`` may change between attempts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..editworld.audio import SAMPLE_RATE
from ..errors import GuideError, InvalidInputError
from ..types import EditRequest
from . import editworld_metrics as M
from . import results as R
from .datasets import as_eval_dataset
from .metrics import MetricBatch, MetricsConfig
from .runinfo import device_info, git_info, now, versions
from .samples import EvalDataset, EvalSample, read_rgb, resize_rgb
from .suite import Backbones, MetricSuite

REFUSALS = (GuideError, InvalidInputError)
"""Errors of ``guide.edit`` that concern one sample (an instruction the guide cannot follow): the sample
is scored as unedited (its source), the message is kept in its metrics row, and the run goes on."""

METRICS_FILE, SUMMARY_FILE, OUTPUTS_DIR = R.METRICS_FILE, R.SUMMARY_FILE, R.OUTPUTS_DIR
check_out_dir = R.check_out_dir
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _declared(guide: Any) -> tuple[frozenset[str], frozenset[str]]:
    needs = frozenset(getattr(guide, "needs", frozenset()) or ())
    accepts = frozenset(getattr(guide, "accepts", frozenset()) or ())
    return needs, accepts


def config_dict(guide: Any) -> dict[str, Any]:
    config = getattr(guide, "config", None)
    if config is None:
        return {}
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    return dict(config) if isinstance(config, dict) else {"repr": repr(config)}


def fingerprint(name: str, config: dict[str, Any], dataset: EvalDataset, seed: int, settings: MetricsConfig) -> dict:
    """What must not change between attempts of a resumable run."""
    return {"guide": name, "config": {k: v for k, v in config.items() if k != "progress"},
            "dataset": {"format": dataset.format, "path": dataset.root}, "seed": seed,
            "metrics": settings.model_dump(mode="json")}


class _Plan:
    """Which dataset fields one guide gets."""

    def __init__(self, guide: Any):
        needs, accepts = _declared(guide)
        self.needs = needs
        self.wants = needs | accepts
        self.use_mask = "mask" in self.wants
        self.input_names = sorted(n for n in self.wants if n != "mask")

    def missing(self, sample: EvalSample) -> list[str]:
        miss = [n for n in sorted(self.needs) if n != "mask" and n not in sample.inputs]
        if "mask" in self.needs and sample.mask is None:
            miss.insert(0, "mask")
        return miss

    def inputs(self, sample: EvalSample) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.input_names:
            if name in sample.inputs:
                value = sample.inputs[name]
                if getattr(value, "ndim", 0) == 3:
                    value = Image.fromarray(value)
                elif isinstance(value, Path) and value.suffix.lower() in IMAGE_SUFFIXES:
                    value = Image.fromarray(read_rgb(value))
                out[name] = value
        return out


def _batches(indexed: Sequence[tuple[int, EvalSample]], plan: _Plan, batch_size: int):
    """Runs of consecutive samples without extra inputs (up to batch_size); others alone. A batch never
    spans a gap in the indices (seeds) nor holds a sample together with the turn it continues from."""
    pending: list[tuple[int, EvalSample]] = []
    for item in indexed:
        index, sample = item
        if pending and (index != pending[-1][0] + 1 or sample.chain_from in {s.id for _, s in pending}):
            yield pending
            pending = []
        if any(n in sample.inputs for n in plan.input_names):
            if pending:
                yield pending
                pending = []
            yield [item]
            continue
        pending.append(item)
        if len(pending) >= batch_size:
            yield pending
            pending = []
    if pending:
        yield pending


def _as_rgb(image: Any) -> np.ndarray:
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    return M.as_array(image)


def summarize(rows: Sequence[dict[str, Any]], suite: MetricSuite | None = None) -> dict[str, Any]:
    """Aggregate per-sample rows: every metric's summary, breakdowns by edit type and tag, counts."""
    ok = [r for r in rows if "error" not in r]
    summary: dict[str, Any] = {
        "count": len(rows),
        "errors": len(rows) - len(ok),
        "seconds_per_edit": (sum(r.get("seconds", 0.0) for r in ok) / len(ok)) if ok else None,
    }
    types = [r["edit_type"] for r in rows if r.get("edit_type") is not None]
    if types:
        summary["count_by_type"] = {t: types.count(t) for t in sorted(set(types))}
    if suite is not None:
        values, notes = suite.summarize(rows)
        summary.update(values)
        summary["metric_order"] = [m for m in suite.names if values.get(m) is not None]
        summary["metric_counts"] = {m: sum(1 for r in rows if r.get(m) is not None) for m in summary["metric_order"]}
        summary["metrics"] = suite.info()
        summary["metrics_skipped"] = {**suite.skipped, **notes}
        if types:
            summary["by_type"] = suite.breakdown(rows, "edit_type")
        if any(r.get("tags") for r in rows):
            summary["by_tag"] = suite.breakdown(rows, "tags")
    return summary


def run_eval(
    guide: Any,
    dataset: Any,
    out: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    metrics: MetricsConfig | dict[str, Any] | None = None,
    backbones: Backbones | dict[str, Any] | None = None,
    extra_summary: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``guide`` on ``dataset`` and write ``out``; returns the summary (see the module docstring)."""
    if batch_size < 1:
        raise InvalidInputError(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    t_start = time.perf_counter()
    ds = as_eval_dataset(dataset, limit)
    samples = list(ds)
    plan = _Plan(guide)
    name = getattr(guide, "name", type(guide).__name__)
    settings = metrics if isinstance(metrics, MetricsConfig) else MetricsConfig.model_validate(metrics or {})
    runnable = [(i, s) for i, s in enumerate(samples) if not plan.missing(s)]
    skipped = {s.id: plan.missing(s) for s in samples if plan.missing(s)}
    if not runnable:
        needed = sorted({n for v in skipped.values() for n in v})
        hint = " (generate one with --types multimodal)" if ds.format == "editworld" else ""
        raise InvalidInputError(f"guide '{name}' needs {', '.join(needed)}, which no sample of the dataset has{hint}")
    suite = MetricSuite(settings, ds, extra=tuple(getattr(guide, "eval_metrics", ()) or ()), backbones=backbones)
    config = config_dict(guide)
    print_ = fingerprint(name, config, ds, seed, settings)
    out = R.prepare_out(out, print_, overwrite=overwrite, resume=resume)
    done = R.read_finished(out, [s.id for s in samples])
    previous: dict[str, Any] = {}
    if done and (out / R.RUN_FILE).is_file():
        previous = json.loads((out / R.RUN_FILE).read_text())
    attempts = list(previous.get("attempts", [])) + [{"started": now(), "resumed_samples": len(done)}]
    run_record = {
        "editkit_run": 1, "status": "running", "fingerprint": print_, "guide": name, "config": config,
        "guide_class": f"{type(guide).__module__}:{type(guide).__qualname__}", "dataset": ds.describe(),
        "dataset_notes": ds.notes, "limit": limit, "seed": seed, "batch_size": batch_size,
        "metrics": settings.model_dump(mode="json"), "versions": versions(), "git": git_info(),
        "device": device_info(config), "attempts": attempts, **(run_info or {}),
    }
    R.write_json(out / R.RUN_FILE, run_record)

    from tqdm import tqdm

    todo = [(i, s) for i, s in runnable if s.id not in done]
    new_rows: dict[str, dict[str, Any]] = {}
    counters = {"resized": 0, "chain_fallbacks": 0, "guide_seconds": 0.0}
    bar = tqdm(total=len(runnable), initial=len(runnable) - len(todo), desc=f"eval {name}", unit="edit",
               disable=not progress)

    def source_of(sample: EvalSample) -> np.ndarray:
        if sample.chain_from is not None:
            prev = R.output_path(out, sample.chain_from)
            if prev.is_file():
                own = sample.load_source()
                return resize_rgb(read_rgb(prev), own.shape[:2])
            counters["chain_fallbacks"] += 1
        return sample.load_source()

    with (out / R.METRICS_FILE).open("a") as fh:
        def record(batch: list[tuple[int, EvalSample]], sources: list[np.ndarray], images: list[Any],
                   seconds: float, texts: list[str | None], extras: list[dict[str, Any]], error: str | None = None):
            outputs = []
            for (_, sample), src, image in zip(batch, sources, images):
                arr = _as_rgb(image)
                if arr.shape[:2] != src.shape[:2]:
                    arr = resize_rgb(arr, src.shape[:2])
                    counters["resized"] += 1
                R.save_output(out, sample.id, arr)
                outputs.append(arr)
            size = [src.shape[:2] for src in sources]
            mb = MetricBatch([s for _, s in batch], outputs, sources,
                             [s.load_target(sz) for (_, s), sz in zip(batch, size)],
                             [s.load_mask(sz) for (_, s), sz in zip(batch, size)], texts, extras)
            for (index, sample), values, text in zip(batch, suite.compute(mb), texts):
                row: dict[str, Any] = {"id": sample.id, "index": index}
                for key in ("edit_type", "family"):
                    if getattr(sample, key) is not None:
                        row[key] = getattr(sample, key)
                row.update({k: v for k, v in sample.meta.items() if isinstance(v, (str, int, float)) and k not in row})
                if sample.tags:
                    row["tags"] = list(sample.tags)
                row["instruction"] = sample.instruction
                row.update(values)
                row["seconds"] = seconds / len(batch)
                row["seed"] = seed + index
                if error is not None:
                    row["error"] = error
                if text is not None:
                    row["text"] = text
                row = R.clean(row)
                new_rows[sample.id] = row
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()

        def run_batch(batch: list[tuple[int, EvalSample]]) -> None:
            sources = [source_of(s) for _, s in batch]
            request = EditRequest(
                images=[Image.fromarray(src) for src in sources],
                instructions=[s.instruction for _, s in batch],
                masks=[Image.fromarray(s.load_mask(src.shape[:2]).astype(np.uint8) * 255, mode="L")
                       for (_, s), src in zip(batch, sources)] if plan.use_mask and all(
                           s.mask is not None for _, s in batch) else None,
                inputs=plan.inputs(batch[0][1]) if len(batch) == 1 else {},
                seed=seed + batch[0][0],
            )
            t0 = time.perf_counter()
            try:
                result = guide.edit(request)
            except REFUSALS as exc:
                if len(batch) > 1:  # find the sample(s) the guide refuses; the others count normally
                    for item in batch:
                        run_batch([item])
                    return
                message = " ".join(str(exc).split()) or type(exc).__name__
                record(batch, sources, [Image.fromarray(sources[0])], 0.0, [None], [{}], error=message)
                bar.update(1)
                return
            seconds = time.perf_counter() - t0
            counters["guide_seconds"] += seconds
            if len(result.images) != len(batch):
                raise GuideError(f"guide '{name}' returned {len(result.images)} images for {len(batch)} requests")
            texts = list(result.text or [])
            texts = [texts[k] if k < len(texts) else None for k in range(len(batch))]
            extras = [{k: (v[j] if isinstance(v, (list, tuple)) and len(v) == len(batch) else v)
                       for k, v in (result.extras or {}).items()} for j in range(len(batch))]
            for j, group in enumerate(result.candidates or []):  # every candidate, for candidate metrics
                if j < len(batch):
                    extras[j]["candidates"] = [c.image for c in group]
            record(batch, sources, list(result.images), seconds, texts, extras)
            bar.update(len(batch))

        for batch in _batches(todo, plan, batch_size):
            run_batch(batch)
    bar.close()

    rows = [new_rows.get(s.id) or done[s.id] for _, s in runnable if s.id in new_rows or s.id in done]
    summary = summarize(rows, suite)
    summary.update({
        "guide": name,
        "config": config,
        "dataset": ds.root,
        "dataset_format": ds.format,
        "dataset_size": len(samples),
        "skipped": len(skipped),
        "seed": seed,
        "batch_size": batch_size,
        "limit": limit,
        "inputs_passed": (["mask"] if plan.use_mask else []) + plan.input_names,
        "outputs_resized": counters["resized"],
        "resumed": len(runnable) - len(todo),
        "seconds_total": time.perf_counter() - t_start,
    })
    if counters["chain_fallbacks"]:
        summary["chain_fallbacks"] = counters["chain_fallbacks"]
    if ds.format == "editworld":
        summary["audio_sample_rate"] = SAMPLE_RATE
        summary["metric_constants"] = M.CONSTANTS
    if ds.notes:
        summary["dataset_notes"] = ds.notes
    summary.update(extra_summary or {})
    if skipped:
        reasons: dict[str, int] = {}
        for v in skipped.values():
            reasons[f"needs {','.join(v)}"] = reasons.get(f"needs {','.join(v)}", 0) + 1
        summary["skipped_reason"] = reasons
    summary = R.clean(summary)
    R.write_summary(out, summary, suite.directions())
    attempts[-1].update({"finished": now(), "samples_run": len(todo)})
    run_record.update({"status": "complete", "attempts": attempts, "sampling": _sampling_record(guide), "timings": {
        "guide_seconds": counters["guide_seconds"], "metric_seconds": dict(suite.seconds),
        "wall_seconds": summary["seconds_total"], **{k: v for k, v in (extra_summary or {}).items() if k.endswith("_seconds")},
    }})
    R.write_json(out / R.RUN_FILE, run_record)
    return summary


def _sampling_record(guide: Any) -> dict[str, Any] | None:
    """Steps and sampler as the guide runs them (unset options resolved from the weights' recommendation);
    None for guides without a diffusion backend."""
    from ..guide import SAMPLING_KEYS

    if getattr(guide, "backend", None) is None:
        return None
    return {k: v for k, v in guide.sampling_options().items() if k in SAMPLING_KEYS}
