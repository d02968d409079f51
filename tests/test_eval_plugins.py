"""Guide- and dataset-specific metrics without touching the runner: registered classes, a guide's own
``eval_metrics``, and metrics on ``EditResult.extras``."""
from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest

from editkit import editworld as ew
from editkit.eval.metrics import Metric, MetricBatch, register_metric, unregister_metric
from editkit.eval.runner import run_eval
from editkit.guide import Guide
from editkit.types import EditRequest, EditResult


class OutsideLeak(Metric):
    name = "test_outside_leak"
    needs = frozenset({"mask"})
    higher_is_better = False
    description = "largest |output - source| outside the edit mask, 0-255 levels"

    def compute(self, batch: MetricBatch, indices: list[int]) -> list[Any]:
        return [float(np.abs(batch.outputs[i].astype(int) - batch.sources[i])[~batch.masks[i]].max(initial=0))
                for i in indices]


class RetrievalAccuracy(Metric):
    name = "test_retrieval_accuracy"
    needs = frozenset({"extra:retrieved", "edit_type"})
    higher_is_better = True
    description = "1 if the guide retrieved the sample's edit type"

    def compute(self, batch, indices):
        return [int(batch.extras[i]["retrieved"] == batch.samples[i].edit_type) for i in indices]


class Retriever(Guide):
    """Returns the source, plus a per-sample 'retrieved' extra that is right for even seeds."""

    name = "retriever"
    eval_metrics: ClassVar[tuple] = (RetrievalAccuracy,)
    extras_on: ClassVar[bool] = True

    def load(self, backends: Any) -> None:
        pass

    def prepare(self, request: EditRequest) -> Any:  # pragma: no cover
        return None

    def edit(self, request: EditRequest) -> EditResult:
        table = self.table
        retrieved = [table[np.asarray(img).tobytes()] if seed % 2 == 0 else "nothing"
                     for img, seed in zip(request.images, request.seeds())]
        extras = {"retrieved": retrieved} if self.extras_on else {}
        return EditResult(images=[img.copy() for img in request.images], guide=self.name, config={},
                          seed=request.seed, extras=extras)


@pytest.fixture(scope="module")
def samples():
    return ew.generate("test", 10, seed=6, types="explicit")


def test_registered_and_guide_metrics(samples, tmp_path):
    Retriever.table = {s.source.tobytes(): s.edit_type for s in samples}
    register_metric(OutsideLeak)
    try:
        summary = run_eval(Retriever(), samples, tmp_path / "a", batch_size=4, progress=False)
    finally:
        unregister_metric(OutsideLeak.name)
    assert summary["test_outside_leak"] == 0.0  # the source itself: nothing leaks
    assert summary["outside_mask_max_abs_diff"] == 0  # the built-in exact check agrees
    assert summary["test_retrieval_accuracy"] == 0.5
    assert summary["metrics"]["test_retrieval_accuracy"]["higher_is_better"] is True
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_retrieval_accuracy"] for r in rows] == [1, 0] * 5
    csv_text = (tmp_path / "a" / "summary.csv").read_text(encoding="utf-8")
    assert "test_retrieval_accuracy,0.5,↑,10" in csv_text and "test_outside_leak,0.0,↓" in csv_text

    # a guide's own metric is not selected for other runs, and a missing extra is noted
    Retriever.extras_on = False
    try:
        summary = run_eval(Retriever(), samples, tmp_path / "b", progress=False)
    finally:
        Retriever.extras_on = True
    assert "test_retrieval_accuracy" not in summary
    assert summary["metrics_skipped"]["test_retrieval_accuracy"] == "the guide returned no retrieved"
    assert "test_outside_leak" not in summary["metrics_skipped"]


def test_register_metric_rejects_a_clash():
    class Other(Metric):
        name = "psnr"

    with pytest.raises(ValueError, match="already registered"):
        register_metric(Other)
    with pytest.raises(TypeError):
        register_metric(int)  # type: ignore[arg-type]


def test_base_retrieval_accuracy_reads_the_guides_base_index(samples, tmp_path):
    from editkit.eval.metrics import metric_class
    from editkit.eval.metrics.base import MetricsConfig

    metric = metric_class("base_retrieval_accuracy")(MetricsConfig())
    outputs = [s.source for s in samples[:3]]
    batch = MetricBatch(samples[:3], outputs, outputs, [None] * 3, [None] * 3, extras=[{"base_index": 0},
                        {"base_index": 1}, {"base_index": 0}])
    assert metric.compute(batch, [0, 1, 2]) == [1, 0, 1]  # EditWorld edits the source: base 0
