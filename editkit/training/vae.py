"""Recipe ``vae``: a tiny AutoencoderKL (factor 2, 4 latent channels) on EditWorld images.

Loss: L1 + MSE reconstruction of the posterior mean, plus a very small KL term so that the
posterior stays near a Gaussian. After training, the scaling factor is set to 1 / std of the
training latents (as Stable Diffusion's 0.18215 was chosen).
"""
from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from tqdm.auto import tqdm

from ..config import EditkitModel
from .common import RunLog, cosine_lr, images_to_tensor, psnr, set_threads, write_recipe


class VAERecipe(EditkitModel):
    out: Path = Field(..., description="Output folder; the VAE is written to OUT/vae.")
    steps: int = Field(3000, ge=1, le=1_000_000, description="Optimiser steps.")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per step.")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Peak learning rate (cosine schedule).")
    kl_weight: float = Field(1e-6, ge=0, le=1.0, description="Weight of the KL term.")
    pool: int = Field(8000, ge=8, le=1_000_000, description="EditWorld training samples (source+target images).")
    seed: int = Field(0, description="Seed of data and initialisation.")
    image_size: int = Field(64, ge=16, le=512, description="EditWorld image size.")
    init: Path | None = Field(None, description="Continue from this VAE folder instead of a fresh one.")
    decoder_only: bool = Field(
        False, description="Train only the decoder (needs init). The latent space stays exactly the same, "
        "so a UNet trained on these latents stays valid.",
    )


def train_vae(recipe: VAERecipe, progress: bool = True) -> dict:
    from diffusers import AutoencoderKL

    from .. import editworld
    from ..backend.tiny import vae_config

    set_threads()
    torch.manual_seed(recipe.seed)
    log = RunLog(recipe.out / "logs" / "vae")
    samples = editworld.generate("train", recipe.pool, seed=recipe.seed, size=recipe.image_size)
    data = images_to_tensor([s.source for s in samples] + [s.target for s in samples])
    val_samples = editworld.generate("val", 256, seed=recipe.seed + 1, size=recipe.image_size)
    val = images_to_tensor([s.source for s in val_samples])

    vae = AutoencoderKL.from_pretrained(recipe.init) if recipe.init else AutoencoderKL(**vae_config("editworld"))
    if recipe.decoder_only:
        if recipe.init is None:
            raise ValueError("decoder_only needs init (the VAE whose encoder is kept)")
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed)
    bar = tqdm(range(recipe.steps), desc="train vae", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.steps, recipe.lr)
        idx = torch.randint(0, data.shape[0], (recipe.batch_size,), generator=gen)
        x = data[idx]
        with torch.set_grad_enabled(not recipe.decoder_only):
            posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mean).sample
        rec = (recon - x).abs().mean() + (recon - x).pow(2).mean()
        loss = rec + (0.0 if recipe.decoder_only else recipe.kl_weight * posterior.kl().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        if step % 50 == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.write(step=step, loss=loss.item(), recon=rec.item())

    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(data[i : i + 256]).latent_dist.mode() for i in range(0, 2048, 256)])
        std = latents.std().item()
        recon = torch.cat([vae.decode(vae.encode(val[i : i + 128]).latent_dist.mode()).sample
                           for i in range(0, val.shape[0], 128)])
    if not recipe.decoder_only:  # a decoder-only run keeps the latent space and its scaling factor
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    val_psnr = psnr(recon, val)
    vae.save_pretrained(recipe.out / "vae", safe_serialization=True)
    results = {"val_roundtrip_psnr_db": round(val_psnr, 2), "latent_std": round(std, 4),
               "scaling_factor": float(vae.config.scaling_factor)}
    log.write(done=True, **results)
    write_recipe(recipe.out, "vae", recipe.model_dump(mode="json"), log.elapsed, results)
    return results
