"""Grow a trained UNet without changing what it computes: new cross-attention at a finer level.

``with_cross_attention_levels(unet, n)`` returns a copy of a ``UNet2DConditionModel`` whose ``n`` coarsest
levels have cross-attention (``CrossAttnDownBlock2D`` / ``CrossAttnUpBlock2D``). Every existing weight is kept;
each new transformer block's output projection starts at zero, so the block adds nothing to its residual and
the grown UNet computes exactly what ``unet`` computes until it is trained (as ControlNet's zero
convolutions). Used to continue the EditWorld ip2p UNet with cross-attention at 16x16 as well as 8x8.
"""
from __future__ import annotations

import torch

_DOWN, _UP = ("DownBlock2D", "CrossAttnDownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D")


def cross_attention_levels(unet) -> int:
    """How many of the coarsest levels have cross-attention (they must be the coarsest ones)."""
    down = list(unet.config.down_block_types)
    n = sum(t == _DOWN[1] for t in down)
    if down[len(down) - n:] != [_DOWN[1]] * n:
        raise ValueError(f"cross-attention must be on the coarsest levels, got {down}")
    return n


def with_cross_attention_levels(unet, levels: int):
    """A copy of ``unet`` with cross-attention on its ``levels`` coarsest levels (see the module docstring)."""
    from diffusers import UNet2DConditionModel

    have = cross_attention_levels(unet)
    total = len(unet.config.down_block_types)
    if not 1 <= levels <= total:
        raise ValueError(f"levels must be between 1 and {total}, got {levels}")
    if levels < have:
        raise ValueError(f"the UNet already has cross-attention on {have} levels; it cannot drop to {levels}")
    if levels == have:
        return unet
    down = [_DOWN[i >= total - levels] for i in range(total)]
    up = [_UP[i < levels] for i in range(total)]
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    grown = UNet2DConditionModel(**{**config, "down_block_types": tuple(down), "up_block_types": tuple(up)})
    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(".attentions." not in key for key in missing):
        raise ValueError(f"cannot carry the weights over: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for key in missing:
            if key.endswith(".proj_out.weight"):  # a new block: make its output projection zero
                layer = grown.get_submodule(key[: -len(".weight")])
                layer.weight.zero_()
                layer.bias.zero_()
    return grown if grown.dtype == unet.dtype else grown.to(dtype=unet.dtype)
