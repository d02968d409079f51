"""Coordinate input channels of the EditWorld UNet (editkit.backend.coordinates)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from editkit.backend import LatentDiffusionBackend
from editkit.backend.components import text_to_image_unet
from editkit.backend.coordinates import (add_coordinate_inputs, coordinate_grid, image_conditioning,
                                         is_image_conditioned, takes_coordinates)
from editkit.backend.tiny import tiny_components
from editkit.types import Conditioning, EditRequest


def test_grid_holds_x_then_y_from_minus_one_to_one():
    g = coordinate_grid(2, 3, 5)
    assert g.shape == (2, 2, 3, 5)
    torch.testing.assert_close(g[0, 0, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))  # x along the width
    torch.testing.assert_close(g[0, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))  # y down the height
    assert torch.equal(g[0, 0, 0], g[0, 0, 2]) and torch.equal(g[1], g[0])


def test_zero_initialised_coordinate_inputs_keep_the_function():
    unet = tiny_components(0).unet
    wide = add_coordinate_inputs(unet)
    assert wide.config.in_channels == 10 and takes_coordinates(wide) and not takes_coordinates(unet)
    assert is_image_conditioned(wide) and is_image_conditioned(unet)
    assert add_coordinate_inputs(wide) is wide
    torch.manual_seed(0)
    x, src = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ctx = torch.randn(2, 5, unet.config.cross_attention_dim)
    with torch.no_grad():
        want = unet(torch.cat([x, src], 1), 300, encoder_hidden_states=ctx).sample
        got = wide(torch.cat([x, image_conditioning(wide, src)], 1), 300, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert image_conditioning(unet, src) is src
    with pytest.raises(ValueError, match="InstructPix2Pix UNet"):
        add_coordinate_inputs(tiny_components(0, in_channels=4).unet)


def test_random_coordinate_weights_match_the_other_input_weights_and_are_seeded():
    unet = tiny_components(0).unet
    a, b = add_coordinate_inputs(unet, "random", 1), add_coordinate_inputs(unet, "random", 1)
    w = a.conv_in.weight
    assert torch.equal(w, b.conv_in.weight) and torch.equal(w[:, :8], unet.conv_in.weight)
    assert 0.8 < w[:, 8:].std() / w[:, :8].std() < 1.25
    assert not torch.equal(w, add_coordinate_inputs(unet, "random", 2).conv_in.weight)
    with pytest.raises(ValueError, match="'zero' or 'random'"):
        add_coordinate_inputs(unet, "ones")


def _backend(coordinate_weight: float) -> LatentDiffusionBackend:
    comps = tiny_components(0)
    comps.unet = add_coordinate_inputs(comps.unet)
    with torch.no_grad():
        comps.unet.conv_in.weight[:, 8:] = coordinate_weight
    return LatentDiffusionBackend(comps)


def _edit(backend) -> np.ndarray:
    img = Image.fromarray(np.random.RandomState(0).randint(0, 255, (32, 32, 3), dtype=np.uint8))
    req = EditRequest(images=[img], instructions=["put a red circle at the top left"], seed=3)
    cond = Conditioning(cond=backend.encode_text(req.instructions), null=backend.encode_text([""]), mode="ip2p",
                        text_scale=2.0, image_scale=1.5)
    return np.asarray(backend.generate(cond, req, steps=4, progress=False)[0], dtype=np.int16)


def test_backend_feeds_the_coordinates_to_a_unet_that_takes_them():
    plain = LatentDiffusionBackend(tiny_components(0))
    same = _edit(_backend(0.0))
    assert np.abs(same - _edit(plain)).max() <= 1  # zero weights: the 8-channel result
    assert np.abs(_edit(_backend(0.5)) - same).mean() > 1.0  # the channels reach the UNet


def test_text_to_image_unet_drops_source_and_coordinates():
    wide = add_coordinate_inputs(tiny_components(0).unet)
    with torch.no_grad():
        wide.conv_in.weight[:, 8:] = 1.0
    t2i = text_to_image_unet(copy.deepcopy(wide))
    assert t2i.config.in_channels == 4
    torch.testing.assert_close(t2i.conv_in.weight, wide.conv_in.weight[:, :4])
