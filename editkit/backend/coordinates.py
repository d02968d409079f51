"""Coordinate channels for image-conditioned UNets that take them (the EditWorld tiny UNet).

An InstructPix2Pix UNet reads ``2 x C`` input channels: the noisy latents and the source latents. A UNet
with ``2 x C + 2`` input channels also reads two fixed channels holding each latent pixel's x and y in
[-1, 1] (CoordConv, Liu et al. 2018). They are part of the image conditioning: the image-dropout null
zeroes them together with the source latents, in training and at inference. Convolutions alone learn
absolute position only from their zero padding; the small EditWorld UNet did not learn to place an object
"at the top right" that way, so its cross-attention queries get the position explicitly. Official
8-channel checkpoints are unaffected.
"""
from __future__ import annotations

import torch

COORDINATE_CHANNELS = 2


def takes_coordinates(unet) -> bool:
    """Whether ``unet`` expects the two coordinate channels after the source latents."""
    return int(unet.config.in_channels) == 2 * int(unet.config.out_channels) + COORDINATE_CHANNELS


def is_image_conditioned(unet) -> bool:
    """Whether ``unet`` reads source latents (an InstructPix2Pix UNet, with or without coordinates)."""
    return int(unet.config.in_channels) >= 2 * int(unet.config.out_channels)


def coordinate_grid(batch: int, height: int, width: int, *, device=None, dtype=None) -> torch.Tensor:
    """(batch, 2, height, width): x then y of each pixel centre, from -1 to 1."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


def image_conditioning(unet, source_latents: torch.Tensor) -> torch.Tensor:
    """The image-conditioning channels ``unet`` reads: the source latents, plus coordinates if it takes them."""
    if not takes_coordinates(unet):
        return source_latents
    b, _, h, w = source_latents.shape
    grid = coordinate_grid(b, h, w, device=source_latents.device, dtype=source_latents.dtype)
    return torch.cat([source_latents, grid], dim=1)


def add_coordinate_inputs(unet, init: str = "zero", seed: int = 0):
    """A copy of an 8-channel InstructPix2Pix UNet that also takes the coordinate channels.

    ``init="zero"``: their ``conv_in`` weights start at zero, so the copy computes exactly what ``unet`` computes.
    That is a saddle for learning to use them: a position word can only be routed once the features already
    vary with position, and with zero weights they do not, so the weights' gradient averages out over a batch
    (measured: after 1200 steps they were 1/50 of the other input weights and outputs still ignored "at the top
    left"). ``init="random"``: normal with the standard deviation of the existing ``conv_in`` weights (seeded),
    which breaks that symmetry at the cost of a perturbed start."""
    from diffusers import UNet2DConditionModel

    if takes_coordinates(unet):
        return unet
    if int(unet.config.in_channels) != 2 * int(unet.config.out_channels):
        raise ValueError(f"expected an InstructPix2Pix UNet with {2 * unet.config.out_channels} input channels, "
                         f"got {unet.config.in_channels}")
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    out = UNet2DConditionModel(**{**config, "in_channels": unet.config.in_channels + COORDINATE_CHANNELS})
    state = unet.state_dict()
    weight = state["conv_in.weight"]
    extra = weight.new_zeros(weight.shape[0], COORDINATE_CHANNELS, *weight.shape[2:])
    if init == "random":
        gen = torch.Generator().manual_seed(seed)
        extra = torch.randn(extra.shape, generator=gen, dtype=torch.float32).to(weight) * weight.float().std()
    elif init != "zero":
        raise ValueError(f"init must be 'zero' or 'random', got {init!r}")
    state["conv_in.weight"] = torch.cat([weight, extra], dim=1)
    out.load_state_dict(state)
    return out if out.dtype == unet.dtype else out.to(dtype=unet.dtype)
