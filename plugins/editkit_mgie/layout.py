"""The editkit MGIE weights folder: writing it, finding it, and loading it.

Layout (written by ``editkit train mgie`` and ``editkit convert mgie``)::

    mgie_config.json        {"format": "editkit-mgie", "llm": {...}, "edit_head": {...}, "diffusion": {...}}
    llm/                    LlavaForConditionalGeneration (safetensors) + tokenizer + preprocessor_config.json
    edit_head.safetensors   edit_head.* (reference key names) and emb (the [IMG] input embeddings)
    unet/                   diffusers UNet2DConditionModel (8 input channels)
    vae/, scheduler/        only when diffusion.pipeline is "." (self-contained tiny models); otherwise the
                            VAE and scheduler come from the InstructPix2Pix shell named there
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import editkit
from editkit.errors import GuideLoadError, first_line

from .edit_head import EditHead, EditHeadConfig

CONFIG_FILE = "mgie_config.json"
FORMAT = "editkit-mgie"
#: The committed tiny EditWorld MGIE (``model="editworld"``).
EDITWORLD_MGIE = Path(editkit.__file__).resolve().parent / "assets" / "editworld-tiny-mgie"


@dataclass
class Loaded:
    mllm: Any  # MLLM
    edit_head: EditHead
    emb: torch.Tensor  # (n_img, llm_dim)
    pipeline: str  # source of VAE + scheduler (+ UNet config): folder or hub id
    unet: str  # diffusers UNet folder, or a state-dict file (official unet.pt)
    config: dict[str, Any]


def save(folder: str | Path, *, model, tokenizer, image_processor, edit_head: EditHead, emb: torch.Tensor,
         meta: dict[str, Any], components=None, unet=None, pipeline: str = ".", note: str = "",
         extra: dict[str, Any] | None = None, storage_dtype: torch.dtype = torch.float32) -> Path:
    """Write the layout. ``components`` (UNet, VAE, scheduler) makes it self-contained; otherwise give
    ``unet`` and the ``pipeline`` shell its VAE and scheduler come from. ``storage_dtype`` float16 halves the
    LLM and edit-head files (they load back in the guide's dtype); the UNet is written as it is."""
    import copy

    from safetensors.torch import save_file

    from editkit.weights import stored

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (copy.deepcopy(model).to(storage_dtype) if storage_dtype != model.dtype else model).save_pretrained(
        folder / "llm", safe_serialization=True)
    tokenizer.save_pretrained(folder / "llm")
    image_processor.save_pretrained(folder / "llm")
    tensors = {f"edit_head.{k}": stored(v, storage_dtype) for k, v in edit_head.state_dict().items()}
    tensors["emb"] = stored(emb.reshape(-1, emb.shape[-1]), storage_dtype)
    save_file(tensors, str(folder / "edit_head.safetensors"))
    if components is not None:
        from editkit.backend.tiny import save_components

        components.text_encoder = None
        save_components(components, folder)
        pipeline = "."
    elif unet is not None:
        unet.save_pretrained(folder / "unet", safe_serialization=True)
    config = {"format": FORMAT, "version": 1, "llm": meta, "edit_head": edit_head.config.to_dict(),
              "diffusion": {"pipeline": pipeline, "unet": "unet"}, "note": note, **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def official_parts(path: Path) -> tuple[Path, Path] | None:
    """``(llava_dir, mgie_dir)`` when ``path`` is the official release (``_ckpt/`` with ``LLaVA-7B-v1/``
    and ``mgie_7b/``, or the ``mgie_7b/`` folder itself next to ``LLaVA-7B-v1/``)."""
    for mgie_dir, llava_dir in ((path / "mgie_7b", path / "LLaVA-7B-v1"), (path, path.parent / "LLaVA-7B-v1")):
        if (mgie_dir / "mllm.pt").is_file() and (llava_dir / "config.json").is_file():
            return llava_dir, mgie_dir
    return None


def resolve(model: str) -> Path:
    """``"editworld"`` -> the committed folder; a local folder; or a hub id (downloaded / from the cache)."""
    if model == "editworld":
        if not (EDITWORLD_MGIE / CONFIG_FILE).is_file():
            raise GuideLoadError(
                f"guide 'mgie': the tiny EditWorld MGIE weights are not in {EDITWORLD_MGIE} yet; train them "
                "with 'editkit train mgie' (see docs/guides/mgie.md) or pass model=FOLDER")
        return EDITWORLD_MGIE
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GuideLoadError(f"guide 'mgie': '{model}' is a file; expected an MGIE weights folder")
        return path
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model))
        except Exception as exc:  # offline, unknown repo, no access
            first = first_line(exc)
            raise GuideLoadError(f"guide 'mgie': model '{model}': no such folder, and not available from the "
                                 f"hub ({first})") from None
    raise GuideLoadError(f"guide 'mgie': model '{model}': no such folder")


def load(model: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32, quantize: str = "none",
         vision_tower: str = "openai/clip-vit-large-patch14", pipeline: str | None = None) -> Loaded:
    """Load an MGIE from the editkit layout, or from the official release (converted in memory)."""
    path = resolve(model)
    if (path / CONFIG_FILE).is_file():
        loaded = _load_editkit(path, device, dtype, quantize)
    elif official_parts(path) is not None:
        if quantize != "none":
            raise GuideLoadError("guide 'mgie': option 'quantize': convert the official release first "
                                 "('editkit convert mgie'), then load the converted folder")
        from .convert import convert_official

        llava_dir, mgie_dir = official_parts(path)  # type: ignore[misc]
        conv = convert_official(llava_dir, mgie_dir, vision_tower=vision_tower, pipeline=pipeline or
                                "timbrooks/instruct-pix2pix", dtype=dtype)
        loaded = conv.loaded(device)
    else:
        raise GuideLoadError(
            f"guide 'mgie': '{path}' holds neither {CONFIG_FILE} (editkit layout) nor the official release "
            "(LLaVA-7B-v1/ and mgie_7b/mllm.pt)")
    if pipeline:
        loaded.pipeline = pipeline
    return loaded


def _load_editkit(path: Path, device: str, dtype: torch.dtype, quantize: str) -> Loaded:
    from transformers import AutoImageProcessor, AutoTokenizer, LlavaForConditionalGeneration

    from editkit.weights import load_state_dict

    from .mllm import MLLM

    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT:
        raise GuideLoadError(f"guide 'mgie': {path / CONFIG_FILE} is not an editkit MGIE config")
    from editkit.quantization import quantized_kwargs

    kwargs: dict[str, Any] = {"dtype": dtype, **quantized_kwargs(quantize, dtype, device,
                                                                 ["vision_tower", "multi_modal_projector", "lm_head"])}
    try:
        model = LlavaForConditionalGeneration.from_pretrained(path / "llm", use_safetensors=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path / "llm")
        image_processor = AutoImageProcessor.from_pretrained(path / "llm")
    except (OSError, ValueError) as exc:
        first = first_line(exc)
        raise GuideLoadError(f"guide 'mgie': cannot load the LLM from '{path / 'llm'}': {first}") from None
    if quantize == "none":
        model = model.to(device)
    tokenizer.padding_side = "left"
    sd = load_state_dict(path / "edit_head.safetensors")
    head_sd = {k[len("edit_head."):]: v for k, v in sd.items() if k.startswith("edit_head.")}
    head_cfg = EditHeadConfig.from_dict(config["edit_head"])
    head = EditHead(head_cfg)
    head.load_state_dict(head_sd)
    head = head.to(device=device, dtype=dtype).eval().requires_grad_(False)
    emb = sd["emb"] if "emb" in sd else model.get_input_embeddings().weight[-head_cfg.num_img_tokens:]
    mllm = MLLM(model.requires_grad_(False), tokenizer, image_processor, config["llm"])
    diffusion = config.get("diffusion", {})
    pipe = diffusion.get("pipeline", ".")
    pipeline = str(path) if pipe in (".", "", None) else (str(path / pipe) if (path / pipe).is_dir() else pipe)
    unet = str(path / diffusion.get("unet", "unet"))
    return Loaded(mllm=mllm, edit_head=head, emb=emb.detach().to(device, dtype).reshape(head_cfg.num_img_tokens, -1),
                  pipeline=pipeline, unet=unet, config=config)


def diffusion_loader(unet: str, sampling: dict[str, Any] | None = None, *, text: bool = False):
    """A ``BackendCache`` loader: VAE + scheduler (+ UNet config) from the shell, UNet weights from ``unet``
    (a diffusers folder, or a state-dict file swapped into the shell's UNet: the official ``unet.pt``).
    The shell's UNet weights are never read, and its text encoder is loaded only with ``text`` (the LGIE
    ablation). ``sampling`` (the checkpoint's recommended guidance, ``sampling`` in mgie_config.json) becomes
    the backend's recommendation."""
    def load_fn(src: str):
        from diffusers import AutoencoderKL, UNet2DConditionModel

        from editkit.backend.components import (Components, _load, _scheduler_config, load_text_encoders,
                                                sampling_settings)

        upath = Path(unet)
        if upath.is_dir():
            unet_model = _load(UNet2DConditionModel, str(upath.parent), upath.name, use_safetensors=True)
        else:
            from editkit.weights import load_state_dict

            try:
                cfg = UNet2DConditionModel.load_config(src, subfolder="unet")
            except (OSError, ValueError) as exc:
                first = first_line(exc)
                raise GuideLoadError(f"guide 'mgie': cannot load the UNet config of '{src}': {first}") from None
            sd = load_state_dict(upath)
            sd = {k[len("unet."):] if k.startswith("unet.") else k: v for k, v in sd.items()}
            with torch.device("meta"):
                unet_model = UNet2DConditionModel.from_config(cfg)
            missing, unexpected = unet_model.load_state_dict(sd, strict=False, assign=True)
            if missing or unexpected:
                raise GuideLoadError(f"guide 'mgie': '{upath}' does not fit the UNet of '{src}' "
                                     f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        vae = _load(AutoencoderKL, src, "vae", use_safetensors=None)  # the hub shell may only have .bin
        recommended = sampling_settings(sampling or {}, "guide 'mgie': 'sampling' in mgie_config.json")
        encoders = load_text_encoders(src) if text else {}
        return Components(unet=unet_model, vae=vae, scheduler_config=_scheduler_config(src),
                          extra={"sampling": recommended}, **encoders)

    return load_fn
