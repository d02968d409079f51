"""Official InstructAny2Pix release (``ckpts/``) -> an editkit any2pix folder, safetensors everywhere.

Key names from jacklishufan/InstructAny2Pix (``InstructAny2PixLMForCausalLM``, ``InstructAny2PixPrior``,
``ImageProjModel``), checked on tiny state dicts in tests/test_any2pix_convert.py:

=======================================================  ==============================================
release                                                  editkit any2pix folder
=======================================================  ==============================================
imagebind_huge.pth (the imagebind package's keys)        imagebind.safetensors, keys unchanged
LLM: model.embed_tokens / model.layers.* / model.norm,   llm/: a plain LlamaForCausalLM (model_type
lm_head                                                  "llama"), keys unchanged, written shard by shard
LLM: model.vae_projector_image.{0,2}.*                   projectors.safetensors in_projector.{0,2}.*
LLM: model.vae_predictor_image.{0,2}.*                   projectors.safetensors out_projector.{0,2}.*
LLM: model.vae_{projector,predictor}_audio, mm_projector,  dropped (the pipeline never runs them)
vision_tower, vae, rotary_emb.inv_freq
LLM tokenizer/ (must hold the grammar's tokens)          llm/ tokenizer
prior/model.bin                                          prior.safetensors (ReferencePrior), keys unchanged
prior: cond_stage_models.0.model.* (frozen CLIP-ViT-H    text_states: its last hidden states for "" (run
text encoder)                                            once here)
prior: model.h.*.attn.{bias,masked_bias}                 dropped (GPT-2 mask buffers of old transformers)
sdxl/ip_adapter_global_local_2_view.bin: image_proj.*    ip_adapter.safetensors image_proj.* with
                                                         raw_embed[0] folded into proj.bias
image_proj.raw_embed[1] (the local view)                 dropped (the pipeline uses mode 'global')
ip_adapter.{k}.to_{k,v}_ip.weight                        unchanged (diffusers reads them as they are)
=======================================================  ==============================================
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from editkit.errors import GuideLoadError, InvalidInputError, first_line
from editkit.weights import checkpoint_shards, load_state_dict, stored

from . import grammar
from .encoders import AudioSettings
from .guide import NEGATIVE_PROMPT, PROMPT_PREFIX, REFERENCE_SAMPLING
from .language import VICUNA_V1
from .layout import CONFIG_FILE, FORMAT
from .reference_prior import ReferencePrior, ReferencePriorConfig

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
PRIOR_TEXT_ENCODER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
#: ImageBindModel kwargs of the imagebind package's ``imagebind_huge``.
IMAGEBIND_HUGE = dict(vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16, text_embed_dim=1024,
                      text_num_blocks=24, text_num_heads=16, out_embed_dim=1024, audio_drop_path=0.1,
                      imu_drop_path=0.7)
#: The reference's ImageBind preprocessing (imagebind ``data.py``): 224 images, 3 clips of 2 s, 128 x 204 mels.
REFERENCE_IMAGEBIND = {"model": IMAGEBIND_HUGE, "image_size": 224, "audio": asdict(AudioSettings())}
REFERENCE_LLM = {"template": VICUNA_V1, "prompt_prefix": PROMPT_PREFIX, "negative_prompt": NEGATIVE_PROMPT}
LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                "attention_bias", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range")
RELEASE_FILES = ("imagebind_huge.pth", "prior/model.bin", "sdxl/ip_adapter_global_local_2_view.bin")
TEXT_ENCODER_PREFIX = "cond_stage_models.0.model."
IMAGE_PROJ_KEYS = {"proj.weight", "proj.bias", "norm.weight", "norm.bias", "raw_embed"}

_LLM_RULES: list[tuple[str, str, str]] = [  # (regex, kind, replacement)
    (r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$", "drop", ""),
    (r"^model\.(?:vision_tower|mm_projector|vae|vae_projector_audio|vae_predictor_audio)\..+$", "drop", ""),
    (r"^(?:model\.)?vae_projector_image\.([02])\.(weight|bias)$", "projector", r"in_projector.\1.\2"),
    (r"^(?:model\.)?vae_predictor_image\.([02])\.(weight|bias)$", "projector", r"out_projector.\1.\2"),
    (r"^(?:model\.(?:embed_tokens|layers|norm)\.|lm_head\.).+$", "llm", r"\g<0>"),
]


def map_llm_key(key: str) -> tuple[str, str]:
    """``(kind, new_key)`` for one key of the release's LLM; kind is llm, projector, drop or unknown."""
    for pattern, kind, repl in _LLM_RULES:
        if re.match(pattern, key):
            return kind, re.sub(pattern, repl, key) if repl else ""
    return "unknown", ""


def release_paths(ckpt: str | Path, llm: str = "llm-retrained") -> dict[str, Path]:
    """The release's files (``llm`` is relative to ``ckpt`` or absolute); anything missing is one error."""
    ckpt = Path(ckpt)
    paths = {name: ckpt / name for name in RELEASE_FILES}
    paths["llm"] = ckpt / llm
    missing = [name for name, p in paths.items() if name != "llm" and not p.is_file()]
    missing += [str(p) for p in (paths["llm"] / "config.json", paths["llm"] / "tokenizer") if not p.exists()]
    if missing:
        raise InvalidInputError(f"release folder '{ckpt}' lacks {', '.join(missing)}")
    return paths


def llm_shards(folder: Path) -> list[Path]:
    files = checkpoint_shards(folder)
    if not files:
        raise GuideLoadError(f"guide 'any2pix': no weights in '{folder}' (model*.safetensors or pytorch_model*.bin)")
    return files


def llama_config(release: dict[str, Any], dtype: torch.dtype) -> Any:
    """A plain LlamaConfig from the release's config.json (model_type "instructany2pix" or "llama")."""
    from transformers import LlamaConfig

    projector = release.get("mm_projector_type")
    if projector not in (None, "mlp2x_gelu"):
        raise GuideLoadError(f"guide 'any2pix': the LLM's projector type is {projector!r}; editkit reads mlp2x_gelu")
    config = LlamaConfig(**{k: release[k] for k in LLAMA_FIELDS if release.get(k) is not None},
                         tie_word_embeddings=False)
    config.architectures, config.dtype = ["LlamaForCausalLM"], dtype
    return config


def convert_llm(folder: Path, out: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Stream the release's LLM shards into ``out`` (safetensors shards + index + config + tokenizer); returns
    the projector tensors and a report. One release shard is in memory at a time."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaForCausalLM

    config = llama_config(json.loads((folder / "config.json").read_text()), dtype)
    with torch.device("meta"):
        expected = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise GuideLoadError(f"guide 'any2pix': cannot load the tokenizer in '{folder / 'tokenizer'}': {first}") from None
    check_tokens(tokenizer, config.vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    shards = llm_shards(folder)
    projectors: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    dropped, total = 0, 0
    for i, shard in enumerate(shards, 1):
        part: dict[str, torch.Tensor] = {}
        for key, value in load_state_dict(shard).items():
            kind, new = map_llm_key(key)
            if kind == "unknown":
                raise GuideLoadError(f"guide 'any2pix': unexpected key '{key}' in '{shard}'")
            if kind == "drop":
                dropped += 1
            elif kind == "projector":
                projectors[new] = stored(value, dtype)
            else:
                if new not in expected or value.shape != expected[new]:
                    raise GuideLoadError(f"guide 'any2pix': '{key}' {tuple(value.shape)} in '{shard}' does not fit a "
                                         f"LlamaForCausalLM of the release's config ({tuple(expected.get(new, ()))})")
                part[new] = stored(value, dtype)
        if not part:  # a shard of dropped / projector weights only
            continue
        name = "model.safetensors" if len(shards) == 1 else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.numel() * t.element_size() for t in part.values())
    missing = sorted(set(expected) - set(weight_map))
    if missing:
        raise GuideLoadError(f"guide 'any2pix': the LLM in '{folder}' lacks {len(missing)} weight(s), e.g. {missing[:3]}")
    if len(shards) > 1:
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return projectors, {"llm_keys": len(weight_map), "llm_dropped_keys": dropped, "llm_shards": len(shards)}


def check_tokens(tokenizer: Any, rows: int) -> None:
    """Every grammar token must be a token of the tokenizer with a row in the embedding matrix."""
    for token in grammar.SPECIAL_TOKENS:
        index = tokenizer.convert_tokens_to_ids(token)
        if index is None or index == tokenizer.unk_token_id or index >= rows:
            raise GuideLoadError(f"guide 'any2pix': the release's tokenizer has no token {token} within the LLM's "
                                 f"{rows} embedding rows")


def projector_sizes(projectors: dict[str, torch.Tensor]) -> dict[str, int]:
    names = [f"{p}.{i}.{w}" for p in ("in_projector", "out_projector") for i in (0, 2) for w in ("weight", "bias")]
    missing = [n for n in names if n not in projectors]
    if missing:
        raise GuideLoadError(f"guide 'any2pix': the LLM has no vae_projector_image / vae_predictor_image weights "
                             f"(missing {', '.join(missing[:3])})")
    embed, width = projectors["in_projector.0.weight"].shape[1], projectors["in_projector.0.weight"].shape[0]
    if projectors["out_projector.2.weight"].shape != (embed, width):
        raise GuideLoadError("guide 'any2pix': vae_predictor_image does not map the LLM width back to ImageBind's "
                             f"{embed} dimensions")
    return {"embed_dim": embed, "llm_width": width}


def empty_prompt_states(source: str, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The CLIP text encoder's last hidden states for "" (T, D), as the reference's ``CLIPTextModelHiddenState``:
    tokenizer and config from ``source``; the weights are ``weights`` (the release's own frozen copy, transformers
    4.x names) when given, else ``source``'s."""
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if weights:
            model, info = CLIPTextModel.from_pretrained(None, config=CLIPTextConfig.from_pretrained(source),
                                                        state_dict=weights, output_loading_info=True)
            if info.get("missing_keys") or info.get("mismatched_keys"):
                bad = sorted(info.get("missing_keys") or info["mismatched_keys"])[:3]
                raise GuideLoadError(f"guide 'any2pix': the prior's CLIP text weights do not fit '{source}': {bad}")
        else:
            model = CLIPTextModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise GuideLoadError(f"guide 'any2pix': cannot load the prior's text encoder '{source}': {first}") from None
    batch = tokenizer([""], padding=True, truncation=True, max_length=77, return_tensors="pt")
    if not bool(batch.attention_mask.all()):
        raise GuideLoadError(f"guide 'any2pix': the tokenizer of '{source}' pads the empty prompt")
    with torch.no_grad():
        out = model.float().eval()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    return out.last_hidden_state[0]


def convert_prior(path: Path, text_encoder: str) -> tuple[ReferencePrior, str]:
    """The release's prior as a :class:`ReferencePrior` (float32) and where its text states came from."""
    from editkit.weights import load_state_into

    state = load_state_dict(path)
    text = {k[len(TEXT_ENCODER_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(TEXT_ENCODER_PREFIX)}
    state = {k: v for k, v in state.items() if not re.match(r"^model\.h\.\d+\.attn\.(?:bias|masked_bias)$", k)}
    states = empty_prompt_states(text_encoder, text)
    try:
        config = ReferencePriorConfig.from_state_dict(state, text_tokens=states.shape[0])
    except KeyError as exc:
        raise GuideLoadError(f"guide 'any2pix': '{path}' is not an InstructAny2PixPrior state dict (no {exc})") from None
    prior = ReferencePrior(config)
    load_state_into(prior, {**state, "text_states": states}, "guide 'any2pix': refinement prior", str(path))
    where = (f"{TEXT_ENCODER_PREFIX}* in {path.name} (tokenizer and config: {text_encoder})" if text
             else text_encoder)
    return prior.eval(), where


def fold_ip_adapter(state: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The release's 2-view IP-Adapter in diffusers' format for mode 'global': LayerNorm(proj(x) + raw_embed[0])
    per token = LayerNorm(proj'(x)) with proj'.bias = proj.bias + raw_embed[0] on each of the tokens."""
    image_proj, ip = state.get("image_proj"), state.get("ip_adapter")
    if not isinstance(image_proj, dict) or not isinstance(ip, dict) or set(image_proj) != IMAGE_PROJ_KEYS:
        raise GuideLoadError(f"guide 'any2pix': the IP-Adapter is not the release's ImageProjModel format (image_proj "
                             f"keys {sorted(IMAGE_PROJ_KEYS)} + ip_adapter)")
    bad = [k for k in ip if not re.match(r"^\d+\.to_[kv]_ip\.weight$", k)]
    if bad:
        raise GuideLoadError(f"guide 'any2pix': unexpected IP-Adapter keys {bad[:3]}")
    width = image_proj["norm.weight"].shape[0]
    bias = image_proj["proj.bias"].float().view(-1, width) + image_proj["raw_embed"][0].float()
    folded = {k: v for k, v in image_proj.items() if k != "raw_embed"}
    folded["proj.bias"] = bias.reshape(-1)
    return {"image_proj": folded, "ip_adapter": dict(ip)}


def convert_official(ckpt: str | Path, out: str | Path, *, llm: str = "llm-retrained", pipeline: str = SDXL,
                     prior_text_encoder: str = PRIOR_TEXT_ENCODER,
                     dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Write the editkit any2pix folder ``out`` from the release folder ``ckpt``; returns the conversion report.
    One LLM shard of the release (or its ImageBind file) is in memory at a time."""
    from safetensors.torch import save_file

    paths = release_paths(ckpt, llm)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    projectors, report = convert_llm(paths["llm"], out / "llm", dtype)
    sizes = projector_sizes(projectors)
    save_file(projectors, str(out / "projectors.safetensors"))

    imagebind_state = load_state_dict(paths["imagebind_huge.pth"])
    head = imagebind_state.get("modality_heads.vision.2.weight")
    if head is None or head.shape[0] != sizes["embed_dim"]:
        raise GuideLoadError(f"guide 'any2pix': '{paths['imagebind_huge.pth']}' is not an ImageBind model with "
                             f"{sizes['embed_dim']}-d embeddings (the projectors' input)")
    for key in list(imagebind_state):  # cast in place: one full copy at a time
        imagebind_state[key] = stored(imagebind_state[key], dtype)
    save_file(imagebind_state, str(out / "imagebind.safetensors"))
    del imagebind_state

    prior, text_source = convert_prior(paths["prior/model.bin"], prior_text_encoder)
    if prior.config.width != sizes["embed_dim"]:
        raise GuideLoadError(f"guide 'any2pix': the prior is {prior.config.width}-d, the projectors "
                             f"{sizes['embed_dim']}-d")
    save_file({k: stored(v, dtype) for k, v in prior.state_dict().items()}, str(out / "prior.safetensors"))

    adapter = fold_ip_adapter(load_state_dict(paths["sdxl/ip_adapter_global_local_2_view.bin"]))
    save_file({f"{part}.{k}": stored(v, dtype) for part, tensors in adapter.items() for k, v in tensors.items()},
              str(out / "ip_adapter.safetensors"))
    report.update({
        "ckpt": str(ckpt), "llm": str(paths["llm"]), "dtype": str(dtype).removeprefix("torch."),
        "prior_text_states": text_source,
        "ip_adapter": "raw_embed[0] (global view) folded into image_proj.proj.bias; raw_embed[1] (local view) dropped",
    })
    config = {
        "format": FORMAT,
        "note": "converted from the official InstructAny2Pix release (jacklishufan/InstructAny2Pix; ImageBind "
                "weights CC BY-NC-SA 4.0)",
        "imagebind": REFERENCE_IMAGEBIND,
        "llm": REFERENCE_LLM,
        "projectors": sizes,
        "prior": prior.config.to_dict(),
        "diffusion": {"pipeline": pipeline},
        "norm": 20.0,
        "sampling": REFERENCE_SAMPLING,
        "conversion": report,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return report
