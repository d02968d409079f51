"""Bad input through the CLI: one line on stderr, exit code 2, no traceback, nothing written,
the input never overwritten. Unusual but valid images (grayscale, RGBA, palette, 16-bit) are
converted, not rejected."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from pydantic import Field

from editkit import cli, registry
from editkit.errors import InvalidInputError, UnsafeCheckpointError
from editkit.testing import DummyConfig, DummyGuide, DummyMaskGuide, contract_image, register_guide

PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


# ----------------------------------------------------------------------- a guide with weights
class CheckpointConfig(DummyConfig):
    checkpoint: str = Field("", description="Path of a state dict (.safetensors or a weights-only .pt).")


class CheckpointGuide(DummyGuide):
    """A DummyGuide whose ``load`` reads a checkpoint with editkit.weights.load_state_dict."""

    name = "dummy-ckpt"
    Config = CheckpointConfig

    def load(self, backends) -> None:
        from editkit.weights import load_state_dict

        self.state = load_state_dict(self.config.checkpoint)


class Payload:
    """A custom class: pickling it makes a checkpoint that is not weights-only."""

    def __init__(self) -> None:
        self.value = 1


def _touch(path: str) -> None:  # what a malicious pickle would run
    Path(path).write_text("pwned")


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def guides():
    with register_guide("dummy", DummyGuide), register_guide("dummy-mask", DummyMaskGuide), \
            register_guide("dummy-ckpt", CheckpointGuide):
        yield


@pytest.fixture
def work(tmp_path) -> Path:
    contract_image((37, 29)).save(tmp_path / "in.png")
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expect_error(capsys, folder: Path, argv: list, message: str) -> str:
    before = snapshot(folder)
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, f"exit code {rc}, stderr: {err}"
    assert err.startswith("editkit: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert message in err, f"{message!r} not in {err!r}"
    assert snapshot(folder) == before, "files were written or changed"
    return err.strip()


def write_truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES: dict[str, tuple[Callable[[Path], list], str]] = {
    "missing file": (lambda d: ["edit", d / "nope.png", "x", "--guide", "dummy", "-o", d / "o.png"],
                     "nope.png': no such file"),
    "non-image file": (lambda d: ((d / "notes.png").write_text("just text"),
                                  ["edit", d / "notes.png", "x", "--guide", "dummy", "-o", d / "o.png"])[1],
                       "not an image file"),
    "truncated PNG": (lambda d: (write_truncated_png(d / "cut.png"),
                                 ["edit", d / "cut.png", "x", "--guide", "dummy", "-o", d / "o.png"])[1],
                      "cut.png': truncated or corrupt image"),
    "mask of another size": (lambda d: (Image.new("L", (10, 10), 255).save(d / "m.png"),
                                        ["edit", d / "in.png", "x", "--guide", "dummy-mask", "--mask", d / "m.png",
                                         "-o", d / "o.png"])[1],
                             "is 10x10 but the image is 37x29"),
    "mask box outside the image": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy-mask", "--mask", "0,0,40,10",
                                              "-o", d / "o.png"], "mask box '0,0,40,10' must satisfy"),
    "empty mask": (lambda d: (Image.new("L", (37, 29), 0).save(d / "m.png"),
                              ["edit", d / "in.png", "x", "--guide", "dummy-mask", "--mask", d / "m.png",
                               "-o", d / "o.png"])[1],
                   "the mask is empty"),
    "no mask for a guide that needs one": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy-mask",
                                                      "-o", d / "o.png"], "needs a mask"),
    "empty instruction": (lambda d: ["edit", d / "in.png", "", "--guide", "dummy", "-o", d / "o.png"],
                          "the instruction is empty"),
    "whitespace instruction": (lambda d: ["edit", d / "in.png", " \t ", "--guide", "dummy", "-o", d / "o.png"],
                               "the instruction is empty"),
    "unknown guide": (lambda d: ["edit", d / "in.png", "x", "--guide", "dumy", "-o", d / "o.png"],
                      "Unknown guide 'dumy'. Did you mean: dummy"),
    "unknown option": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "shfit=0.1",
                                  "-o", d / "o.png"], "guide 'dummy': option 'shfit': unknown option"),
    "out-of-range option": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "shift=5",
                                       "-o", d / "o.png"], "option 'shift': Input should be less than or equal to 1"),
    "NaN option (JSON NaN)": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "noise=NaN",
                                         "-o", d / "o.png"], "option 'noise': Input should be a finite number"),
    "NaN option (text nan)": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "shift=nan",
                                         "-o", d / "o.png"], "option 'shift': Input should be a finite number"),
    "wrong option type": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "channel=purple",
                                     "-o", d / "o.png"], "option 'channel'"),
    "malformed --set": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--set", "shift",
                                   "-o", d / "o.png"], "--set expects NAME=VALUE"),
    "missing --input file": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--input",
                                        f"audio1={d / 'a.wav'}", "-o", d / "o.png"], "input 'audio1'"),
    "output folder missing": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "-o", d / "no" / "o.png"],
                              "does not exist"),
    "output exists without --overwrite": (lambda d: ((d / "o.png").write_bytes(b"keep me"),
                                                     ["edit", d / "in.png", "x", "--guide", "dummy", "-o", d / "o.png"])[1],
                                          "already exists (use --overwrite"),
    "-o equal to the input": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "-o", d / "in.png"],
                              "is also an input"),
    "-o equal to the input with --overwrite": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy",
                                                          "--overwrite", "-o", d / "in.png"], "is also an input"),
    "unknown output format": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "-o", d / "o.xyz"],
                              "unknown image format '.xyz'"),
    "negative seed": (lambda d: ["edit", d / "in.png", "x", "--guide", "dummy", "--seed", "-3", "-o", d / "o.png"],
                      "--seed must be non-negative"),
    "unknown guide in guides show": (lambda d: ["guides", "show", "dumy"], "Did you mean: dummy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(capsys, work, case):
    build, message = CASES[case]
    argv = build(work)
    expect_error(capsys, work, argv, message)


def test_image_above_pixel_limit(capsys, work, monkeypatch):
    monkeypatch.setenv("EDITKIT_MAX_PIXELS", "1000")  # the 37x29 input has 1073 pixels
    expect_error(capsys, work, ["edit", work / "in.png", "x", "--guide", "dummy", "-o", work / "o.png"],
                 "37x29 = 1073 pixels, above the limit of 1000")


def test_decompression_bomb(capsys, work):
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # 400 M pixels, a few bytes on disk
    (work / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                    + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    expect_error(capsys, work, ["edit", work / "bomb.png", "x", "--guide", "dummy", "-o", work / "o.png"],
                 "bomb.png'")


# ------------------------------------------------------------------------ checkpoints (pickles)
def test_pickle_checkpoint_with_a_custom_class_is_refused(capsys, work):
    torch = pytest.importorskip("torch")
    torch.save({"weight": torch.zeros(2), "extra": Payload()}, work / "model.pt")
    err = expect_error(capsys, work, ["edit", work / "in.png", "x", "--guide", "dummy-ckpt", "--set",
                                      f"checkpoint={work / 'model.pt'}", "-o", work / "o.png"],
                       "is a pickle that needs arbitrary Python objects")
    assert "Payload" in err and "refusing to load it" in err


def test_malicious_pickle_does_not_run(work):
    pytest.importorskip("torch")
    marker = work / "pwned.txt"
    (work / "evil.bin").write_bytes(pickle.dumps({"w": Exploit(str(marker))}))
    from editkit.weights import load_state_dict

    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(work / "evil.bin")
    assert not marker.exists()


def test_safe_checkpoints_load(work):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from editkit.weights import load_state_dict

    save_file({"w": torch.arange(4.0)}, str(work / "m.safetensors"))
    assert torch.equal(load_state_dict(work / "m.safetensors")["w"], torch.arange(4.0))
    torch.save({"state_dict": {"w": torch.ones(3)}}, work / "m.ckpt")
    assert torch.equal(load_state_dict(work / "m.ckpt")["w"], torch.ones(3))
    (work / "junk.safetensors").write_bytes(b"\x00" * 5)
    (work / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInputError, match="not a readable safetensors file"):
        load_state_dict(work / "junk.safetensors")
    with pytest.raises(InvalidInputError, match="not a readable torch file"):
        load_state_dict(work / "junk.pt")
    (work / "m.pkl").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="unknown format '.pkl'"):
        load_state_dict(work / "m.pkl")
    with pytest.raises(InvalidInputError, match="no such file"):
        load_state_dict(work / "none.safetensors")


# ------------------------------------------------------------- valid but unusual images convert
def _save_gray(path: Path) -> np.ndarray:
    Image.fromarray(np.full((29, 37), 90, np.uint8)).save(path)
    return np.full((29, 37, 3), 90, np.uint8)


def _save_rgba(path: Path) -> np.ndarray:
    arr = np.zeros((29, 37, 4), np.uint8)
    arr[..., 2] = 200
    arr[:, :10, 3] = 0  # transparent columns -> white
    arr[:, 10:, 3] = 255
    Image.fromarray(arr).save(path)
    expected = np.zeros((29, 37, 3), np.uint8)
    expected[:, :10] = 255
    expected[:, 10:, 2] = 200
    return expected


def _save_palette(path: Path) -> np.ndarray:
    img = Image.new("P", (37, 29))
    img.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    img.putdata([1 if x < 20 else 0 for _ in range(29) for x in range(37)])
    img.save(path, transparency=0)
    expected = np.full((29, 37, 3), 255, np.uint8)
    expected[:, :20] = (30, 60, 90)
    return expected


def _save_16bit(path: Path) -> np.ndarray:
    Image.fromarray(np.full((29, 37), 257 * 200, np.uint16)).save(path)
    return np.full((29, 37, 3), 200, np.uint8)


@pytest.mark.parametrize("kind, make", [("grayscale", _save_gray), ("RGBA", _save_rgba),
                                        ("palette+transparency", _save_palette), ("16-bit", _save_16bit)])
def test_unusual_images_are_converted_not_rejected(capsys, tmp_path, kind, make):
    expected = make(tmp_path / "in.png")
    rc = cli.main(["edit", str(tmp_path / "in.png"), "x", "--guide", "dummy", "--set", "shift=0", "--set", "noise=0",
                   "-o", str(tmp_path / "o.png")])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), expected)


# --------------------------------------------------------------------- the real process as well
@pytest.mark.parametrize("argv, message", [
    (["edit", "{d}/nope.png", "x", "--guide", "fixture-ok", "-o", "{d}/o.png"], "no such file"),
    (["edit", "{d}/in.png", "x", "--guide", "fixture-okk", "-o", "{d}/o.png"], "Did you mean: fixture-ok"),
    (["edit", "{d}/in.png", "x", "--guide", "broken", "-o", "{d}/o.png"], "failed to import: ImportError"),
    (["edit", "{d}/in.png", "x", "--guide", "fixture-mask", "--mask", "0,0,5,5", "--overwrite", "-o", "{d}/in.png"],
     "is also an input"),
])
def test_bad_input_in_a_real_process(work, argv, message):
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGIN_PATH_ENV}
    env[registry.PLUGIN_PATH_ENV] = str(PLUGINS)
    before = snapshot(work)
    out = subprocess.run([sys.executable, "-m", "editkit.cli", *(a.format(d=work) for a in argv)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("editkit: error: ") and message in out.stderr
    assert snapshot(work) == before


def test_first_line_of_a_library_error():
    from editkit.errors import first_line

    assert first_line(OSError("\n  no file named config.json\nCheckout your internet connection")) == \
        "no file named config.json"
    assert first_line(ValueError("")) == "ValueError"
