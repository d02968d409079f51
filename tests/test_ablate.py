"""`editkit ablate`: spec validation, grid expansion, skipped guides, resumable runs, the report."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image
from pydantic import Field

from editkit import registry
from editkit.cli import main
from editkit.config import GuideConfig
from editkit.errors import InvalidInputError
from editkit.eval.ablation import AblationSpec, expand, load_spec, run_ablation
from editkit.guide import Guide
from editkit.testing import DummyGuide, DummyMaskGuide, register_guide
from editkit.types import EditRequest, EditResult

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ablations" / "editworld.yaml"


class FakeIP2PConfig(GuideConfig):
    steps: int = Field(20, ge=1, le=1000, description="steps")
    text_scale: float = Field(7.5, ge=0.0, le=50.0, description="text scale")
    image_scale: float = Field(1.5, ge=0.0, le=50.0, description="image scale")
    scheduler: str = Field("ddim", description="sampler")


class FakeIP2P(Guide):
    """Stands in for ip2p/mgie: brightens the object pixels by an amount that depends on image_scale."""

    name = "ip2p"
    Config = FakeIP2PConfig
    edits: ClassVar[int] = 0

    def load(self, backends: Any) -> None:
        pass

    def prepare(self, request: EditRequest) -> Any:  # pragma: no cover
        return None

    def edit(self, request: EditRequest) -> EditResult:
        FakeIP2P.edits += request.batch_size
        delta = int(40 * (2.0 - self.config.image_scale))
        outs = [Image.fromarray(np.clip(np.asarray(i).astype(int) + delta, 0, 255).astype(np.uint8))
                for i in request.images]
        return EditResult(images=outs, guide=self.name, config=self.config.model_dump(), seed=request.seed)


class FakeMGIE(FakeIP2P):
    name = "mgie"


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SPEC = """
name: trial
description: dummy guides on generated EditWorld
dataset: editworld-gen:count=12,seed=3
limit: 6
batch_size: 4
base: {guide: dummy, options: {noise: 0.0}}
guide_options: {dummy-mask: {channel: red}}
grid:
  - {guide: [dummy, dummy-mask, not-installed]}
  - {guide: dummy, shift: [0.0, 0.1, 0.2]}
report: {samples: 4}
"""


@pytest.fixture
def dummies():
    with register_guide("dummy", DummyGuide), register_guide("dummy-mask", DummyMaskGuide):
        yield


def test_expand_grid_skips_missing_guides_and_duplicates(tmp_path, dummies):
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC))
    variants = expand(spec)
    assert [v.name for v in variants] == ["dummy", "dummy-mask", "not-installed", "dummy shift=0.0",
                                         "dummy shift=0.1", "dummy shift=0.2"]
    status = {v.name: v.status for v in variants}
    assert status["not-installed"] == "skipped" and status["dummy shift=0.2"] == "duplicate"  # 0.2 is the default
    assert variants[2].note == "guide 'not-installed' is not installed"
    assert variants[1].config["channel"] == "red" and variants[1].config["noise"] == 0.0
    assert variants[0].config["progress"] is False
    assert re.fullmatch(r"dummy-shift-0\.1-[0-9a-f]{8}", variants[4].run_id)
    assert variants[3].run_id != variants[4].run_id


def test_invalid_variants_are_rejected_up_front_by_name(tmp_path, dummies):
    spec = AblationSpec.model_validate({
        "name": "bad", "dataset": "editworld-gen:count=2", "base": {"guide": "dummy"},
        "grid": [{"shift": [0.5, 5.0, -3], "noise": 0.1}, {"guide": "dummy", "bogus": 1}]})
    with pytest.raises(InvalidInputError) as info:
        expand(spec)
    message = str(info.value)
    assert message.startswith("3 invalid variant(s): ")
    assert "variant 'dummy shift=5.0 noise=0.1': guide 'dummy': option 'shift'" in message
    assert "variant 'dummy shift=-3 noise=0.1'" in message and "variant 'dummy bogus=1'" in message
    assert "shift=0.5" not in message


def test_spec_validation_errors(tmp_path):
    with pytest.raises(InvalidInputError, match=r"s.yaml: 'limitt': unknown key"):
        load_spec(write_spec(tmp_path / "s.yaml", "name: x\ndataset: d\nbase: {guide: g}\nlimitt: 3\n"))
    with pytest.raises(InvalidInputError, match="invalid YAML"):
        load_spec(write_spec(tmp_path / "s.yaml", "name: [x\n"))
    with pytest.raises(InvalidInputError, match="empty list of values"):
        load_spec(write_spec(tmp_path / "s.yaml", "name: x\ndataset: d\nbase: {guide: g}\ngrid: {shift: []}\n"))
    with pytest.raises(InvalidInputError, match="no such file"):
        load_spec(tmp_path / "none.yaml")
    spec = AblationSpec.model_validate({"name": "x", "dataset": "d", "base": {"guide": "nothing-here"}})
    with pytest.raises(InvalidInputError, match="no variant of ablation 'x' can run"):
        expand(spec)


def test_run_writes_the_report_and_resumes(tmp_path, dummies):
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC))
    out = tmp_path / "abl"
    calls: list[str] = []
    variants = run_ablation(spec, out, progress=False, log=calls.append)
    assert [v.status for v in variants] == ["ok", "ok", "skipped", "ok", "ok", "duplicate"]
    assert calls[0] == "[1/4] dummy"
    for name in ("ablation.json", "comparison.csv", "comparison.md", "report.md", "report.html",
                 "plots/edit_success_by_type.png", "plots/sweep_shift.png"):
        assert (out / name).is_file(), name
    with (out / "comparison.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0][:4] == ["variant", "guide", "count", "edit_success ↑"] and "l1 ↓" in table[0]
    assert [r[0] for r in table[1:]] == ["dummy", "dummy-mask", "dummy shift=0.0", "dummy shift=0.1"]
    md = (out / "report.md").read_text()
    assert "| variant | guide | count | edit_success ↑" in md and "not-installed" in md and "![" in md
    html = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(not s.startswith("/") and (out / s).is_file() for s in sources)
    assert sum("/outputs/" in s for s in sources) == 4 * 4  # 4 samples x 4 variants that ran
    state = json.loads((out / "ablation.json").read_text())
    assert state["spec"]["name"] == "trial" and len(state["variants"]) == 6
    run_dir = out / state["variants"][0]["run_dir"]
    assert json.loads((run_dir / "summary.json").read_text())["count"] == 6

    # resumable: nothing is recomputed, and a failed or new variant does not disturb finished ones
    calls.clear()
    with register_guide("dummy", DummyGuide) as cls:
        original = cls.edit

        def boom(self, request):  # pragma: no cover - must not be called
            raise AssertionError("finished variants must not be recomputed")

        cls.edit = boom
        try:
            run_ablation(spec, out, progress=False, log=calls.append)
        finally:
            cls.edit = original
    assert all(c.endswith("already complete") for c in calls)

    from editkit.eval.report import export

    copied = export(out, tmp_path / "docs" / "trial")
    assert (tmp_path / "docs" / "trial" / "report.md").is_file() and not (tmp_path / "docs" / "trial" / "runs"
                                                                          / state["variants"][0]["run_id"] / "run.json").exists()
    page = (tmp_path / "docs" / "trial" / "report.html").read_text()
    assert all((tmp_path / "docs" / "trial" / s).is_file() for s in re.findall(r'src="([^"]+)"', page))
    assert len(copied) == 5 + len(set(sources))
    # a re-export drops the images of variants the report no longer shows, and keeps files of its own
    docs = tmp_path / "docs" / "trial"
    stale = docs / "runs" / "gone-variant-0000" / "outputs" / "x.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (docs / "NOTES.md").write_text("mine")
    assert sorted(export(out, docs)) == sorted(copied)
    assert not (docs / "runs" / "gone-variant-0000").exists() and (docs / "NOTES.md").read_text() == "mine"
    assert all((docs / s).is_file() for s in re.findall(r'src="([^"]+)"', page))


def test_ablation_refuses_a_foreign_folder(tmp_path, dummies):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    spec = load_spec(write_spec(tmp_path / "s.yaml", SPEC))
    with pytest.raises(InvalidInputError, match="holds no ablation"):
        run_ablation(spec, tmp_path / "mine", progress=False)


def test_cli_ablate_dry_run_and_errors(tmp_path, dummies, capsys):
    spec = write_spec(tmp_path / "s.yaml", SPEC)
    assert main(["ablate", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "not-installed" in out and "duplicate" in out and not (tmp_path / "o").exists()
    bad = write_spec(tmp_path / "bad.yaml", SPEC.replace("[0.0, 0.1, 0.2]", "[0.0, 9.0]"))
    code = main(["ablate", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "variant 'dummy shift=9.0'" in err and len(err.strip().splitlines()) == 1
    wrong = write_spec(tmp_path / "wrong.yaml", SPEC.replace(SPEC.split("dataset:")[1].splitlines()[0],
                                                              " editworld-gen:split=test,count=4,types=recolour,add"))
    assert main(["ablate", str(wrong), "--out", str(tmp_path / "o"), "--dry-run"]) == 2  # the dataset is checked too
    assert "got 'add'" in capsys.readouterr().err
    assert main(["ablate", str(spec), "--out", str(tmp_path / "o"), "--limit", "2", "--no-progress"]) == 0
    assert "trial: 4 variant(s) evaluated, 0 failed, 2 skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "ablation.json").read_text())["limit"] == 2


def test_example_spec_expands_and_runs_tiny(tmp_path, monkeypatch):
    spec = load_spec(EXAMPLE)
    names = {v.name: v for v in expand(spec, available=["ip2p"])}
    assert names["mgie"].status == "skipped" and names["blended"].note == "guide 'blended' is not installed"
    assert names["any2pix"].status == "skipped"
    assert names["ip2p text_scale=1.0 image_scale=1.5"].status == "duplicate"
    assert [v.config["image_scale"] for v in names.values() if v.guide == "ip2p" and v.status == "pending"] == \
        [1.5, 1.0, 1.25, 1.75, 2.0]

    monkeypatch.setattr(registry, "names", lambda: ["ip2p", "mgie"])
    FakeIP2P.edits = 0
    with register_guide("ip2p", FakeIP2P), register_guide("mgie", FakeMGIE):
        variants = run_ablation(spec, tmp_path / "ex", limit=4, progress=False)
    # 5 ip2p image scales + 3 mgie ones (the mgie default equals the sweep's 1.5)
    assert sum(v.status == "ok" for v in variants) == 8 and FakeIP2P.edits == 8 * 4
    assert (tmp_path / "ex" / "plots" / "sweep_image_scale.png").is_file()
    assert (tmp_path / "ex" / "plots" / "edit_success_by_type.png").is_file()
    md = (tmp_path / "ex" / "report.md").read_text()
    assert "guide 'blended' is not installed" in md
