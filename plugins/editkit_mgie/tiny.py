"""Tiny MGIE models: the word tokenizer with [IMG] tokens, a tiny LLaVA, an image processor, and
random plumbing weights (``build_random``) for tests and the guide contract (never a demo)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .prompt import NUM_IMG_TOKENS, img_tokens

IMAGE_TOKEN = "<image>"
#: Words of the "simple" template and of MGIE's question, added to the EditWorld vocabulary.
PROMPT_WORDS = ["user", "assistant", ":", "'", ".", "what", "will", "this", "image", "be", "like", "if"]

SIZES: dict[str, dict[str, int]] = {
    # plumbing tests: as small as transformers allows
    "test": dict(image_size=32, patch_size=8, vision_width=32, vision_layers=2, vision_heads=2,
                 llm_width=32, llm_layers=2, llm_heads=2, head_width=32, head_ff=64, queries=8),
    # the EditWorld model (64x64 images, 8x8 patches: 64 image tokens)
    "editworld": dict(image_size=64, patch_size=8, vision_width=64, vision_layers=3, vision_heads=4,
                      llm_width=128, llm_layers=4, llm_heads=4, head_width=128, head_ff=512, queries=32),
}


def tokenizer(words: list[str] | None = None, n_img: int = NUM_IMG_TOKENS):
    """``editkit.backend.tiny.word_tokenizer`` over the EditWorld vocabulary + prompt words, then
    ``<image>`` and ``[IMG0]``..``[IMG{n-1}]`` appended (so the [IMG] tokens are the last ids)."""
    from tokenizers import AddedToken, Regex, pre_tokenizers

    from editkit import editworld
    from editkit.backend.tiny import word_tokenizer

    tok = word_tokenizer(list(words if words is not None else editworld.vocabulary()) + PROMPT_WORDS,
                         max_length=512)
    # Split punctuation and [markers] off words (a plain-string Split pattern would match literally).
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"\[\w+\]|[^\w\s]"), behavior="isolated")]
    )
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in img_tokens(n_img)], special_tokens=True)
    tok.padding_side = "left"
    return tok


def image_processor(image_size: int, mean: list[float] | None = None, std: list[float] | None = None):
    """CLIP-style preprocessing at the tiny tower's resolution (resize short side, centre-crop, then
    ``(x - mean) / std``; default mean = std = 0.5, i.e. [-1, 1]; a pretrained tower passes its own)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(mean or [0.5] * 3), image_std=list(std or [0.5] * 3), resample=3, do_convert_rgb=True,
    )


def llava(tok, size: str | dict[str, int] = "test", seed: int = 0, vision: dict[str, Any] | None = None,
          vision_feature_layer: int = -1):
    """A tiny ``LlavaForConditionalGeneration`` (CLIP vision tower + LLaMA) for ``tok``.

    ``vision``: ``CLIPVisionConfig`` arguments of a pretrained tower to use instead of the size's own
    (e.g. ``editkit.training.clip_vision.vision_tower_config``); LLaVA reads such a tower's penultimate
    layer (``vision_feature_layer=-2``)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    s = SIZES[size] if isinstance(size, str) else size
    vision = CLIPVisionConfig(**(vision or dict(
        hidden_size=s["vision_width"], intermediate_size=4 * s["vision_width"], num_hidden_layers=s["vision_layers"],
        num_attention_heads=s["vision_heads"], image_size=s["image_size"], patch_size=s["patch_size"],
    )))
    n_patches = (vision.image_size // vision.patch_size) ** 2
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=s["llm_width"], intermediate_size=4 * s["llm_width"],
        num_hidden_layers=s["llm_layers"], num_attention_heads=s["llm_heads"], num_key_value_heads=s["llm_heads"],
        max_position_embeddings=n_patches + 96, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=False, rms_norm_eps=1e-6,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=n_patches, projector_hidden_act="gelu", vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(config)


def edit_head_config(llm_width: int, out_dim: int, size: str | dict[str, int] = "test", queries: int | None = None):
    from .edit_head import EditHeadConfig

    s = SIZES[size] if isinstance(size, str) else size
    return EditHeadConfig(llm_dim=llm_width, hidden=s["head_width"], num_queries=queries or s["queries"],
                          out_dim=out_dim, nhead=4, encoder_layers=4, decoder_layers=4, ff=s["head_ff"])


def tiny_meta(n_img: int = NUM_IMG_TOKENS, max_new_tokens: int = 32) -> dict[str, Any]:
    """The ``llm`` section of mgie_config.json for tiny models."""
    return {"template": "simple", "image_token": IMAGE_TOKEN, "im_start": "", "im_end": "", "num_img_tokens": n_img,
            "max_new_tokens": max_new_tokens,
            # EditWorld rewrites repeat 3-grams of the instruction in the prompt ("on the right").
            "no_repeat_ngram_size": 0}


def build_random(folder: str | Path, seed: int = 0, max_new_tokens: int = 12) -> Path:
    """Random tiny MGIE weights in the editkit layout: PLUMBING ONLY (tests, guide contract)."""
    from editkit.backend.tiny import tiny_components

    from .edit_head import EditHead
    from .layout import save

    tok = tokenizer()
    model = llava(tok, "test", seed=seed)
    comps = tiny_components(seed, text=False)
    head = EditHead(edit_head_config(model.config.text_config.hidden_size, comps.unet.config.cross_attention_dim))
    return save(folder, model=model, tokenizer=tok, image_processor=image_processor(SIZES["test"]["image_size"]),
                edit_head=head, emb=model.get_input_embeddings().weight[-NUM_IMG_TOKENS:].detach(),
                meta=tiny_meta(max_new_tokens=max_new_tokens), components=comps,
                note="random tiny weights for plumbing tests; not a model")
