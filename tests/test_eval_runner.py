"""`editkit eval` and `run_eval`: oracle and identity guides, batching, declared inputs, text output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from editkit import editworld as ew
from editkit.cli import main
from editkit.editworld.dataset import write_dataset
from editkit.errors import InvalidInputError
from editkit.eval.runner import run_eval
from editkit.guide import Guide
from editkit.testing import DummyGuide, register_guide
from editkit.types import EditRequest, EditResult

SUMMARY_KEYS = {"edit_success", "edit_success_by_type", "psnr", "psnr_background", "seconds_per_edit", "count"}


def _key(image: Image.Image, instruction: str) -> tuple[bytes, str]:
    return np.asarray(image.convert("RGB")).tobytes(), instruction


class OracleGuide(Guide):
    """Returns the ground-truth target of every sample it was given (and its rewrite as text)."""

    name = "oracle"
    table: ClassVar[dict[tuple[bytes, str], tuple[np.ndarray, str]]] = {}
    requests: ClassVar[list[EditRequest]] = []

    def load(self, backends: Any) -> None:
        pass

    def prepare(self, request: EditRequest) -> Any:  # pragma: no cover - edit is overridden
        return None

    def edit(self, request: EditRequest) -> EditResult:
        self.check_inputs(request)
        type(self).requests.append(request)
        found = [self.table[_key(img, ins)] for img, ins in zip(request.images, request.instructions)]
        return EditResult(images=[Image.fromarray(t) for t, _ in found], guide=self.name, config={},
                          seed=request.seed, text=self.texts(request, found))

    def texts(self, request: EditRequest, found: list) -> list[str | None]:
        return [None] * len(found)

    @classmethod
    def learn(cls, samples) -> None:
        cls.table = {(s.source.tobytes(), s.instruction): (s.target, s.rewrite) for s in samples}
        cls.requests = []


class IdentityGuide(OracleGuide):
    name = "identity"

    def edit(self, request: EditRequest) -> EditResult:
        type(self).requests.append(request)
        return EditResult(images=[img.copy() for img in request.images], guide=self.name, config={}, seed=request.seed)


class MaskedOracle(OracleGuide):
    name = "masked-oracle"
    needs = frozenset({"mask"})


class TextOracle(OracleGuide):
    name = "text-oracle"

    def texts(self, request, found):
        return [rewrite if i % 2 == 0 else "something else" for i, (_, rewrite) in enumerate(found)]


class AudioGuide(OracleGuide):
    name = "audio-oracle"
    needs = frozenset({"audio1"})
    accepts = frozenset({"image1"})


@pytest.fixture(scope="module")
def samples() -> list[ew.Sample]:
    return ew.generate("test", 48, seed=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, samples) -> Path:
    return write_dataset(samples, tmp_path_factory.mktemp("ds") / "test")


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_oracle_scores_one_and_identity_zero(samples, dataset, tmp_path):
    OracleGuide.learn(samples)
    summary = run_eval(OracleGuide(), dataset, tmp_path / "oracle", batch_size=8, progress=False)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["edit_success"] == 1.0 and summary["count"] == 48
    assert set(summary["edit_success_by_type"]) == {s.edit_type for s in samples}
    assert all(v == 1.0 for v in summary["edit_success_by_type"].values())
    assert summary["psnr"] == 100.0 and summary["l1"] == 0.0
    assert "expressive_exact_match" not in summary  # the guide returns no text
    written = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert written["edit_success"] == 1.0 and SUMMARY_KEYS <= set(written)
    assert len(list((tmp_path / "oracle" / "outputs").glob("*.png"))) == 48
    assert len(_rows(tmp_path / "oracle")) == 48

    summary = run_eval(IdentityGuide(), dataset, tmp_path / "identity", batch_size=8, progress=False)
    assert summary["edit_success"] == 0.0
    assert all(v == 0.0 for v in summary["edit_success_by_type"].values())
    assert summary["psnr_background"] == 100.0  # nothing outside the masks changed


def test_batching_groups_samples_and_keeps_seeds(samples, dataset, tmp_path):
    IdentityGuide.learn(samples)
    run_eval(IdentityGuide(), dataset, tmp_path / "b", batch_size=8, progress=False, seed=100)
    sizes = [r.batch_size for r in IdentityGuide.requests]
    assert max(sizes) == 8 and sum(sizes) == 48
    # samples with extra inputs are not for this guide, so they are batched like the others
    seeds = [seed for r in IdentityGuide.requests for seed in r.seeds()]
    assert seeds == list(range(100, 148))
    assert all(r.masks is None and r.inputs == {} for r in IdentityGuide.requests)


def test_results_do_not_depend_on_batch_size(dataset, tmp_path):
    a = run_eval(DummyGuide(progress=False), dataset, tmp_path / "one", batch_size=1, progress=False)
    b = run_eval(DummyGuide(progress=False), dataset, tmp_path / "five", batch_size=5, progress=False)
    ra, rb = _rows(tmp_path / "one"), _rows(tmp_path / "five")
    assert [r["psnr"] for r in ra] == [r["psnr"] for r in rb]
    assert a["edit_success"] == b["edit_success"] == 0.0
    for name in ("outputs/" + ra[3]["id"] + ".png",):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "five" / name).read_bytes()


def test_masks_only_for_guides_that_declare_them(samples, dataset, tmp_path):
    MaskedOracle.learn(samples)
    summary = run_eval(MaskedOracle(), dataset, tmp_path / "m", batch_size=4, progress=False)
    assert summary["edit_success"] == 1.0 and summary["inputs_passed"] == ["mask"]
    for request in MaskedOracle.requests:
        assert request.masks is not None and len(request.masks) == request.batch_size
        assert all(m.mode == "L" and m.size == (64, 64) for m in request.masks)
    sample_by_source = {s.source.tobytes(): s for s in samples}
    req = MaskedOracle.requests[0]
    s = sample_by_source[np.asarray(req.images[0]).tobytes()]
    assert np.array_equal(np.asarray(req.masks[0]) > 127, s.mask)


def test_extra_inputs_and_skipped_samples(tmp_path):
    mm = ew.generate("test", 12, seed=8, types="multimodal") + ew.generate("test", 4, seed=8, types="explicit")
    folder = write_dataset(mm, tmp_path / "mm")
    AudioGuide.learn(mm)
    summary = run_eval(AudioGuide(), folder, tmp_path / "out", batch_size=8, progress=False)
    with_audio = [s for s in mm if "audio1" in s.inputs]
    assert summary["count"] == len(with_audio) and summary["skipped"] == len(mm) - len(with_audio)
    assert summary["edit_success"] == 1.0 and summary["inputs_passed"] == ["audio1", "image1"]
    for request in AudioGuide.requests:
        assert request.batch_size == 1 and set(request.inputs) == {"audio1"}
        audio = request.inputs["audio1"]
        assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.shape == (16000,)
    only_explicit = write_dataset(mm[-4:], tmp_path / "explicit")
    with pytest.raises(InvalidInputError, match="needs audio1"):
        run_eval(AudioGuide(), only_explicit, tmp_path / "none", progress=False)


def test_image_inputs_are_pil_images(tmp_path):
    mm = ew.generate("test", 10, seed=9, types=["add_image", "replace_image"])

    class ImageGuide(OracleGuide):
        name = "image-oracle"
        needs = frozenset({"image1"})

    ImageGuide.learn(mm)
    summary = run_eval(ImageGuide(), mm, tmp_path / "img", progress=False)
    assert summary["edit_success"] == 1.0
    assert all(isinstance(r.inputs["image1"], Image.Image) for r in ImageGuide.requests)


def test_expressive_exact_match(samples, dataset, tmp_path):
    TextOracle.learn(samples)
    summary = run_eval(TextOracle(), dataset, tmp_path / "t", batch_size=4, progress=False)
    assert summary["expressive_exact_match"] == 0.5 and summary["expressive_count"] == 48
    rows = _rows(tmp_path / "t")
    assert rows[0]["expressive_exact_match"] == 1 and rows[0]["text"] == samples[0].rewrite
    assert rows[1]["expressive_exact_match"] == 0


def test_limit_and_out_folder_rules(samples, dataset, tmp_path):
    OracleGuide.learn(samples)
    summary = run_eval(OracleGuide(), dataset, tmp_path / "l", limit=5, progress=False)
    assert summary["count"] == 5
    with pytest.raises(InvalidInputError, match="not empty"):
        run_eval(OracleGuide(), dataset, tmp_path / "l", progress=False)
    assert run_eval(OracleGuide(), dataset, tmp_path / "l", limit=3, overwrite=True, progress=False)["count"] == 3


# ------------------------------------------------------------------ the CLI
def test_cli_eval_with_registered_guides(samples, dataset, tmp_path, capsys):
    OracleGuide.learn(samples)
    with register_guide("oracle", OracleGuide):
        code = main(["eval", "--guide", "oracle", "--dataset", str(dataset), "--out", str(tmp_path / "o"),
                     "--batch-size", "8", "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["edit_success"] == 1.0 and summary["guide"] == "oracle" and "load_seconds" in summary
    assert "edit_success 1.000" in capsys.readouterr().out

    with register_guide("dummy", DummyGuide):
        code = main(["eval", "--guide", "dummy", "--dataset", str(dataset), "--out", str(tmp_path / "d"),
                     "--set", "shift=0.5", "--set", "channel=red", "--limit", "10", "--seed", "3", "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["count"] == 10 and summary["edit_success"] == 0.0
    assert summary["config"]["shift"] == 0.5 and summary["config"]["channel"] == "red"
    assert summary["config"]["progress"] is False and summary["seed"] == 3


@pytest.mark.parametrize("extra, message", [
    (["--guide", "no-such-guide"], "Unknown guide"),
    (["--guide", "dummy", "--set", "bogus=1"], "unknown option"),
    (["--guide", "dummy", "--limit", "0"], "--limit"),
    (["--guide", "dummy", "--batch-size", "0"], "--batch-size"),
])
def test_cli_eval_errors_are_one_line(dataset, tmp_path, capsys, extra, message):
    with register_guide("dummy", DummyGuide):
        code = main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "e"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_eval_bad_dataset_fails_before_loading(tmp_path, capsys):
    DummyGuide.load_calls = 0
    with register_guide("dummy", DummyGuide):
        code = main(["eval", "--guide", "dummy", "--dataset", str(tmp_path), "--out", str(tmp_path / "e")])
    assert code == 2 and "samples.jsonl is missing" in capsys.readouterr().err
    assert DummyGuide.load_calls == 0 and not (tmp_path / "e").exists()


class PickyGuide(OracleGuide):
    """Refuses every instruction that mentions a circle, like a guide that cannot follow it."""

    name = "picky"

    def edit(self, request: EditRequest) -> EditResult:
        from editkit.errors import GuideError

        if any("circle" in i for i in request.instructions):
            raise GuideError(f"guide 'picky' does not understand {request.instructions[0]!r}")
        return super().edit(request)


def test_refused_samples_count_as_unedited_and_the_run_goes_on(samples, dataset, tmp_path):
    PickyGuide.learn(samples)
    summary = run_eval(PickyGuide(), dataset, tmp_path / "p", batch_size=8, progress=False)
    refused = [s for s in samples if "circle" in s.instruction]
    assert refused and summary["errors"] == len(refused) and summary["count"] == 48
    assert summary["edit_success"] == pytest.approx(1 - len(refused) / 48)
    rows = {r["id"]: r for r in _rows(tmp_path / "p")}
    for s in refused:
        assert rows[s.id]["edit_success"] == 0 and "does not understand" in rows[s.id]["error"]
        saved = np.asarray(Image.open(tmp_path / "p" / "outputs" / f"{s.id}.png"))
        assert np.array_equal(saved, s.source)


class CandidateOracle(OracleGuide):
    """Four candidates per sample: the target once and the source three times; ``first`` says whether its
    best-first order puts the target first (a perfect ranking) or last (the worst one)."""

    name = "candidate-oracle"
    first: ClassVar[bool] = True

    def edit(self, request: EditRequest) -> EditResult:
        from editkit.types import Candidate

        found = [self.table[_key(img, ins)] for img, ins in zip(request.images, request.instructions)]
        groups = []
        for image, (target, _) in zip(request.images, found):
            group = [Candidate(Image.fromarray(target), 1.0)] + [Candidate(image.copy(), 0.0) for _ in range(3)]
            groups.append(group if self.first else group[::-1])
        return EditResult(images=[g[0].image for g in groups], guide=self.name, config={}, seed=request.seed,
                          candidates=groups)


@pytest.mark.parametrize("first", [True, False])
def test_candidate_success_measures_the_ranking_against_a_random_pick(samples, dataset, tmp_path, first):
    CandidateOracle.learn(samples)
    CandidateOracle.first = first
    summary = run_eval(CandidateOracle(), dataset, tmp_path / "cand", limit=12, batch_size=4, progress=False)
    assert summary["edit_success_random_candidate"] == pytest.approx(0.25)  # 1 of 4 candidates is right
    assert summary["edit_success_any_candidate"] == 1.0
    assert summary["edit_success"] == (1.0 if first else 0.0)
    assert summary["candidate_ranking_gain"] == pytest.approx(0.75 if first else -0.25)
    rows = _rows(tmp_path / "cand")
    assert all(r["candidates_scored"] == 4 for r in rows)


def test_guides_without_candidates_get_no_candidate_metrics(samples, dataset, tmp_path):
    OracleGuide.learn(samples)
    summary = run_eval(OracleGuide(), dataset, tmp_path / "plain", limit=4, progress=False)
    assert "edit_success_random_candidate" not in summary and "candidate_ranking_gain" not in summary
