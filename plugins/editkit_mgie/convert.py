"""Official MGIE release -> transformers ``LlavaForConditionalGeneration`` (+ edit head, + UNet).

Key mapping of the LLaVA-v1 checkpoint (haotian-liu/LLaVA@7ace501 ``llava/model/llava.py``, which
apple/ml-mgie copies) to transformers 5.x, checked against ``model.state_dict().keys()`` in the tests:

==============================================  =====================================================
LLaVA-v1 / MGIE key                             transformers key
==============================================  =====================================================
model.embed_tokens.weight                       model.language_model.embed_tokens.weight
model.layers.{i}.<rest>                         model.language_model.layers.{i}.<rest>
model.norm.weight                               model.language_model.norm.weight
lm_head.weight                                  lm_head.weight
model.mm_projector.{weight,bias}                model.multi_modal_projector.linear_1.{weight,bias}
(none)                                          model.multi_modal_projector.linear_2 = identity, bias 0
                                                (with projector_hidden_act="linear": exactly v1's one Linear)
CLIP ViT-L/14 (separate checkpoint)             model.vision_tower.<CLIPVisionModel key>
model.layers.{i}.self_attn.rotary_emb.inv_freq  dropped (recomputed buffer)
model.vision_tower.*                            dropped (the reference ignores them too)
edit_head.* (mllm.pt)                           edit head (edit_head.safetensors), names unchanged
emb (mllm.pt, released file only)               emb; when absent: embed_tokens.weight[-8:]
==============================================  =====================================================

``mllm.pt`` (embed_tokens, lm_head with the 8 [IMG] rows, edit head) overrides the LLaVA weights,
as the reference's ``load_state_dict(strict=False)`` after ``resize_token_embeddings`` does.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from editkit.errors import GuideLoadError, first_line

from .edit_head import EditHead, EditHeadConfig
from .prompt import NUM_IMG_TOKENS, img_tokens

LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "hidden_act", "rms_norm_eps", "pad_token_id", "bos_token_id",
                "eos_token_id", "rope_theta", "initializer_range")

_RULES: list[tuple[str, str, str]] = [  # (regex, kind, replacement)
    (r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$", "drop", ""),
    (r"^model\.vision_tower\..*$", "drop", ""),
    (r"^(?:model\.)?edit_head\.(.+)$", "edit_head", r"\1"),
    (r"^model\.embed_tokens\.weight$", "llm", "model.language_model.embed_tokens.weight"),
    (r"^model\.layers\.(.+)$", "llm", r"model.language_model.layers.\1"),
    (r"^model\.norm\.weight$", "llm", "model.language_model.norm.weight"),
    (r"^lm_head\.weight$", "llm", "lm_head.weight"),
    (r"^model\.mm_projector\.(weight|bias)$", "llm", r"model.multi_modal_projector.linear_1.\1"),
    (r"^emb$", "emb", "emb"),
]


def map_key(key: str) -> tuple[str, str]:
    """``(kind, new_key)`` for one LLaVA-v1 / MGIE key; kind is llm, edit_head, emb, drop or unknown."""
    for pattern, kind, repl in _RULES:
        if re.match(pattern, key):
            return kind, re.sub(pattern, repl, key) if repl else ""
    return "unknown", ""


@dataclass
class MappedState:
    llm: dict[str, torch.Tensor] = field(default_factory=dict)
    edit_head: dict[str, torch.Tensor] = field(default_factory=dict)
    emb: torch.Tensor | None = None
    dropped: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def map_state_dict(*state_dicts: dict[str, torch.Tensor], identity_projector: bool = True) -> MappedState:
    """Map LLaVA-v1 / MGIE state dicts (later ones override earlier ones, e.g. the LLaVA shards then mllm.pt).

    With ``identity_projector`` a ``linear_2`` identity (zero bias) is added so the transformers
    two-layer projector with ``projector_hidden_act="linear"`` equals LLaVA-v1's single Linear.
    """
    out = MappedState()
    for sd in state_dicts:
        for key, value in sd.items():
            kind, new = map_key(key)
            if kind == "llm":
                out.llm[new] = value
            elif kind == "edit_head":
                out.edit_head[new] = value
            elif kind == "emb":
                out.emb = value
            elif kind == "drop":
                out.dropped.append(key)
            else:
                out.unknown.append(key)
    w = out.llm.get("model.multi_modal_projector.linear_1.weight")
    if identity_projector and w is not None:
        out.llm["model.multi_modal_projector.linear_2.weight"] = torch.eye(w.shape[0], dtype=w.dtype)
        out.llm["model.multi_modal_projector.linear_2.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
    return out


def read_llava_weights(llava_dir: Path) -> dict[str, torch.Tensor]:
    """All shards of a LLaVA-v1 folder (``pytorch_model*.bin`` or ``*.safetensors``), weights-only."""
    from editkit.weights import checkpoint_shards, load_state_dict

    files = checkpoint_shards(llava_dir)
    if not files:
        raise GuideLoadError(f"guide 'mgie': no weights in '{llava_dir}' (pytorch_model*.bin or *.safetensors)")
    sd: dict[str, torch.Tensor] = {}
    for path in files:
        sd.update(load_state_dict(path))
    return sd


def llama_config(llava_config: dict[str, Any], vocab_size: int):
    from transformers import LlamaConfig

    fields = {k: llava_config[k] for k in LLAMA_FIELDS if k in llava_config}
    fields["vocab_size"] = vocab_size
    fields["max_position_embeddings"] = llava_config.get("max_position_embeddings",
                                                         llava_config.get("max_sequence_length", 2048))
    return LlamaConfig(**fields, tie_word_embeddings=False)


def official_meta(llava_config: dict[str, Any]) -> dict[str, Any]:
    use_start_end = bool(llava_config.get("mm_use_im_start_end", True))
    return {"template": "llava_v1", "image_token": "<im_patch>", "im_start": "<im_start>" if use_start_end else "",
            "im_end": "<im_end>" if use_start_end else "", "num_img_tokens": NUM_IMG_TOKENS,
            "max_new_tokens": 96, "no_repeat_ngram_size": 3}


@dataclass
class Converted:
    model: Any
    tokenizer: Any
    image_processor: Any
    edit_head: EditHead
    emb: torch.Tensor
    meta: dict[str, Any]
    unet_file: Path
    pipeline: str
    report: dict[str, Any]

    def loaded(self, device: str):
        from .layout import Loaded
        from .mllm import MLLM

        mllm = MLLM(self.model.to(device).requires_grad_(False), self.tokenizer, self.image_processor, self.meta)
        p = next(self.model.parameters())
        head = self.edit_head.to(device=device, dtype=p.dtype).eval().requires_grad_(False)
        config = {"llm": self.meta, "edit_head": head.config.to_dict(), "source": "official"}
        return Loaded(mllm=mllm, edit_head=head, emb=self.emb.to(device, p.dtype), pipeline=self.pipeline,
                      unet=str(self.unet_file), config=config)

    def write(self, out: str | Path) -> Path:
        """Write the editkit layout (safetensors); the UNet is saved with the shell's UNet config."""
        from .layout import diffusion_loader, save

        comps = diffusion_loader(str(self.unet_file))(self.pipeline)
        dtype = next(self.model.parameters()).dtype
        return save(out, model=self.model, tokenizer=self.tokenizer, image_processor=self.image_processor,
                    edit_head=self.edit_head, emb=self.emb, meta=self.meta, unet=comps.unet.to(dtype),
                    pipeline=self.pipeline, note="converted from the official apple/ml-mgie release (CC-BY-NC)",
                    extra={"conversion": self.report})


def convert_official(llava_dir: str | Path, mgie_dir: str | Path, *, vision_tower: str = "openai/clip-vit-large-patch14",
                     pipeline: str = "timbrooks/instruct-pix2pix", dtype: torch.dtype = torch.float16) -> Converted:
    """Build the transformers LLaVA + edit head from ``LLaVA-7B-v1/`` (merged) and ``mgie_7b/mllm.pt``."""
    from transformers import (AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, LlavaConfig,
                              LlavaForConditionalGeneration)

    from editkit.weights import load_state_dict

    llava_dir, mgie_dir = Path(llava_dir), Path(mgie_dir)
    unet_file = mgie_dir / "unet.pt"
    if not unet_file.is_file():
        raise GuideLoadError(f"guide 'mgie': '{unet_file}' is missing")
    cfg = json.loads((llava_dir / "config.json").read_text())
    try:
        tokenizer = AutoTokenizer.from_pretrained(llava_dir)
        image_processor = CLIPImageProcessor.from_pretrained(vision_tower)
        vision = CLIPVisionModel.from_pretrained(vision_tower, dtype=dtype)
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise GuideLoadError(f"guide 'mgie': cannot load the tokenizer or vision tower: {first}") from None
    tokenizer.add_tokens(img_tokens(), special_tokens=True)
    tokenizer.padding_side = "left"
    mllm_sd = load_state_dict(mgie_dir / "mllm.pt")
    mapped = map_state_dict(read_llava_weights(llava_dir), mllm_sd)
    if mapped.unknown:
        raise GuideLoadError(f"guide 'mgie': unexpected checkpoint keys {mapped.unknown[:5]}")
    if not mapped.edit_head:
        raise GuideLoadError(f"guide 'mgie': '{mgie_dir / 'mllm.pt'}' has no edit_head.* weights")
    embed = mapped.llm["model.language_model.embed_tokens.weight"]
    ids = tokenizer.convert_tokens_to_ids(img_tokens())
    rows = embed.shape[0]
    if len(tokenizer) != rows or list(ids) != list(range(rows - NUM_IMG_TOKENS, rows)):
        raise GuideLoadError(f"guide 'mgie': the tokenizer ({len(tokenizer)} tokens, [IMG0] = {ids[0]}) does not "
                             f"match the embedding matrix ({rows} rows, [IMG] rows last)")
    vcfg = vision.config
    config = LlavaConfig(
        vision_config=vcfg.to_dict(), text_config=llama_config(cfg, rows).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<im_patch>"),
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2, projector_hidden_act="linear",
        vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)), vision_feature_select_strategy="default",
        tie_word_embeddings=False, multimodal_projector_bias=True,
    )
    config.vision_config.model_type = "clip_vision_model"
    sd = dict(mapped.llm)
    sd.update({f"model.vision_tower.{k}": v for k, v in vision.state_dict().items()})
    sd = {k: v.to(dtype) for k, v in sd.items()}
    model, info = LlavaForConditionalGeneration.from_pretrained(None, config=config, state_dict=sd, dtype=dtype,
                                                                output_loading_info=True)
    if info.get("missing_keys"):
        raise GuideLoadError(f"guide 'mgie': weights missing after conversion: {sorted(info['missing_keys'])[:5]}")
    head = EditHead(EditHeadConfig.from_state_dict(mapped.edit_head))
    head.load_state_dict(mapped.edit_head)
    head = head.to(dtype)
    emb_source = "mllm.pt 'emb'" if mapped.emb is not None else "embed_tokens.weight[-8:] (no 'emb' key)"
    emb = (mapped.emb if mapped.emb is not None else embed[-NUM_IMG_TOKENS:]).reshape(NUM_IMG_TOKENS, -1).to(dtype)
    report = {"llava": str(llava_dir), "mgie": str(mgie_dir), "vision_tower": vision_tower, "pipeline": pipeline,
              "mapped_keys": len(mapped.llm), "dropped_keys": len(mapped.dropped), "emb": emb_source,
              "img_token_ids": list(ids)}
    return Converted(model=model.eval(), tokenizer=tokenizer, image_processor=image_processor, edit_head=head.eval(),
                     emb=emb, meta=official_meta(cfg), unet_file=unet_file, pipeline=pipeline, report=report)
