"""Tiny random any2pix weights folders for plumbing tests (never a demo) and as the starting point of training."""
from __future__ import annotations

from pathlib import Path

import torch

from editkit.backend.components import Components

from .encoders import AudioSettings, ImageBindEncoder
from .grammar import SPECIAL_TOKENS
from .language import VICUNA_V1, mlp
from .prior import PriorConfig, RefinementPrior

TINY_AUDIO = AudioSettings(clips=1, clip_seconds=1.0, mel_bins=64, target_len=96)


def imagebind_kwargs(dim: int = 32) -> dict:
    """Every modality tower with one block of width ``dim``; 28x28 patches on 224 images (8x8 tokens)."""
    small = dict(num_blocks=1, num_heads=2)
    kw = dict(video_frames=2, kernel_size=(2, 28, 28), out_embed_dim=dim, audio_kernel_size=16, audio_stride=10,
              audio_num_mel_bins=TINY_AUDIO.mel_bins, audio_target_len=TINY_AUDIO.target_len, audio_drop_path=0.0,
              imu_drop_path=0.0)
    for m in ("vision", "audio", "text", "depth", "thermal", "imu"):
        kw[f"{m}_embed_dim"] = dim
        kw.update({f"{m}_{k}": v for k, v in small.items()})
    return kw


def tokenizer(words: list[str] | None = None):
    from editkit import editworld
    from editkit.backend.tiny import word_tokenizer

    from .language import REFERENCE

    import re

    vocab = list(words if words is not None else editworld.vocabulary())
    vocab += re.findall(r"[a-z]+|[^\w\s]", REFERENCE.sub(" ", VICUNA_V1.replace("{instruction}", "")).lower())
    tok = word_tokenizer(vocab + ["best", "quality", "high", ",", "[", "]"], max_length=256)
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tok


def script_answer(lm, tok, transitions: dict[str, str]) -> None:
    """Make a random LLM deterministic: with attention and MLP outputs zeroed, the last hidden state is the
    normalised embedding of the current token, and the LM head maps each ``transitions`` source token to its
    target (the rest of the logits stay small). Plumbing only: the answer is fixed, not learned."""
    ids = {t: tok.convert_tokens_to_ids(t) for pair in transitions.items() for t in pair}
    with torch.no_grad():
        for layer in lm.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = lm.get_input_embeddings().weight
        emb.normal_(0.0, 1.0)
        head = lm.get_output_embeddings().weight
        head.zero_()
        for src, dst in transitions.items():
            head[ids[dst]] += 10.0 * emb[ids[src]] / emb[ids[src]].norm()


def build_folder(folder: str | Path, seed: int = 0, dim: int = 32, llm_width: int = 64,
                 scripted: bool = True, components: Components | None = None) -> Path:
    """Random weights; with ``scripted`` the LLM always answers ``<base> <im_gen> <video>`` then stops.
    ``components``: the diffusion pipeline stored in the folder (default: ``tiny_components(seed, in_channels=4)``;
    e.g. ``tiny_sdxl_components(seed)`` for an SDXL pipeline); the IP-Adapter is made for its UNet."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from editkit.backend.tiny import tiny_components

    from . import layout

    torch.manual_seed(seed)
    encoder = ImageBindEncoder(imagebind_kwargs(dim), image_size=224, audio=TINY_AUDIO)
    tok = tokenizer()
    lm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=llm_width, intermediate_size=2 * llm_width, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False))
    if scripted:
        script_answer(lm, tok, {":": "<base>", "<base>": "<im_gen>", "<im_gen>": "<video>", "<video>": tok.eos_token})
    comps = tiny_components(seed, in_channels=4) if components is None else components
    return layout.save(
        folder, encoder=encoder, lm=lm, tokenizer=tok, in_projector=mlp(dim, llm_width, llm_width),
        out_projector=mlp(llm_width, llm_width, dim), prior=RefinementPrior(PriorConfig(embed_dim=dim, width=32,
                                                                                        layers=1, heads=2)),
        adapter=layout.random_adapter(comps.unet, dim, seed), components=comps, audio=TINY_AUDIO, image_size=224,
        llm_meta={"prompt_prefix": "", "negative_prompt": ""},
    )
