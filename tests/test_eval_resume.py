"""Resumable evaluation: a killed run resumes without recomputing finished samples; run.json, summary.csv."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from editkit import editworld as ew
from editkit.cli import main
from editkit.config import GuideConfig
from editkit.editworld.dataset import write_dataset
from editkit.errors import InvalidInputError
from editkit.eval.runner import run_eval
from editkit.guide import Guide
from editkit.testing import register_guide
from editkit.types import EditRequest, EditResult


class CountingConfig(GuideConfig):
    shift: int = 30


class CountingGuide(Guide):
    """Brightens every image by ``shift``; counts the samples it edits; dies after ``die_after`` samples."""

    name = "counting"
    Config = CountingConfig
    edited: ClassVar[list[str]] = []
    die_after: ClassVar[int | None] = None

    def load(self, backends: Any) -> None:
        pass

    def prepare(self, request: EditRequest) -> Any:  # pragma: no cover
        return None

    def edit(self, request: EditRequest) -> EditResult:
        cls = type(self)
        if cls.die_after is not None and len(cls.edited) + request.batch_size > cls.die_after:
            raise RuntimeError("killed")  # not a refusal: stops the run like a crash or a kill
        cls.edited.extend(request.instructions)
        outs = [Image.fromarray(np.clip(np.asarray(i).astype(int) + self.config.shift, 0, 255).astype(np.uint8))
                for i in request.images]
        return EditResult(images=outs, guide=self.name, config=self.config.model_dump(), seed=request.seed)

    @classmethod
    def reset(cls, die_after: int | None = None) -> None:
        cls.edited, cls.die_after = [], die_after


@pytest.fixture(scope="module")
def samples() -> list[ew.Sample]:
    return ew.generate("test", 20, seed=11)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, samples) -> Path:
    return write_dataset(samples, tmp_path_factory.mktemp("ds") / "test")


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_killed_run_resumes_without_recomputing(dataset, tmp_path):
    out = tmp_path / "run"
    CountingGuide.reset(die_after=6)
    with pytest.raises(RuntimeError, match="killed"):
        run_eval(CountingGuide(), dataset, out, batch_size=2, progress=False, resume=True)
    assert len(CountingGuide.edited) == 6
    assert [r["index"] for r in rows(out)] == list(range(6))
    assert len(list((out / "outputs").glob("*.png"))) == 6
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert not (out / "summary.json").exists()

    CountingGuide.reset()
    summary = run_eval(CountingGuide(), dataset, out, batch_size=2, progress=False, resume=True)
    assert len(CountingGuide.edited) == 14  # only the 14 unfinished samples were edited
    assert summary["count"] == 20 and summary["resumed"] == 6
    assert sorted(r["index"] for r in rows(out)) == list(range(20))
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and [a["resumed_samples"] for a in run["attempts"]] == [0, 6]
    assert run["attempts"][1]["samples_run"] == 14

    # the same numbers as an uninterrupted run
    CountingGuide.reset()
    fresh = run_eval(CountingGuide(), dataset, tmp_path / "fresh", batch_size=5, progress=False)
    for key in ("edit_success", "psnr", "psnr_background", "l1", "ssim"):
        assert summary[key] == fresh[key], key

    # nothing left to do: a third attempt edits nothing
    CountingGuide.reset()
    again = run_eval(CountingGuide(), dataset, out, progress=False, resume=True)
    assert CountingGuide.edited == [] and again["count"] == 20


def test_cut_lines_and_missing_outputs_are_redone(dataset, samples, tmp_path):
    out = tmp_path / "run"
    CountingGuide.reset()
    run_eval(CountingGuide(), dataset, out, limit=8, batch_size=4, progress=False)
    (out / "outputs" / f"{samples[2].id}.png").unlink()  # a row whose image was lost
    with (out / "metrics.jsonl").open("a") as fh:
        fh.write('{"id": "' + samples[9].id + '", "ind')  # a line cut short by a kill
    CountingGuide.reset()
    summary = run_eval(CountingGuide(), dataset, out, limit=10, batch_size=4, progress=False, resume=True)
    assert sorted(CountingGuide.edited) == sorted(s.instruction for s in (samples[2], samples[8], samples[9]))
    assert summary["count"] == 10 and sorted(r["index"] for r in rows(out)) == list(range(10))


def test_resume_refuses_a_different_run(dataset, tmp_path):
    out = tmp_path / "run"
    CountingGuide.reset()
    run_eval(CountingGuide(), dataset, out, limit=3, progress=False)
    with pytest.raises(InvalidInputError, match="different config"):
        run_eval(CountingGuide(shift=10), dataset, out, limit=3, progress=False, resume=True)
    with pytest.raises(InvalidInputError, match="different seed"):
        run_eval(CountingGuide(), dataset, out, limit=3, seed=5, progress=False, resume=True)
    with pytest.raises(InvalidInputError, match="not empty"):
        run_eval(CountingGuide(), dataset, out, limit=3, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="holds no editkit run"):
        run_eval(CountingGuide(), dataset, tmp_path / "other", progress=False, resume=True)
    summary = run_eval(CountingGuide(shift=10), dataset, out, limit=3, progress=False, overwrite=True)
    assert summary["config"]["shift"] == 10 and len(rows(out)) == 3


def test_cli_eval_resumes_and_writes_run_json_and_csv(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    CountingGuide.reset()
    with register_guide("counting", CountingGuide):
        assert main(["eval", "--guide", "counting", "--dataset", str(dataset), "--out", str(out), "--limit", "4",
                     "--no-progress", "--set", "shift=40"]) == 0
        assert len(CountingGuide.edited) == 4
        CountingGuide.reset()
        assert main(["eval", "--guide", "counting", "--dataset", f"editworld:{dataset}", "--out", str(out),
                     "--limit", "7", "--no-progress", "--set", "shift=40"]) == 0
        assert len(CountingGuide.edited) == 3
        code = main(["eval", "--guide", "counting", "--dataset", str(dataset), "--out", str(out), "--no-progress"])
        assert code == 2 and "different config" in capsys.readouterr().err
        assert main(["eval", "--guide", "counting", "--dataset", str(dataset), "--out", str(out), "--limit", "2",
                     "--no-progress", "--overwrite", "--metrics", "l1,psnr,edit_success"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 2 and summary["metric_order"] == ["l1", "psnr", "edit_success"]
    assert summary["config"]["shift"] == 30
    run = json.loads((out / "run.json").read_text())
    for key in ("config", "versions", "git", "seed", "device", "timings", "dataset", "metrics", "fingerprint"):
        assert key in run, key
    assert run["versions"]["editkit"] and run["versions"]["python"] and run["device"]["device"] == "cpu"
    assert run["dataset"]["format"] == "editworld" and run["cli"]["limit"] == 2
    assert "guide_seconds" in run["timings"] and "load_seconds" in run["timings"]
    assert run["sampling"] is None  # a guide without a diffusion backend has no steps or sampler to record
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["metric", "value", "better", "count"]
    by_name = {r[0]: r for r in table[1:]}
    assert by_name["psnr"][2] == "↑" and by_name["l1"][2] == "↓" and by_name["count"][1] == "2"
    assert any(name.startswith("edit_success[") for name in by_name)


def test_cli_eval_metric_options_are_checked(dataset, tmp_path, capsys):
    with register_guide("counting", CountingGuide):
        code = main(["eval", "--guide", "counting", "--dataset", str(dataset), "--out", str(tmp_path / "o"),
                     "--metrics", "clip_i", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "clip-checkpoint" in err and len(err.strip().splitlines()) == 1
        code = main(["eval", "--guide", "counting", "--dataset", str(dataset), "--out", str(tmp_path / "o"),
                     "--metrics", "psnrr", "--no-progress"])
        assert code == 2 and "Did you mean: psnr" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
