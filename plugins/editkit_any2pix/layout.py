"""The editkit any2pix weights folder: writing it, loading it, and tiny random folders for tests.

Layout::

    any2pix_config.json      {"format": "editkit-any2pix", "imagebind": {...}, "llm": {...}, "projectors": {...},
                              "prior": {...}, "diffusion": {"pipeline": "."}, "norm": 20}
    imagebind.safetensors    ImageBindModel state dict (the imagebind package's key names)
    llm/                     transformers causal LM + tokenizer (with the grammar's special tokens)
    projectors.safetensors   in_projector.{0,2}.* (ImageBind -> LLM), out_projector.{0,2}.* (LLM -> ImageBind)
    prior.safetensors        the refinement prior: editkit's own (prior.py), or with "prior": {"kind": "reference",
                             ...} the released InstructAny2Pix prior (reference_prior.py, ``editkit convert any2pix``)
    ip_adapter.safetensors   image_proj.* and ip_adapter.{k}.to_{k,v}_ip.weight (diffusers' IP-Adapter format)
    unet/ vae/ scheduler/ text_encoder/ tokenizer/   the diffusion pipeline when "pipeline" is "." (else a
                                                     folder relative to this one, e.g. "../editworld-tiny",
                                                     an absolute folder or a hub id holding them)

An 8-channel InstructPix2Pix UNet in the pipeline is used as the text-to-image UNet it contains (zero source
latents, :func:`editkit.backend.components.text_to_image_unet`), so an adapter trained on a frozen ip2p UNet
needs no second copy of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import editkit
from editkit.errors import GuideLoadError
from editkit.weights import stored

from .encoders import AudioSettings, ImageBindEncoder
from .language import VICUNA_V1, Any2PixLLM, mlp
from .prior import PriorConfig, RefinementPrior

if TYPE_CHECKING:  # pragma: no cover
    from .reference_prior import ReferencePrior

CONFIG_FILE = "any2pix_config.json"
FORMAT = "editkit-any2pix"
EDITWORLD_ANY2PIX = Path(editkit.__file__).resolve().parent / "assets" / "editworld-tiny-any2pix"


@dataclass
class Loaded:
    encoder: ImageBindEncoder
    llm: Any2PixLLM
    prior: "RefinementPrior | ReferencePrior"
    adapter: dict[str, dict[str, torch.Tensor]]
    pipeline: str
    config: dict[str, Any]


def resolve(model: str) -> Path:
    if model == "editworld":
        if not (EDITWORLD_ANY2PIX / CONFIG_FILE).is_file():
            raise GuideLoadError("guide 'any2pix': the tiny EditWorld weights are not trained yet (no "
                                 f"{EDITWORLD_ANY2PIX.name}/ in editkit/assets); pass model=FOLDER with an "
                                 "editkit any2pix weights folder")
        return EDITWORLD_ANY2PIX
    folder = Path(model)
    if not (folder / CONFIG_FILE).is_file():
        raise GuideLoadError(f"guide 'any2pix': '{model}' is not an editkit any2pix weights folder (no {CONFIG_FILE})")
    return folder


def load(model: str, device: str = "cpu", dtype: torch.dtype = torch.float32, quantize: str = "none") -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from editkit.weights import load_into, load_state_dict

    folder = resolve(model)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    if cfg.get("format") != FORMAT:
        raise GuideLoadError(f"guide 'any2pix': {folder / CONFIG_FILE} is not in the {FORMAT} format")
    encoder = ImageBindEncoder.from_files(cfg["imagebind"], str(folder / "imagebind.safetensors"),
                                          "guide 'any2pix': ImageBind")
    tokenizer = AutoTokenizer.from_pretrained(folder / "llm")
    from editkit.quantization import quantized_kwargs

    lm = AutoModelForCausalLM.from_pretrained(folder / "llm", dtype=dtype,
                                              **quantized_kwargs(quantize, dtype, device, ["lm_head"]))
    proj = cfg["projectors"]
    d, w = proj["embed_dim"], proj["llm_width"]
    in_projector, out_projector = mlp(d, w, w), mlp(w, w, d)
    state = load_state_dict(folder / "projectors.safetensors")
    in_projector.load_state_dict({k[len("in_projector."):]: v for k, v in state.items() if k.startswith("in_projector.")})
    out_projector.load_state_dict({k[len("out_projector."):]: v for k, v in state.items()
                                   if k.startswith("out_projector.")})
    prior = build_prior(cfg["prior"])
    load_into(prior, str(folder / "prior.safetensors"), "guide 'any2pix': refinement prior")
    flat = {k: v.to(dtype) for k, v in load_state_dict(folder / "ip_adapter.safetensors").items()}
    adapter = {"image_proj": {k[len("image_proj."):]: v for k, v in flat.items() if k.startswith("image_proj.")},
               "ip_adapter": {k[len("ip_adapter."):]: v for k, v in flat.items() if k.startswith("ip_adapter.")}}
    llm = Any2PixLLM(lm if quantize != "none" else lm.to(device), tokenizer, in_projector.to(device, dtype), out_projector.to(device, dtype),
                     cfg["llm"].get("template", VICUNA_V1))
    encoder.model.to(device)
    return Loaded(encoder, llm, prior.to(device).eval(), adapter, pipeline_source(folder, cfg), cfg)


def build_prior(config: dict[str, Any]) -> "RefinementPrior | ReferencePrior":
    """editkit's own prior, or the released InstructAny2Pix one for ``"kind": "reference"`` (absent: editkit's)."""
    settings = dict(config)
    kind = settings.pop("kind", "editkit")
    if kind == "reference":
        from .reference_prior import ReferencePrior, ReferencePriorConfig

        return ReferencePrior(ReferencePriorConfig(**settings))
    if kind != "editkit":
        raise GuideLoadError(f"guide 'any2pix': unknown prior kind {kind!r} in {CONFIG_FILE} (editkit or reference)")
    return RefinementPrior(PriorConfig(**settings))


def pipeline_source(folder: Path, cfg: dict[str, Any]) -> str:
    """Where the diffusion pipeline lives: "." = this folder, "../x" or "./x" = relative to it (the committed
    tiny weights share the ip2p folder's UNet, VAE and text encoder), else a folder or hub id."""
    pipeline = cfg["diffusion"].get("pipeline", ".")
    if pipeline == ".":
        return str(folder)
    if pipeline.startswith(("./", "../")):
        return str((folder / pipeline).resolve())
    return pipeline


def attach_adapter(unet, adapter: dict[str, dict[str, torch.Tensor]], scale: float) -> None:
    """Give a diffusers UNet IP-Adapter image tokens (decoupled cross-attention) through diffusers' own loader."""
    unet._load_ip_adapter_weights([adapter], low_cpu_mem_usage=False)
    set_adapter_scale(unet, scale)


def set_adapter_scale(unet, scale: float) -> None:
    for proc in unet.attn_processors.values():
        if hasattr(proc, "scale") and isinstance(proc.scale, list):
            proc.scale = [scale] * len(proc.scale)


def random_adapter(unet, embed_dim: int, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """A random IP-Adapter state dict in diffusers' format for ``unet`` (4 image tokens)."""
    g = torch.Generator().manual_seed(seed)
    c = unet.config.cross_attention_dim
    image_proj = {"proj.weight": torch.randn(4 * c, embed_dim, generator=g) * 0.02, "proj.bias": torch.zeros(4 * c),
                  "norm.weight": torch.ones(c), "norm.bias": torch.zeros(c)}
    ip, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            block = name.split(".")
            if block[0] == "mid_block":
                hidden = unet.config.block_out_channels[-1]
            elif block[0] == "up_blocks":
                hidden = list(reversed(unet.config.block_out_channels))[int(block[1])]
            else:
                hidden = unet.config.block_out_channels[int(block[1])]
            ip[f"{key}.to_k_ip.weight"] = torch.randn(hidden, c, generator=g) * 0.02
            ip[f"{key}.to_v_ip.weight"] = torch.randn(hidden, c, generator=g) * 0.02
            key += 2
    return {"image_proj": image_proj, "ip_adapter": ip}


def save(folder: str | Path, *, encoder: ImageBindEncoder, lm, tokenizer, in_projector, out_projector,
         prior: RefinementPrior, adapter: dict, components=None, pipeline: str = ".", audio: AudioSettings,
         image_size: int, llm_meta: dict | None = None, norm: float = 20.0,
         storage_dtype: torch.dtype = torch.float32, text_vocabulary: list[str] | None = None) -> Path:
    """Write an any2pix folder. ``storage_dtype`` float16 halves the files of small trained models (they load
    back in the guide's dtype); ``text_vocabulary`` stores ImageBind compactly (:meth:`ImageBindEncoder.compact_state`)."""
    from dataclasses import asdict

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def tensors(module, prefix=""):
        return {prefix + k: stored(v, storage_dtype) for k, v in module.state_dict().items()}

    save_file(encoder.compact_state(text_vocabulary, storage_dtype) if text_vocabulary is not None
              else tensors(encoder.model), str(folder / "imagebind.safetensors"))
    if storage_dtype != torch.float32:
        import copy

        lm = copy.deepcopy(lm).to(storage_dtype)
    lm.save_pretrained(folder / "llm", safe_serialization=True)
    tokenizer.save_pretrained(folder / "llm")
    save_file({**tensors(in_projector, "in_projector."), **tensors(out_projector, "out_projector.")},
              str(folder / "projectors.safetensors"))
    save_file(tensors(prior), str(folder / "prior.safetensors"))
    save_file({f"{part}.{k}": stored(v, storage_dtype) for part in ("image_proj", "ip_adapter") for k, v in adapter[part].items()},
              str(folder / "ip_adapter.safetensors"))
    if components is not None:
        from editkit.backend.tiny import save_components

        save_components(components, folder)
    w = in_projector[0].out_features
    config = {
        "format": FORMAT,
        "imagebind": {"model": encoder.model_kwargs, "image_size": image_size, "audio": asdict(audio)},
        "llm": {"template": VICUNA_V1, **(llm_meta or {})},
        "projectors": {"embed_dim": in_projector[0].in_features, "llm_width": w},
        "prior": prior.config.to_dict(),
        "diffusion": {"pipeline": pipeline},
        "norm": norm,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder
