"""The out-of-tree example plugin ``editkit-example-guide`` (guide ``tonal``), installed from its own folder."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from editkit import api, registry
from editkit.errors import GuideError
from editkit.testing import contract_image

pytest.importorskip("editkit_example_guide", reason="pip install -e plugins/editkit-example-guide")
from editkit_example_guide import Adjustment, parse_instruction  # noqa: E402

WEIGHTS = np.array([0.299, 0.587, 0.114])


@pytest.fixture
def image() -> Image.Image:
    return contract_image((37, 29))


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(float)


def test_registered_by_its_own_distribution():
    assert registry.get_entry("tonal").distribution == "editkit-example-guide"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("make it brighter", [("brightness", 1)]),
        ("Darken the photo", [("brightness", -1)]),
        ("increase the contrast", [("contrast", 1)]),
        ("less contrast please", [("contrast", -1)]),
        ("make it warmer", [("warmth", 1)]),
        ("make it a bit cooler", [("warmth", -1)]),
        ("desaturate", [("saturation", -1)]),
        ("make it more saturated", [("saturation", 1)]),
        ("turn it black and white", [("monochrome", -1)]),
        ("brighter and warmer", [("brightness", 1), ("warmth", 1)]),
    ],
)
def test_parse(text, expected):
    assert parse_instruction(text) == [Adjustment(k, d) for k, d in expected]


@pytest.mark.parametrize(
    "text, message",
    [
        ("add a hat to the dog", "does not understand"),
        ("make it brighter and darker", "both more and less brightness"),
        ("don't make it brighter", "negated"),
    ],
)
def test_refuses_what_it_cannot_do(image, text, message):
    with pytest.raises(GuideError, match=message):
        api.edit(image, text, guide="tonal")


def test_brighter_and_darker(image):
    src = arr(image).mean()
    assert arr(api.edit(image, "make it brighter", guide="tonal").image).mean() > src + 10
    assert arr(api.edit(image, "make it darker", guide="tonal").image).mean() < src - 10


def test_contrast(image):
    src = arr(image).std()
    assert arr(api.edit(image, "increase contrast", guide="tonal").image).std() > src * 1.2
    assert arr(api.edit(image, "reduce contrast", guide="tonal").image).std() < src * 0.8


def test_warmer_moves_red_up_and_blue_down_keeping_luminance(image):
    out = arr(api.edit(image, "make it warmer", guide="tonal").image)
    src = arr(image)
    assert out[..., 0].mean() > src[..., 0].mean() and out[..., 2].mean() < src[..., 2].mean()
    assert abs((out @ WEIGHTS).mean() - (src @ WEIGHTS).mean()) < 3


def test_black_and_white_is_grey(image):
    out = arr(api.edit(image, "black and white", guide="tonal").image)
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 1 and np.abs(out[..., 1] - out[..., 2]).max() <= 1


def test_strength_zero_is_identity_and_mask_limits_the_edit(image):
    same = api.edit(image, "make it brighter", guide="tonal", strength=0.0)
    assert same.image.tobytes() == image.tobytes()
    masked = api.edit(image, "make it brighter", guide="tonal", mask="0,0,10,29", strength=1.0)
    out = np.asarray(masked.image)
    assert np.array_equal(out[:, 10:], np.asarray(image)[:, 10:])
    assert not np.array_equal(out[:, :10], np.asarray(image)[:, :10])
    assert masked.text == ["brightness +1.00"]
