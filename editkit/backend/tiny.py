"""Small model configurations: random seeded components for plumbing tests, and the EditWorld sizes.

The same real diffusers/transformers classes as the full-size models are used; only the configs
are small. ``editworld_*`` configs are the architectures of the committed tiny weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import torch

from .components import Components

SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

#: Schedule of the EditWorld weights. At 32x32x4 latents the Stable Diffusion schedule leaves enough
#: of the target in x_T (alpha_bar 0.005 at t=951) that a small model learns to read it instead of
#: editing from the conditioning, and then fails from pure noise. Zero terminal SNR with
#: v-prediction and trailing timesteps (Lin et al., 2024) removes that leak.
EDITWORLD_SCHEDULER_CONFIG = {
    **SCHEDULER_CONFIG,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "steps_offset": 0,
}

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def unet_config(in_channels: int = 8, cross_attention_dim: int = 32, size: str = "test") -> dict:
    if size == "editworld":
        return dict(
            sample_size=32, in_channels=in_channels, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64, 128),
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            cross_attention_dim=cross_attention_dim, attention_head_dim=32, norm_num_groups=8,
        )
    return dict(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=8, norm_num_groups=8,
    )


def vae_config(size: str = "test") -> dict:
    channels = (16, 32) if size == "editworld" else (32, 64)
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=64,
        scaling_factor=0.5 if size == "editworld" else 0.18215,
        # Attention over 32x32 latents costs as much as the convolutions and adds little on EditWorld.
        mid_block_add_attention=size != "editworld",
    )


def text_config(vocab_size: int, hidden: int = 32, size: str = "test") -> dict:
    if size == "editworld":
        return dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=32, pad_token_id=0, bos_token_id=2,
                    eos_token_id=3, projection_dim=64)
    return dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32, pad_token_id=0, bos_token_id=2,
                eos_token_id=3, projection_dim=hidden)


def word_normalizer(vocab: Iterable[str]):
    """Lowercase, and drop the punctuation marks the vocabulary has no token for ("make it brighter." reads
    as "make it brighter", not with an unknown token at the end). Brackets stay: they make reference tokens
    such as ``[image1]``."""
    import re

    from tokenizers import Regex, normalizers

    kept = "".join(sorted({w for w in vocab if len(w) == 1 and not w.isalnum() and not w.isspace()} | {"[", "]"}))
    return normalizers.Sequence([normalizers.Lowercase(),
                                 normalizers.Replace(Regex(rf"[^\w\s{re.escape(kept)}]"), " ")])


def word_tokenizer(words: Iterable[str], max_length: int = 24):
    """A word-level fast tokenizer (lowercase, punctuation split) built offline from a vocabulary."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in sorted(set(words)):
        if w not in vocab:
            vocab[w] = len(vocab)
    tk = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = word_normalizer(vocab)
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"\[\w+\]|[^\w\s]"), behavior="isolated")]
    )
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
        model_max_length=max_length,
    )


TEST_WORDS = "make turn the a an red green blue yellow circle square triangle star it brighter darker remove add at top left right bottom center".split()


def tiny_components(seed: int = 0, *, in_channels: int = 8, text: bool = True) -> Components:
    """Random, seeded, tiny components for plumbing tests (never a demo)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(in_channels))
    vae = AutoencoderKL(**vae_config())
    text_encoder = tokenizer = None
    if text:
        tokenizer = word_tokenizer(TEST_WORDS, max_length=16)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer))))
    return Components(unet=unet, vae=vae, scheduler_config=dict(SCHEDULER_CONFIG), text_encoder=text_encoder,
                      tokenizer=tokenizer)


def tiny_sdxl_components(seed: int = 0, *, in_channels: int = 4) -> Components:
    """Random, seeded, tiny SDXL-shaped components for plumbing tests: a UNet with SDXL's added conditioning
    (``text_time``) reading two text encoders (widths 32 and 48, the second with a 16-d projection)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = (word_tokenizer(TEST_WORDS, max_length=16) for _ in range(2))
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer), hidden=32)))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        **{**text_config(len(tokenizer_2), hidden=48), "projection_dim": 16}))
    time_dim = 8  # each of the 6 time ids gets a sinusoidal embedding of this width, concatenated to the pooled 16
    unet = UNet2DConditionModel(**unet_config(in_channels, cross_attention_dim=32 + 48),
                                addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                                projection_class_embeddings_input_dim=16 + 6 * time_dim)
    return Components(unet=unet, vae=AutoencoderKL(**vae_config()), scheduler_config=dict(SCHEDULER_CONFIG),
                      text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
                      tokenizer_2=tokenizer_2)


def save_components(components: Components, folder: str | Path) -> Path:
    """Write components in the diffusers folder layout with safetensors weights (SDXL's second text encoder
    and tokenizer too, when present)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    components.unet.save_pretrained(folder / "unet", safe_serialization=True)
    components.vae.save_pretrained(folder / "vae", safe_serialization=True)
    (folder / "scheduler").mkdir(exist_ok=True)
    config = {"_class_name": "DDIMScheduler", **components.scheduler_config}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
    if components.text_encoder is not None:
        components.text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
        components.tokenizer.save_pretrained(folder / "tokenizer")
    if components.text_encoder_2 is not None:
        components.text_encoder_2.save_pretrained(folder / "text_encoder_2", safe_serialization=True)
        components.tokenizer_2.save_pretrained(folder / "tokenizer_2")
    return folder
