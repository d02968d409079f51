"""The image tower of an open_clip CLIP as a transformers ``CLIPVisionModel`` (LLaVA's vision tower).

LLaVA, and so MGIE, sees images through a frozen, contrastively pretrained CLIP ViT (ViT-L/14 at full
size, the penultimate layer's patch states). For the tiny EditWorld MGIE the pretrained CLIP is the one
``editkit train clip`` makes; this module maps its image tower one to one onto ``CLIPVisionModel``:
patch convolution (no bias), class and positional embeddings, ``ln_pre`` (transformers' pre-layernorm),
pre-LN residual blocks with a fused QKV projection and exact GELU, ``ln_post``. The joint-space projection
``proj`` is not part of a LLaVA tower and is dropped. ``check_vision_export`` compares every layer's states
with open_clip's own forward pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .clip_text import map_resblocks


def vision_tower_config(clip_folder: str | Path) -> dict[str, Any]:
    """``CLIPVisionConfig`` keyword arguments of the open_clip folder's image tower."""
    from ..backend.clip import CONFIG_NAME, model_config

    cfg = model_config(Path(clip_folder) / CONFIG_NAME)["vision_cfg"]
    width = int(cfg["width"])
    heads = width // int(cfg.get("head_width", 64))
    return dict(hidden_size=width, intermediate_size=int(width * cfg.get("mlp_ratio", 4.0)),
                num_hidden_layers=int(cfg["layers"]), num_attention_heads=heads, image_size=int(cfg["image_size"]),
                patch_size=int(cfg["patch_size"]), hidden_act="gelu", layer_norm_eps=1e-5)


def vision_tower_state(clip_folder: str | Path) -> dict[str, torch.Tensor]:
    """The image tower's weights under ``CLIPVisionModel`` key names (without a ``vision_model.`` prefix), in
    float32."""
    from ..backend.clip import WEIGHTS_NAME
    from ..weights import load_state_dict

    state = {k[len("visual."):]: v.float() for k, v in load_state_dict(Path(clip_folder) / WEIGHTS_NAME).items()
             if k.startswith("visual.")}
    layers = int(vision_tower_config(clip_folder)["num_hidden_layers"])
    mapped = {
        "embeddings.class_embedding": state["class_embedding"],
        "embeddings.patch_embedding.weight": state["conv1.weight"],
        "embeddings.position_embedding.weight": state["positional_embedding"],
        "pre_layrnorm.weight": state["ln_pre.weight"], "pre_layrnorm.bias": state["ln_pre.bias"],
        "post_layernorm.weight": state["ln_post.weight"], "post_layernorm.bias": state["ln_post.bias"],
    }
    mapped.update(map_resblocks(state, "transformer.resblocks.", "encoder.layers.", layers))
    return mapped


def load_vision_tower(tower, clip_folder: str | Path) -> None:
    """Copy the open_clip image tower into ``tower`` (a ``CLIPVisionModel`` built from ``vision_tower_config``)."""
    state = vision_tower_state(clip_folder)
    if any(k.startswith("vision_model.") for k in tower.state_dict()):  # transformers versions differ
        state = {f"vision_model.{k}": v for k, v in state.items()}
    missing, unexpected = tower.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"vision tower export: missing {missing[:3]}, unexpected {unexpected[:3]}")


@torch.no_grad()
def check_vision_export(clip_folder: str | Path, tower, pixels: torch.Tensor) -> float:
    """Largest |difference| over every layer between open_clip's image tower and ``tower`` on ``pixels``
    (already normalised the way the CLIP was trained)."""
    from ..backend.clip import CONFIG_NAME, WEIGHTS_NAME, load_clip

    visual = load_clip(str(Path(clip_folder) / CONFIG_NAME), str(Path(clip_folder) / WEIGHTS_NAME)).model.visual
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], 1) + visual.positional_embedding)
    ours = tower(pixels, output_hidden_states=True).hidden_states
    worst = float((x - ours[0]).abs().max())
    for block, state in zip(visual.transformer.resblocks, ours[1:]):
        x = block(x)
        worst = max(worst, float((x - state).abs().max()))
    return worst
