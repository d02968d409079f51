"""Full-size diffusion architectures with random weights, for benchmarks.

Latency does not depend on weight values, so Stable Diffusion 1.5-shaped models built from their
published configs with random weights time like the released checkpoints (which cannot be downloaded
here). Never use them for an edit that anyone looks at.
"""
from __future__ import annotations

from typing import Any

import torch

from .components import Components

#: UNet of Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5 unet/config.json).
SD15_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu",
)

#: The Stable Diffusion VAE (8x downsampling, 4 latent channels).
SD_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2,
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)

#: The CLIP ViT-L/14 text encoder of Stable Diffusion 1.5 (77 tokens of width 768).
CLIP_L14_TEXT: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, pad_token_id=0, bos_token_id=2,
    eos_token_id=3,
)

SIZES = ("test", "sd15")


def random_components(size: str = "sd15", *, in_channels: int = 8, text: bool = True, device: str = "cpu",
                      dtype: torch.dtype = torch.float32, seed: int = 0) -> Components:
    """Random components of ``size`` ('sd15': Stable Diffusion 1.5 shapes; 'test': the tiny plumbing ones),
    built directly on ``device`` (a 7B-parameter neighbour in the same process never needs host copies)."""
    from .tiny import SCHEDULER_CONFIG, TEST_WORDS, tiny_components, word_tokenizer

    if size not in SIZES:
        raise ValueError(f"unknown architecture size '{size}' (known: {', '.join(SIZES)})")
    if size == "test":
        comps = tiny_components(seed, in_channels=in_channels, text=text)
        return _placed(comps, device, dtype)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**{**SD15_UNET, "in_channels": in_channels})
        vae = AutoencoderKL(**SD_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L14_TEXT)) if text else None
    # A word-level tokenizer padded to 77 tokens: the text encoder sees the sequence length of CLIP's.
    tokenizer = word_tokenizer(TEST_WORDS, max_length=77) if text else None
    return _placed(Components(unet=unet, vae=vae, scheduler_config=dict(SCHEDULER_CONFIG), text_encoder=text_encoder,
                              tokenizer=tokenizer), device, dtype)


def _placed(comps: Components, device: str, dtype: torch.dtype) -> Components:
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(comps, name)
        if module is not None:
            module = module.to(device)
            if next(module.parameters()).dtype != dtype:  # (diffusers warns about casts even to the same dtype)
                module = module.to(dtype=dtype)
            setattr(comps, name, module.eval().requires_grad_(False))
    return comps


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
