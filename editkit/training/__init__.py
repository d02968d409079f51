"""Training recipes for the tiny EditWorld weights (``editkit train RECIPE``).

Each recipe is a pydantic model (its fields are the command's options) plus a ``train_*``
function; the recipe settings, wall time and hardware are written next to the weights.
"""
from __future__ import annotations

RECIPES = {
    "vae": ("editkit.training.vae", "VAERecipe", "train_vae"),
    "ip2p": ("editkit.training.ip2p", "IP2PRecipe", "train_ip2p"),
    "mgie": ("editkit.training.mgie", "MGIERecipe", "train_mgie"),
    "clip": ("editkit.training.clip", "ClipRecipe", "train_clip"),
    "imagebind": ("editkit.training.imagebind", "ImageBindRecipe", "train_imagebind"),
    "any2pix": ("editkit.training.any2pix", "Any2PixRecipe", "train_any2pix"),
}
