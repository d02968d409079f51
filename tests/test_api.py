"""The one-call API with weight-free guides: inputs, batching, seeds, caching, validation."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import editkit
from editkit import api
from editkit.errors import GuideConfigError, InvalidInputError, MissingInputError, UnknownGuideError
from editkit.testing import DummyGuide, DummyMaskGuide, contract_image, register_guide
from editkit.types import EditResult


@pytest.fixture(autouse=True)
def dummies():
    with register_guide("dummy", DummyGuide), register_guide("dummy-mask", DummyMaskGuide):
        yield


@pytest.fixture
def src(tmp_path) -> Path:
    path = tmp_path / "src.png"
    contract_image((37, 29)).save(path)
    return path


def test_top_level_names_are_the_api():
    assert editkit.edit is api.edit and editkit.load_guide is api.load_guide
    assert "dummy" in editkit.available_guides() and "tonal" in editkit.available_guides()


@pytest.mark.parametrize("kind", ["path", "str", "pil", "numpy"])
def test_edit_accepts_paths_pil_and_arrays(src, kind):
    image = {"path": src, "str": str(src), "pil": Image.open(src), "numpy": np.asarray(Image.open(src))}[kind]
    result = api.edit(image, "make it blue", guide="dummy", seed=1)
    assert isinstance(result, EditResult)
    assert result.image.size == (37, 29) and result.image.mode == "RGB"
    assert result.guide == "dummy" and result.seed == 1
    assert result.config["shift"] == 0.2 and result.text == ["dummy edit: make it blue"]
    assert {"load_inputs", "load_guide", "total"} <= set(result.timings)


def test_options_change_the_output_and_identity_is_exact(src):
    identity = api.edit(src, "x", guide="dummy", shift=0.0, noise=0.0)
    assert np.array_equal(np.asarray(identity.image), np.asarray(Image.open(src).convert("RGB")))
    shifted = api.edit(src, "x", guide="dummy", shift=0.5, noise=0.0, channel="red")
    diff = np.asarray(shifted.image).astype(int) - np.asarray(identity.image).astype(int)
    assert diff[..., 0].min() >= 0 and diff[..., 0].max() > 100 and not diff[..., 1:].any()


def test_batches_use_seed_plus_index(src):
    batch = api.edit([src, src], "x", guide="dummy", seed=5)
    assert len(batch.images) == 2
    second = api.edit(src, "x", guide="dummy", seed=6)
    assert batch.images[1].tobytes() == second.image.tobytes()
    assert batch.images[0].tobytes() != batch.images[1].tobytes()
    stacked = np.stack([np.asarray(Image.open(src))] * 3)
    assert len(api.edit(stacked, "x", guide="dummy").images) == 3


def test_instruction_lists(src):
    result = api.edit([src, src], ["a", "b"], guide="dummy")
    assert result.text == ["dummy edit: a", "dummy edit: b"]
    with pytest.raises(InvalidInputError, match="got 3 instructions for 2 images"):
        api.edit([src, src], ["a", "b", "c"], guide="dummy")
    for bad in ["", "   \t", ["ok", " "]]:
        with pytest.raises(InvalidInputError, match="instruction is empty"):
            api.edit([src, src], bad, guide="dummy")


def test_loaded_guides_are_cached_per_config():
    DummyGuide.load_calls = 0
    a = api.load_guide("dummy", shift=0.1, noise=0.0)
    b = api.load_guide("dummy", noise=0.0, shift=0.1)
    c = api.load_guide("dummy", shift=0.3)
    assert a is b and a is not c
    assert a.config.shift == 0.1 and c.config.shift == 0.3
    assert DummyGuide.load_calls == 2


def test_backend_cache_is_created_only_when_a_guide_uses_it():
    lazy = api._LazyBackendCache()
    DummyGuide().load(lazy)
    assert lazy._real is None and len(lazy) == 0 and "not created" in repr(lazy)
    assert isinstance(api.backend_cache(), api._LazyBackendCache)


def test_bad_options_name_guide_and_option(src):
    with pytest.raises(GuideConfigError, match="guide 'dummy': option 'shfit': unknown option"):
        api.edit(src, "x", guide="dummy", shfit=0.1)
    with pytest.raises(GuideConfigError, match="option 'shift'.*less than or equal to 1"):
        api.edit(src, "x", guide="dummy", shift=3)
    with pytest.raises(GuideConfigError, match="option 'noise'"):
        api.load_guide("dummy", noise=float("nan"))
    with pytest.raises(UnknownGuideError, match="Did you mean: dummy"):
        api.edit(src, "x", guide="dumy")


def test_masks_limit_the_edit_and_are_checked_before_loading(src):
    result = api.edit(src, "x", guide="dummy-mask", mask="0,0,10,29", shift=1.0, noise=0.0, channel="all")
    out, inp = np.asarray(result.image), np.asarray(Image.open(src))
    assert np.array_equal(out[:, 10:], inp[:, 10:]) and (out[:, :10] == 255).all()
    DummyMaskGuide.load_calls = 0
    with pytest.raises(MissingInputError, match="needs a mask"):
        api.edit(src, "x", guide="dummy-mask", shift=0.7)
    with pytest.raises(InvalidInputError, match="mask is empty"):
        api.edit(src, "x", guide="dummy-mask", mask=np.zeros((29, 37), np.uint8), shift=0.7)
    assert DummyMaskGuide.load_calls == 0  # rejected before any weights would load
    with pytest.raises(InvalidInputError, match="got 2 masks for 1 images"):
        api.edit(src, "x", guide="dummy-mask", mask=["0,0,1,1", "0,0,1,1"])


def test_extra_inputs(src, tmp_path):
    captured = {}

    class Spy(DummyGuide):
        def edit(self, request):
            captured.update(request.inputs)
            return super().edit(request)

    (tmp_path / "clip.wav").write_bytes(b"RIFF....WAVE")
    with register_guide("spy", Spy):
        api.edit(src, "x", guide="spy", inputs={"image1": src, "audio1": str(tmp_path / "clip.wav"),
                                               "wave": np.zeros(16), "n": 3})
    assert isinstance(captured["image1"], Image.Image) and captured["image1"].size == (37, 29)
    assert captured["audio1"] == tmp_path / "clip.wav" and isinstance(captured["audio1"], Path)
    assert captured["wave"].shape == (16,) and captured["n"] == 3
    with pytest.raises(InvalidInputError, match="input 'audio1'.*no such file"):
        api.edit(src, "x", guide="dummy", inputs={"audio1": tmp_path / "missing.wav"})


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed(src, seed):
    with pytest.raises(InvalidInputError, match="seed"):
        api.edit(src, "x", guide="dummy", seed=seed)


def test_api_with_a_classical_guide_imports_no_torch(src):
    code = (
        "import sys, editkit; "
        f"r = editkit.edit({str(src)!r}, 'make it brighter', guide='tonal'); "
        "assert r.image.size == (37, 29); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers', 'transformers')]; "
        "assert not bad, bad[:5]; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "EDITKIT_PLUGIN_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
