"""The ip2p guide: plumbing on tiny random weights (quality on the committed weights is in test_quality)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editkit.backend import BackendCache
from editkit.backend.tiny import save_components, tiny_components
from editkit.errors import GuideConfigError, GuideLoadError
from editkit.testing import contract_image
from editkit.types import EditRequest
from editkit_ip2p import InstructPix2PixGuide


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_components(tiny_components(0), tmp_path_factory.mktemp("ip2p") / "w")


def test_ip2p_uses_the_empty_prompt_as_its_null_and_dual_guidance(weights, monkeypatch):
    guide = InstructPix2PixGuide(model=str(weights), steps=3, text_scale=5.0, image_scale=1.2, progress=False)
    guide.load(BackendCache())
    req = EditRequest(images=[contract_image((37, 29))], instructions=["make the red circle blue"], seed=1)
    cond = guide.prepare(req)
    assert cond.mode == "ip2p" and cond.text_scale == 5.0 and cond.image_scale == 1.2
    torch.testing.assert_close(cond.null, guide.backend.encode_text([""]))
    result = guide.edit(req)
    assert result.images[0].size == (37, 29)
    assert set(result.timings) >= {"prepare", "encode", "denoise", "decode"}
    assert result.config["steps"] == 3


def test_ip2p_batches_match_single_edits(weights):
    guide = InstructPix2PixGuide(model=str(weights), steps=3, progress=False)
    guide.load(BackendCache())
    imgs = [contract_image((32, 32)), contract_image((32, 32)).transpose(0)]
    batch = guide.edit(EditRequest(images=imgs, instructions=["make it red", "remove the star"], seed=4))
    one = guide.edit(EditRequest(images=imgs[1:], instructions=["remove the star"], seed=5))
    diff = np.abs(np.asarray(batch.images[1], int) - np.asarray(one.images[0], int)).max()
    assert diff <= 1


def test_ip2p_options_are_validated():
    with pytest.raises(GuideConfigError, match="guide 'ip2p': option 'image_scale'"):
        InstructPix2PixGuide(image_scale=-1)
    with pytest.raises(GuideConfigError, match="option 'scheduler'"):
        InstructPix2PixGuide(scheduler="plms")


def test_ip2p_missing_model_folder_is_a_clear_error(tmp_path):
    guide = InstructPix2PixGuide(model=str(tmp_path / "nope"), progress=False)
    with pytest.raises(GuideLoadError, match="does not exist"):
        guide.load(BackendCache())


def test_unreachable_hub_id_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    guide = InstructPix2PixGuide(model="nobody/not-a-model", progress=False)
    with pytest.raises(GuideLoadError, match="cannot load unet from 'nobody/not-a-model'") as info:
        guide.load(BackendCache())
    assert "\n" not in str(info.value)


def test_unset_guidance_scales_follow_the_weights_recommendation(tmp_path):
    import json

    from editkit.backend.components import SAMPLING_FILE

    plain = save_components(tiny_components(0), tmp_path / "plain")
    tuned = save_components(tiny_components(0), tmp_path / "tuned")
    (tuned / SAMPLING_FILE).write_text(json.dumps({"text_scale": 1.0, "image_scale": 1.25, "_note": "measured"}))
    req = EditRequest(images=[contract_image((32, 32))], instructions=["make it red"], seed=0)
    cases = [(plain, {}, (7.5, 1.5)), (tuned, {}, (1.0, 1.25)), (tuned, {"text_scale": 3.0}, (3.0, 1.25))]
    for folder, options, expected in cases:
        guide = InstructPix2PixGuide(model=str(folder), steps=2, progress=False, **options)
        guide.load(BackendCache())
        cond = guide.prepare(req)
        assert (cond.text_scale, cond.image_scale) == expected
    (tuned / SAMPLING_FILE).write_text("{not json")
    with pytest.raises(GuideLoadError, match="cannot read .*editkit_sampling.json"):
        InstructPix2PixGuide(model=str(tuned)).load(BackendCache())


def test_unset_steps_and_auto_scheduler_follow_the_weights_recommendation(tmp_path, monkeypatch):
    import json

    from editkit.backend.components import SAMPLING_FILE
    from editkit.eval.runner import _sampling_record

    plain = save_components(tiny_components(0), tmp_path / "plain")
    tuned = save_components(tiny_components(0), tmp_path / "tuned")
    (tuned / SAMPLING_FILE).write_text(json.dumps({"steps": 3, "scheduler": "dpmpp_2m", "_measured": "x"}))
    cases = [
        (plain, {}, (20, "auto")),  # no recommendation: 20 steps, the checkpoint's own scheduler
        (tuned, {}, (3, "dpmpp_2m")),
        (tuned, {"steps": 5, "scheduler": "ddim"}, (5, "ddim")),  # set options win
    ]
    req = EditRequest(images=[contract_image((32, 32))], instructions=["make it red"], seed=0)
    for folder, options, expected in cases:
        guide = InstructPix2PixGuide(model=str(folder), progress=False, **options)
        guide.load(BackendCache())
        seen = {}

        def fake_generate(cond, request, **kwargs):
            seen.update(kwargs)
            return [im.copy() for im in request.images]

        monkeypatch.setattr(guide.backend, "generate", fake_generate)
        result = guide.edit(req)
        assert (seen["steps"], seen["scheduler"]) == expected
        assert (result.config["steps"], result.config["scheduler"]) == expected  # the settings it ran with
        assert _sampling_record(guide) == {"steps": expected[0], "scheduler": expected[1]}  # run.json of eval
        monkeypatch.undo()
    for bad, option in (({"steps": 0}, "steps"), ({"steps": "ten"}, "steps"), ({"scheduler": "plms"}, "scheduler")):
        (tuned / SAMPLING_FILE).write_text(json.dumps(bad))
        with pytest.raises(GuideLoadError, match=f"editkit_sampling.json: recommended '{option}'"):
            InstructPix2PixGuide(model=str(tuned)).load(BackendCache())
