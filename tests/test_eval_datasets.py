"""Dataset adapters on small synthetic folders: MagicBrush (single/multi-turn), PIE-Bench, JSONL, EditWorld."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from editkit import editworld as ew
from editkit.editworld.dataset import write_dataset
from editkit.errors import InvalidInputError
from editkit.eval.datasets import detect_format, load, parse_spec
from editkit.eval.datasets.piebench import decode_rle, encode_rle
from editkit.eval.runner import run_eval
from editkit.guide import Guide
from editkit.types import EditRequest, EditResult


def save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def colour(value: int, size: int = 24) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


class Brighten(Guide):
    """Adds 20 to every channel and remembers the sources it was given."""

    name = "brighten"
    seen: list[np.ndarray] = []

    def load(self, backends: Any) -> None:
        pass

    def prepare(self, request: EditRequest) -> Any:  # pragma: no cover
        return None

    def edit(self, request: EditRequest) -> EditResult:
        outs = []
        for img in request.images:
            arr = np.asarray(img)
            type(self).seen.append(arr.copy())
            outs.append(Image.fromarray(np.clip(arr.astype(int) + 20, 0, 255).astype(np.uint8)))
        return EditResult(images=outs, guide=self.name, config={}, seed=request.seed)


# ------------------------------------------------------------------------------------ MagicBrush
@pytest.fixture
def magicbrush(tmp_path) -> Path:
    test = tmp_path / "MagicBrush" / "test"
    sessions = {
        "101": [{"input": "101-input.png", "mask": "101-mask1.png", "output": "101-output1.png", "instruction": "add a hat"},
                {"input": "101-output1.png", "mask": "101-mask2.png", "output": "101-output2.png",
                 "instruction": "make the hat red"}],
        "202": [{"instruction": "remove the dog"}],  # file names left to the defaults
    }
    (test).mkdir(parents=True)
    (test / "edit_sessions.json").write_text(json.dumps(sessions))
    for name, value in (("101-input", 10), ("101-output1", 60), ("101-output2", 110), ("202-input", 30),
                        ("202-output1", 90)):
        save(test / "images" / name.split("-")[0] / f"{name}.png", colour(value))
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[4:10, 4:10, 3] = 0  # DALL-E 2 convention: transparent = edit region
    save(test / "images" / "101" / "101-mask1.png", rgba)
    grey = np.zeros((24, 24), np.uint8)
    grey[12:, :] = 255  # white = edit region
    save(test / "images" / "101" / "101-mask2.png", grey)
    (test / "local_captions.json").write_text(json.dumps({
        "101": {"101-output1.png": "a cat with a hat", "101-output2.png": "a cat with a red hat"},
        "202": {"202-output1.png": "an empty lawn"}}))
    (test / "global_descriptions.json").write_text(json.dumps({"101": {"101-input.png": "a cat"}}))
    return tmp_path / "MagicBrush"


def test_magicbrush_single_turn(magicbrush):
    assert detect_format(magicbrush) == "magicbrush"
    ds = load(magicbrush)
    assert ds.format == "magicbrush" and [s.id for s in ds] == ["101-1", "101-2", "202-1"]
    first, second, other = ds
    assert first.load_source()[0, 0, 0] == 10 and first.load_target()[0, 0, 0] == 60
    assert second.load_source()[0, 0, 0] == 60 and second.chain_from is None  # ground-truth previous image
    assert first.source_caption == "a cat" and first.target_caption == "a cat with a hat"
    assert second.source_caption == "a cat with a hat" and second.target_caption == "a cat with a red hat"
    m1 = first.load_mask()
    assert m1.dtype == bool and m1[5, 5] and not m1[15, 15] and m1.sum() == 36
    assert second.load_mask()[20, 0] and not second.load_mask()[0, 0]
    assert other.mask is None and other.target_caption == "an empty lawn"  # default file names
    assert first.tags == ("turn1",) and second.tags == ("turn2", "final_turn") and other.tags == ("turn1", "final_turn")
    assert load(magicbrush, limit=1).samples[0].id == "101-1" and len(load(magicbrush, limit=1)) == 1


def test_magicbrush_multi_turn_edits_its_own_output(magicbrush, tmp_path):
    ds = load(f"magicbrush-multi:{magicbrush / 'test'}")
    assert ds.format == "magicbrush-multi" and ds[1].chain_from == "101-1"
    Brighten.seen = []
    summary = run_eval(Brighten(), ds, tmp_path / "multi", batch_size=8, progress=False)
    assert [int(s[0, 0, 0]) for s in Brighten.seen] == [10, 30, 30]  # turn 2 got turn 1's output (10 + 20)
    assert summary["count"] == 3 and summary["by_tag"]["final_turn"]["count"] == 2
    assert summary["by_tag"]["turn2"]["l1"] == pytest.approx((110 - 50) / 255, abs=1e-6)
    assert "clip_t" in summary["metrics_skipped"]  # no CLIP weights offline: skipped with a note

    Brighten.seen = []
    single = run_eval(Brighten(), load(magicbrush), tmp_path / "single", batch_size=8, progress=False)
    assert [int(s[0, 0, 0]) for s in Brighten.seen] == [10, 60, 30]
    assert single["l1"] == pytest.approx(np.mean([30, 30, 40]) / 255, abs=1e-6)


def test_magicbrush_errors(magicbrush):
    (magicbrush / "test" / "images" / "101" / "101-output2.png").unlink()
    with pytest.raises(InvalidInputError, match=r"session '101' turn 2: images/101/101-output2.png is missing"):
        load(magicbrush)
    (magicbrush / "test" / "edit_sessions.json").write_text(json.dumps({"101": [{"input": "x.png"}]}))
    with pytest.raises(InvalidInputError, match="turn 1 has no instruction"):
        load(f"magicbrush:{magicbrush}")


# ------------------------------------------------------------------------------------ PIE-Bench
def test_rle_round_trip_and_hand_example():
    assert decode_rle([1, 2, 6, 1], (3, 3)).tolist() == [[False, True, True], [False, False, False],
                                                         [True, False, False]]
    mask = np.random.default_rng(0).random((17, 13)) > 0.6
    assert np.array_equal(decode_rle(encode_rle(mask), mask.shape), mask)
    assert decode_rle([7, 100], (3, 3)).sum() == 2  # runs are clipped at the end


@pytest.fixture
def piebench(tmp_path) -> Path:
    root = tmp_path / "PIE-Bench"
    mask = np.zeros((24, 24), bool)
    mask[8:16, 8:16] = True
    entries = {}
    for key, value, type_id in (("000000000000", 40, "0"), ("111000000000", 80, "6")):
        rel = f"{type_id}_dir/{key}.png"
        save(root / "annotation_images" / rel, colour(value))
        entries[key] = {"image_path": rel, "original_prompt": "a [grey] cat", "editing_prompt": "a [white] cat",
                        "editing_instruction": "make the cat white", "editing_type_id": type_id,
                        "blended_word": "cat cat", "mask": encode_rle(mask)}
    (root / "mapping_file.json").write_text(json.dumps(entries))
    return root


def test_piebench_mapping_file(piebench, tmp_path):
    assert detect_format(piebench) == "piebench" and detect_format(piebench / "mapping_file.json") == "piebench"
    ds = load(piebench)
    a, b = ds
    assert a.id == "000000000000" and a.edit_type == "random" and b.edit_type == "change_color"
    assert a.source_caption == "a grey cat" and a.target_caption == "a white cat"
    assert a.instruction == "make the cat white" and a.target is None
    m = a.load_mask()
    assert m.shape == (24, 24) and m.sum() == 64 and not m[0, 0]  # no forced border in editkit's convention
    summary = run_eval(Brighten(), ds, tmp_path / "pie", progress=False)
    assert summary["metrics_skipped"]["l1"] == "the dataset has no target"
    assert summary["piebench_mse_unedited"] == pytest.approx((20 / 255) ** 2 * (22 * 22 - 64) / 576, rel=1e-6)
    assert summary["psnr_background"] == pytest.approx(10 * np.log10(1 / (20 / 255) ** 2), rel=1e-6)
    assert "PIE-Bench has no target images: target metrics are skipped" in summary["dataset_notes"]


def test_piebench_errors(piebench):
    data = json.loads((piebench / "mapping_file.json").read_text())
    data["000000000000"]["mask"] = "oops"
    (piebench / "mapping_file.json").write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="'mask' must be a list of integers"):
        load(piebench)


# ------------------------------------------------------------------------------------ JSONL
@pytest.fixture
def generic(tmp_path) -> Path:
    root = tmp_path / "mine"
    save(root / "img" / "a.png", colour(100))
    save(root / "img" / "a_target.png", colour(120))
    save(root / "masks" / "a.png", np.full((24, 24), 255, np.uint8))
    save(root / "img" / "b.png", colour(200))
    records = [
        {"id": "a", "source": "img/a.png", "instruction": "brighten", "target": "img/a_target.png",
         "mask": "masks/a.png", "target_caption": "a bright square", "edit_type": "tone", "tags": ["easy"]},
        {"source": str(root / "img" / "b.png"), "instruction": "darken", "meta": {"note": "no target"}},
    ]
    (root / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_jsonl_folder(generic, tmp_path):
    assert detect_format(generic) == "jsonl" and detect_format(generic / "samples.jsonl") == "jsonl"
    ds = load(generic)
    a, b = ds
    assert a.id == "a" and b.id == "000002" and a.load_target()[0, 0, 0] == 120 and a.load_mask().all()
    assert b.target is None and b.meta == {"note": "no target"} and a.tags == ("easy",)
    summary = run_eval(Brighten(), ds, tmp_path / "j", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "j" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["l1"] == 0.0 and "l1" not in rows[1]  # no target, no field
    assert rows[1]["l1_source"] == pytest.approx(20 / 255)
    assert summary["l1"] == 0.0 and summary["metric_counts"]["l1"] == 1
    assert summary["by_type"]["tone"]["count"] == 1 and summary["by_tag"]["easy"]["l1"] == 0.0


@pytest.mark.parametrize("line, message", [
    ('{"source": "img/a.png", "instruction": "x", "colour": 1}', "'colour': unknown key"),
    ('{"source": "img/none.png", "instruction": "x"}', "source file .* is missing"),
    ('{"source": "img/a.png"}', "'instruction': Field required"),
    ('{"source": "img/a.png", "instruction": "   "}', "the instruction is empty"),
    ('not json', "invalid JSON"),
    ('{"source": "img/a.png", "instruction": "x", "chain_from": "later"}', "not an earlier sample"),
])
def test_jsonl_errors_name_the_line(generic, line, message):
    (generic / "samples.jsonl").write_text(line + "\n")
    with pytest.raises(InvalidInputError, match=message) as info:
        load(generic)
    assert "samples.jsonl" in str(info.value) or "chain_from" in line


# ------------------------------------------------------------------------------------ specs
def test_specs_and_detection(tmp_path):
    folder = write_dataset(ew.generate("test", 3, seed=1), tmp_path / "ew")
    assert detect_format(folder) == "editworld" and load(f"editworld:{folder}").format == "editworld"
    assert parse_spec("jsonl:/x/y") == ("jsonl", Path("/x/y"))
    assert parse_spec(str(folder)) == (None, folder)
    with pytest.raises(InvalidInputError, match="unknown format 'nosuch'"):
        load("nosuch:somewhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="samples.jsonl is missing"):
        load(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load(tmp_path / "absent")
    gen = load("editworld-gen:count=4,seed=2,types=recolour+remove")
    assert len(gen) == 4 and {s.edit_type for s in gen} <= {"recolour", "remove"}
    assert [s.id for s in gen] == [s.id for s in ew.generate("test", 4, seed=2, types=["recolour", "remove"])]
    with pytest.raises(InvalidInputError, match="editworld-gen: expected KEY=VALUE"):
        load("editworld-gen:colour=red")
