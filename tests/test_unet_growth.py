"""Growing the EditWorld UNet with cross-attention at a finer level keeps its function (training/unet_growth)."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from editkit.backend.tiny import unet_config
from editkit.training.unet_growth import cross_attention_levels, with_cross_attention_levels


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config(8, cross_attention_dim=16, size="editworld")).eval()


def test_grown_unet_computes_the_same_and_its_new_blocks_learn(unet):
    grown = with_cross_attention_levels(unet, 2).eval()
    assert cross_attention_levels(unet) == 1 and cross_attention_levels(grown) == 2
    assert grown.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert grown.config.up_block_types == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    x, ctx = torch.randn(2, 8, 32, 32), torch.randn(2, 5, 16)
    with torch.no_grad():
        want = unet(x, 400, encoder_hidden_states=ctx).sample
        got = grown(x, 400, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    new = grown.down_blocks[1].attentions[0].proj_out
    assert new.weight.abs().max() == 0
    grown(x, 400, encoder_hidden_states=ctx).sample.pow(2).mean().backward()
    assert new.weight.grad.abs().max() > 0  # zero output, not zero gradient: the block can learn
    # the old 8x8 blocks keep their trained output projections
    old = grown.down_blocks[2].attentions[0].proj_out.weight
    torch.testing.assert_close(old, unet.down_blocks[2].attentions[0].proj_out.weight)


def test_levels_are_checked(unet):
    assert with_cross_attention_levels(unet, 1) is unet
    grown = with_cross_attention_levels(unet, 2)
    with pytest.raises(ValueError, match="cannot drop to 1"):
        with_cross_attention_levels(grown, 1)
    with pytest.raises(ValueError, match="between 1 and 3"):
        with_cross_attention_levels(unet, 4)
