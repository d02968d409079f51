"""EditWorld dataset folders: `editkit data editworld`, write/read round trip, validation."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editkit import editworld as ew
from editkit.cli import main
from editkit.editworld.dataset import load_dataset, write_dataset
from editkit.errors import InvalidInputError


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ew") / "test"
    assert main(["data", "editworld", "--split", "test", "--count", "40", "--seed", "3", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_cli_writes_the_documented_layout(folder):
    lines = (folder / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 40
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["format"] == "editworld" and meta["split"] == "test" and meta["count"] == 40 and meta["size"] == 64
    rec = json.loads(lines[0])
    for key in ("id", "instruction", "rewrite", "edit_type", "family", "action", "captions", "scene",
                "target_scene", "edit", "files"):
        assert key in rec
    assert set(rec["captions"]) == {"source", "target"}
    for rel in (rec["files"]["source"], rec["files"]["target"], rec["files"]["mask"]):
        assert (folder / rel).is_file()
    assert len(list((folder / "source").glob("*.png"))) == 40
    wavs = list((folder / "inputs").glob("*.wav"))
    assert wavs
    with wave.open(str(wavs[0])) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
    with Image.open(folder / rec["files"]["mask"]) as m:
        assert m.mode == "L" and set(np.unique(np.asarray(m))) <= {0, 255}


def test_round_trip_equals_the_in_memory_samples(folder):
    loaded = load_dataset(folder)
    fresh = ew.generate("test", 40, seed=3)
    assert len(loaded) == 40 and loaded.meta["seed"] == 3
    for a, b in zip(loaded, fresh):
        assert a.id == b.id and a.instruction == b.instruction and a.rewrite == b.rewrite
        assert a.edit_type == b.edit_type and a.family == b.family and a.edit == b.edit
        assert a.scene == b.scene and a.target_scene == b.target_scene
        assert a.captions == b.captions
        assert np.array_equal(a.source, b.source) and np.array_equal(a.target, b.target)
        assert np.array_equal(a.mask, b.mask)
        assert a.inputs.keys() == b.inputs.keys()
        for k in a.inputs:
            if k.startswith("audio"):
                assert a.inputs[k].dtype == np.float32 and np.abs(a.inputs[k] - b.inputs[k]).max() < 1e-4
            else:
                assert np.array_equal(a.inputs[k], b.inputs[k])
    assert len(load_dataset(folder, limit=5)) == 5


def test_types_and_size_options(tmp_path, capsys):
    out = tmp_path / "mm"
    code, _ = _cli(capsys, "data", "editworld", "--split", "val", "--count", "6", "--types", "multimodal",
                   "--size", "48", "--out", str(out), "--no-progress")
    assert code == 0
    ds = load_dataset(out)
    assert {s.family for s in ds} == {"multimodal"} and ds[0].source.shape == (48, 48, 3)
    out2 = tmp_path / "two"
    assert _cli(capsys, "data", "editworld", "--split", "train", "--count", "5", "--types", "recolour,move",
                "--out", str(out2), "--no-progress")[0] == 0
    assert {s.edit_type for s in load_dataset(out2)} <= {"recolour", "move"}


def test_refuses_non_empty_folder_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _cli(capsys, "data", "editworld", "--split", "test", "--count", "3", "--out", str(out))
    assert code == 2 and "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert _cli(capsys, "data", "editworld", "--split", "test", "--count", "4", "--out", str(out),
                "--overwrite", "--no-progress")[0] == 0
    assert _cli(capsys, "data", "editworld", "--split", "test", "--count", "2", "--seed", "1", "--out", str(out),
                "--overwrite", "--no-progress")[0] == 0
    assert (out / "keep.txt").read_text() == "mine"  # foreign files are never deleted
    assert len(load_dataset(out)) == 2
    assert len(list((out / "source").glob("*.png"))) == 2  # the older dataset's files are gone


@pytest.mark.parametrize("argv, message", [
    (["--split", "dev"], "invalid choice"),
    (["--count", "0"], "--count"),
    (["--types", "rotate"], "unknown EditWorld edit type"),
    (["--size", "4"], "--size"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    base = {"--split": "test", "--count": "2", "--out": str(tmp_path / "x")}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v
    args = ["data", "editworld"] + [x for kv in base.items() for x in kv] + ["--no-progress"]
    code, err = _cli(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_missing_parent_folder(tmp_path, capsys):
    code, err = _cli(capsys, "data", "editworld", "--split", "test", "--count", "2",
                     "--out", str(tmp_path / "no" / "such"))
    assert code == 2 and "does not exist" in err


# ------------------------------------------------------------------ reader validation
@pytest.fixture()
def small(tmp_path) -> Path:
    return write_dataset(ew.generate("test", 6, seed=1, types="multimodal"), tmp_path / "s")


def _rewrite_line(folder: Path, index: int, change) -> None:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    rec = json.loads(lines[index])
    lines[index] = change(rec) if callable(change) else change
    if isinstance(lines[index], dict):
        lines[index] = json.dumps(lines[index])
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")


def test_reader_errors_name_the_problem(small, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="samples.jsonl is missing"):
        load_dataset(tmp_path / "empty")

    rec0 = json.loads((small / "samples.jsonl").read_text().splitlines()[0])
    (small / rec0["files"]["target"]).unlink()
    with pytest.raises(InvalidInputError, match=r"samples.jsonl:1: file .* is missing"):
        load_dataset(small)


@pytest.mark.parametrize("change, message", [
    ("{not json", "invalid JSON"),
    (lambda r: {k: v for k, v in r.items() if k != "rewrite"}, "missing field"),
    (lambda r: {**r, "edit_type": "rotate"}, "unknown edit_type"),
    (lambda r: {**r, "scene": {**r["scene"], "objects": [{"kind": "hexagon", "colour": "red", "size": "small",
                                                          "position": "top"}]}}, "invalid scene"),
    (lambda r: {**r, "files": {**r["files"], "source": "../../etc/passwd"}}, "must be relative"),
    (lambda r: {**r, "id": "dup"}, None),
])
def test_reader_rejects_bad_records(small, change, message):
    if message is None:  # duplicate ids
        _rewrite_line(small, 0, change)
        _rewrite_line(small, 1, change)
        message = "duplicate sample id"
    else:
        _rewrite_line(small, 2, change)
    with pytest.raises(InvalidInputError, match=message):
        load_dataset(small)


def test_reader_rejects_bad_files(small):
    rec = json.loads((small / "samples.jsonl").read_text().splitlines()[0])
    mask_path = small / rec["files"]["mask"]
    Image.fromarray(np.full((64, 64), 7, np.uint8), mode="L").save(mask_path)
    with pytest.raises(InvalidInputError, match="not binary"):
        load_dataset(small)
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(mask_path)
    with pytest.raises(InvalidInputError, match="expected 64x64"):
        load_dataset(small)
    mask_path.write_bytes(b"not a png")
    with pytest.raises(InvalidInputError, match="cannot read mask"):
        load_dataset(small)


def test_reader_rejects_bad_audio(tmp_path):
    folder = write_dataset(ew.generate("test", 3, seed=2, types="add_audio"), tmp_path / "a")
    rec = json.loads((folder / "samples.jsonl").read_text().splitlines()[0])
    wav = folder / rec["files"]["inputs"]["audio1"]
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    with pytest.raises(InvalidInputError, match="sample rate 8000"):
        load_dataset(folder)
    wav.write_bytes(b"RIFF????")
    with pytest.raises(InvalidInputError, match="cannot read audio"):
        load_dataset(folder)
