"""The guidance branches of one sampling run: every branch in one batched UNet call, combined into one noise
prediction (:class:`Denoiser`), and the conditioning repeated for K candidates per image."""
from __future__ import annotations

import torch

from ..types import Conditioning
from .sdxl import branch_added_cond, takes_text_time

#: ``Conditioning.extra`` entries with one row per image (or one shared row).
PER_IMAGE_EXTRA = ("image_embeds", "null_image_embeds", "text_embeds", "null_text_embeds")


class Denoiser:
    """Guidance-combined noise prediction with every branch in one batched UNet call.

    ip2p: branches (c_T, c_I), (null_T, c_I), (null_T, 0) and
    eps = e_uncond + s_T (e_cond - e_img) + s_I (e_img - e_uncond).
    Two-branch CFG otherwise; a single branch when no null is given. SDXL UNets get ``text_embeds`` and
    ``time_ids`` for ``pixel_size`` (height, width) in ``added_cond_kwargs``, next to any IP-Adapter image tokens.
    """

    def __init__(self, unet, cond: Conditioning, source_latents, batch: int, device, dtype, *,
                 preallocate: tuple[int, ...] | None = None, channels_last: bool = False,
                 pixel_size: tuple[int, int] | None = None):
        self.unet = unet
        self.mode = cond.mode
        self.text_scale = cond.text_scale
        self.image_scale = cond.image_scale
        c = expand(cond.cond.to(device, dtype), batch)
        n = expand(cond.null.to(device, dtype), batch) if cond.null is not None else None
        if self.mode == "ip2p":
            if n is None:
                raise ValueError("ip2p sampling needs the guide's null conditioning")
            img = source_latents
            self.branches = 3
            self.context = torch.cat([c, n, n])
            self.image_cond = torch.cat([img, img, torch.zeros_like(img)])
        else:
            self.image_cond = None
            if n is not None and self.text_scale != 1.0:
                self.branches = 2
                self.context = torch.cat([c, n])
            else:
                self.branches = 1
                self.context = c
        self.added = dict(cond.extra.get("unet_kwargs", {}))
        added_cond_kwargs = dict(self.added.get("added_cond_kwargs", {}))
        if cond.extra.get("image_embeds") is not None:
            # IP-Adapter-style image tokens: per branch, the guide's embedding for the conditional branch and its
            # null embedding (e.g. zeros, which the projector maps to proj(0)) for the others.
            e = expand(cond.extra["image_embeds"].to(device, dtype), batch)
            n_e = cond.extra.get("null_image_embeds")
            n_e = torch.zeros_like(e) if n_e is None else expand(n_e.to(device, dtype), batch)
            embeds = torch.cat([e] + [n_e] * (self.branches - 1))
            added_cond_kwargs["image_embeds"] = [embeds[:, None] if embeds.ndim == 2 else embeds]
        if takes_text_time(unet):
            added_cond_kwargs.update(branch_added_cond(cond.extra, self.branches, batch, pixel_size, device, dtype))
        if added_cond_kwargs:
            self.added["added_cond_kwargs"] = added_cond_kwargs
        self.buffer = None
        if preallocate is not None and (self.branches > 1 or self.image_cond is not None):
            self._preallocate(preallocate, device, dtype, channels_last)

    def _preallocate(self, latent_shape, device, dtype, channels_last: bool) -> None:
        """The UNet input of every step, written in place: each branch's latents, then the image latents."""
        b, c, h, w = latent_shape
        extra = 0 if self.image_cond is None else self.image_cond.shape[1]
        buf = torch.empty((self.branches * b, c + extra, h, w), device=device, dtype=dtype)
        if channels_last:
            buf = buf.contiguous(memory_format=torch.channels_last)
        if self.image_cond is not None:
            buf[:, c:] = self.image_cond
        self.buffer = buf
        self.latent_view = buf[:, :c].unflatten(0, (self.branches, b))

    def make_differentiable(self) -> None:
        """Copy inference-mode tensors so they can take part in autograd (gradient guidance)."""
        self.context = self.context.clone()
        if self.image_cond is not None:
            self.image_cond = self.image_cond.clone()

    def __call__(self, latents: torch.Tensor, t) -> torch.Tensor:
        if self.buffer is not None:
            self.latent_view.copy_(latents.unsqueeze(0).expand_as(self.latent_view))
            x = self.buffer
        else:
            x = latents.repeat(self.branches, 1, 1, 1) if self.branches > 1 else latents
            if self.image_cond is not None:
                x = torch.cat([x, self.image_cond], dim=1)
        eps = self.unet(x, t, encoder_hidden_states=self.context, **self.added).sample
        if self.branches == 3:
            e_cond, e_img, e_unc = eps.chunk(3)
            return e_unc + self.text_scale * (e_cond - e_img) + self.image_scale * (e_img - e_unc)
        if self.branches == 2:
            e_cond, e_unc = eps.chunk(2)
            return e_unc + self.text_scale * (e_cond - e_unc)
        return eps


def expand(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 and batch > 1 else x


def repeat_conditioning(cond: Conditioning, k: int) -> Conditioning:
    """K candidates per request image: per-image tensors are repeated, shared (batch 1) ones kept."""
    from dataclasses import replace

    def rep(x):
        return x if x is None or x.shape[0] == 1 else x.repeat_interleave(k, 0)

    extra = {**cond.extra, **{key: rep(cond.extra[key]) for key in PER_IMAGE_EXTRA if key in cond.extra}}
    return replace(cond, cond=rep(cond.cond), null=rep(cond.null), init_latents=rep(cond.init_latents), extra=extra)
