"""MGIE architectures with random weights, for benchmarks: ``7b`` is the released MGIE's shape (LLaVA-7B
v1: LLaMA-7B with a CLIP ViT-L/14 tower at 224 px, 256 image tokens; the 77 x 768 edit head; the SD1.5
8-channel UNet with the SD VAE), ``test`` the tiny plumbing one. Latency does not depend on weight values;
the outputs of these models mean nothing."""
from __future__ import annotations

from typing import Any

import torch

from .edit_head import EditHead, EditHeadConfig

SIZES = ("test", "7b")
#: The vocabulary of the released MGIE: LLaMA's 32000 + 3 LLaVA tokens + 8 [IMG].
VOCAB_7B = 32011


def build(size: str, device: str, dtype: torch.dtype, seed: int = 0) -> dict[str, Any]:
    """``{"mllm", "edit_head", "emb", "components"}`` of random weights on ``device``."""
    from editkit.backend.architectures import random_components

    from . import tiny
    from .mllm import MLLM

    if size not in SIZES:
        raise ValueError(f"unknown MGIE architecture size '{size}' (known: {', '.join(SIZES)})")
    torch.manual_seed(seed)
    if size == "test":
        tok = tiny.tokenizer()
        with torch.device(device):
            model = tiny.llava(tok, "test", seed=seed)
        processor = tiny.image_processor(tiny.SIZES["test"]["image_size"])
        meta = tiny.tiny_meta(max_new_tokens=12)
        comps = random_components("test", in_channels=8, text=False, device=device, dtype=dtype, seed=seed)
    else:
        tok = _padded_tokenizer(VOCAB_7B)
        with torch.device(device):
            model = _llava_7b(tok)
        processor = tiny.image_processor(224)
        # The released checkpoint decodes up to 96 tokens with no repeated 3-grams.
        meta = {**tiny.tiny_meta(max_new_tokens=96), "no_repeat_ngram_size": 3}
        comps = random_components("sd15", in_channels=8, text=False, device=device, dtype=dtype, seed=seed)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    width = model.config.text_config.hidden_size
    out_dim = comps.unet.config.cross_attention_dim
    head_cfg = (EditHeadConfig(llm_dim=width, out_dim=out_dim) if size == "7b"
                else tiny.edit_head_config(width, out_dim, "test"))
    with torch.device(device):
        head = EditHead(head_cfg)
    head = head.to(device=device, dtype=dtype).eval().requires_grad_(False)
    mllm = MLLM(model, tok, processor, meta)
    return {"mllm": mllm, "edit_head": head, "emb": mllm.emb().detach().clone(), "components": comps}


def _padded_tokenizer(vocab: int):
    """The EditWorld word tokenizer with filler words, so the embedding matrix has the released size and the
    [IMG] tokens are its last rows (as in mgie_7b/mllm.pt)."""
    from editkit import editworld

    from . import tiny

    words = list(editworld.vocabulary())
    base = len(tiny.tokenizer(words))
    return tiny.tokenizer(words + [f"w{i:05d}" for i in range(vocab - base)])


def _llava_7b(tok):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048,
                       rms_norm_eps=1e-6, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         image_seq_length=256, projector_hidden_act="gelu", vision_feature_layer=-2,
                         vision_feature_select_strategy="default", tie_word_embeddings=False)
    return LlavaForConditionalGeneration(config)
