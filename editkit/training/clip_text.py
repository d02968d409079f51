"""Export the text tower of an open_clip CLIP as a transformers ``CLIPTextModel`` + ``CLIPTokenizer``.

This is how Stable Diffusion is built: a frozen, pretrained CLIP text encoder whose token states condition
the UNet. For the tiny EditWorld weights the pretrained CLIP is the one ``editkit train clip`` makes, so
the ip2p recipe can condition its UNet on text states that already separate colours, shapes and
positions instead of learning a text encoder from scratch beside the UNet.

The open_clip tower (token and positional embeddings, pre-LN residual blocks with a fused QKV projection,
GELU MLPs, causal mask, final LayerNorm) maps one to one onto ``CLIPTextModel``; the tokenizer files
(vocab.json, merges.txt) are written from open_clip's own BPE table, and padding uses id 0 as open_clip
does. ``check_export`` compares the token states of both implementations.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch


def write_tokenizer(folder: Path, context: int):
    """CLIPTokenizer files from open_clip's ``bpe_simple_vocab_16e6.txt.gz``; returns the loaded tokenizer."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    merges = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = merges[1: 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!",
                        model_max_length=context)
    tok.save_pretrained(folder)
    return tok


def map_resblocks(state: dict, src_prefix: str, dst_prefix: str, layers: int) -> dict:
    """open_clip residual blocks (fused ``in_proj`` QKV, ``ln_1``/``ln_2``, ``mlp.c_fc``/``c_proj``) under
    ``src_prefix`` as the keys of a transformers CLIP encoder under ``dst_prefix``."""
    mapped = {}
    pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(layers):
        src, dst = f"{src_prefix}{i}.", f"{dst_prefix}{i}."
        qkv_w, qkv_b = state[src + "attn.in_proj_weight"].chunk(3), state[src + "attn.in_proj_bias"].chunk(3)
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w, qkv_b):
            mapped[f"{dst}self_attn.{name}.weight"], mapped[f"{dst}self_attn.{name}.bias"] = w, b
        for a, b in pairs.items():
            mapped[f"{dst}{b}.weight"], mapped[f"{dst}{b}.bias"] = state[f"{src}{a}.weight"], state[f"{src}{a}.bias"]
    return mapped


def export_text_encoder(clip_folder: str | Path, out: str | Path):
    """Write ``out/text_encoder`` (CLIPTextModel, safetensors) and ``out/tokenizer``; returns (model, tokenizer)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..backend.clip import CONFIG_NAME, WEIGHTS_NAME, model_config
    from ..weights import load_state_dict

    clip_folder, out = Path(clip_folder), Path(out)
    cfg = model_config(clip_folder / CONFIG_NAME)["text_cfg"]
    state = {k: v.float() for k, v in load_state_dict(clip_folder / WEIGHTS_NAME).items()}
    width, layers = int(cfg["width"]), int(cfg["layers"])
    config = CLIPTextConfig(
        vocab_size=int(cfg.get("vocab_size", 49408)), hidden_size=width, intermediate_size=int(width * cfg.get("mlp_ratio", 4.0)),
        num_hidden_layers=layers, num_attention_heads=int(cfg.get("heads", 8)),
        max_position_embeddings=int(cfg.get("context_length", 77)), hidden_act="gelu", layer_norm_eps=1e-5,
        pad_token_id=0, bos_token_id=49406, eos_token_id=49407,
    )
    model = CLIPTextModel(config)
    mapped = {
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "text_model.final_layer_norm.weight": state["ln_final.weight"],
        "text_model.final_layer_norm.bias": state["ln_final.bias"],
    }
    mapped.update(map_resblocks(state, "transformer.resblocks.", "text_model.encoder.layers.", layers))
    if not any(k.startswith("text_model.") for k in model.state_dict()):  # transformers versions differ
        mapped = {k[len("text_model."):]: v for k, v in mapped.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"text tower export: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval().requires_grad_(False)
    model.save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer = write_tokenizer(out / "tokenizer", config.max_position_embeddings)
    return model, tokenizer


@torch.no_grad()
def check_export(clip_folder: str | Path, model, tokenizer, texts: list[str]) -> float:
    """Largest |difference| between open_clip's and the exported model's final token states."""
    from ..backend.clip import CONFIG_NAME, WEIGHTS_NAME, load_clip

    clip = load_clip(str(Path(clip_folder) / CONFIG_NAME), str(Path(clip_folder) / WEIGHTS_NAME))
    ids_oc = clip.tokenizer(texts)
    ids_hf = tokenizer(texts, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                       return_tensors="pt").input_ids
    if not torch.equal(ids_oc, ids_hf):
        raise RuntimeError("tokenizers disagree")
    m = clip.model
    x = m.token_embedding(ids_oc) + m.positional_embedding
    x = m.transformer(x, attn_mask=m.attn_mask)
    x = m.ln_final(x)
    return float((x - model(ids_hf)[0]).abs().max())
