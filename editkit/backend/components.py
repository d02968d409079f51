"""Loading the diffusion components (UNet, VAE, text encoder, tokenizer, scheduler config).

Sources: a local folder in the diffusers layout (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``; safetensors weights; SDXL folders also ``text_encoder_2/`` and ``tokenizer_2/``),
a hub id (needs network or a filled cache), or the built-in name ``"editworld"`` for the committed tiny
weights trained on EditWorld.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GuideLoadError, first_line

#: Folder of the committed tiny EditWorld weights (diffusers layout).
EDITWORLD_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "editworld-tiny"

BUILTIN_SOURCES = {"editworld": EDITWORLD_WEIGHTS}

#: Optional file of a weights folder: the sampling settings its trainers measured as best (e.g. guidance
#: scales), used by guides whose corresponding option is left unset (None).
SAMPLING_FILE = "editkit_sampling.json"


def resolve_source(source: str | Path) -> str:
    """Map a built-in name to its folder; keep local paths and hub ids as they are."""
    if isinstance(source, Path):
        return str(source)
    if source in BUILTIN_SOURCES:
        return str(BUILTIN_SOURCES[source])
    return source


@dataclass
class Components:
    unet: Any
    vae: Any
    scheduler_config: dict[str, Any]
    text_encoder: Any = None
    tokenizer: Any = None
    #: SDXL's second text encoder (``CLIPTextModelWithProjection``) and its tokenizer; None elsewhere.
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _load(cls, source: str, subfolder: str, **kwargs):
    try:
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        first = first_line(exc)
        first = first.split(". ")[0].rstrip(".")
        raise GuideLoadError(f"cannot load {subfolder} from '{source}': {first}") from None


def load_components(source: str | Path, *, text: bool = True, unet_subfolder: str = "unet") -> Components:
    """Load all components from a diffusers-layout folder or hub id (safetensors only)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    src = resolve_source(source)
    local = Path(src).expanduser()
    if source in BUILTIN_SOURCES and not local.is_dir():
        raise GuideLoadError(f"the built-in '{source}' weights are missing at {local} (see docs/training.md)")
    if str(src).startswith(("/", "./", "../", "~")) and not local.exists():
        raise GuideLoadError(f"weights folder '{src}' does not exist")
    if local.exists() and not local.is_dir():
        raise GuideLoadError(f"'{src}' is a file; expected a folder in the diffusers layout or a hub id")
    if local.is_dir() and not (local / unet_subfolder).is_dir():
        raise GuideLoadError(f"'{src}' has no '{unet_subfolder}/' folder (expected the diffusers layout)")
    unet = _load(UNet2DConditionModel, src, unet_subfolder, use_safetensors=True)
    vae = _load(AutoencoderKL, src, "vae", use_safetensors=True)
    scheduler_config = _scheduler_config(src)
    return Components(unet=unet, vae=vae, scheduler_config=scheduler_config,
                      extra={"sampling": sampling_defaults(src)}, **(load_text_encoders(src) if text else {}))


def load_text_encoders(src: str) -> dict[str, Any]:
    """``text_encoder`` and ``tokenizer`` of a diffusers folder or hub id, plus ``text_encoder_2`` and
    ``tokenizer_2`` for SDXL: keyword arguments of :class:`Components`."""
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    out = {"text_encoder": _load(CLIPTextModel, src, "text_encoder", use_safetensors=True),
           "tokenizer": _load(AutoTokenizer, src, "tokenizer")}
    if _has_second_text_encoder(src):
        out.update(text_encoder_2=_load(CLIPTextModelWithProjection, src, "text_encoder_2", use_safetensors=True),
                   tokenizer_2=_load(AutoTokenizer, src, "tokenizer_2"))
    return out


def _has_second_text_encoder(src: str) -> bool:
    """An SDXL source: a folder with ``text_encoder_2/`` and ``tokenizer_2/``, or a hub id whose
    ``model_index.json`` lists both (an unreadable index counts as no)."""
    names = ("text_encoder_2", "tokenizer_2")
    local = Path(src).expanduser()
    if local.is_dir():
        return all((local / name).is_dir() for name in names)
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(src)
    except (OSError, ValueError):
        return False
    return all(isinstance(index.get(name), list) and None not in index[name] for name in names)


def sampling_settings(data: dict[str, Any], where: str = "the weights' sampling record") -> dict[str, Any]:
    """The settings of a recommended-sampling record, without its ``_``-prefixed notes (``_measured``).
    ``"guides": {name: {...}}`` holds what one guide should use instead (e.g. blended's own image scale on the
    shared ip2p weights). A recommended ``steps`` or ``scheduler`` that no guide could run is a
    :class:`GuideLoadError` naming ``where``."""
    settings = _one_record(data, where)
    guides = settings.get("guides")
    if guides is not None:
        if not isinstance(guides, dict) or not all(isinstance(v, dict) for v in guides.values()):
            raise GuideLoadError(f"{where}: 'guides' must map guide names to their own recommended settings, "
                                 f"got {guides!r}")
        settings["guides"] = {name: _one_record({k: v for k, v in own.items() if k != "guides"},
                                                f"{where}, guide '{name}'") for name, own in guides.items()}
    return settings


def _one_record(data: dict[str, Any], where: str) -> dict[str, Any]:
    """One record's settings without its notes, its ``steps`` and ``scheduler`` checked."""
    from .schedulers import SCHEDULERS

    settings = {k: v for k, v in data.items() if not k.startswith("_")}
    steps = settings.get("steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000):
        raise GuideLoadError(f"{where}: recommended 'steps' must be an integer from 1 to 1000, got {steps!r}")
    if "scheduler" in settings and settings["scheduler"] not in SCHEDULERS:
        raise GuideLoadError(f"{where}: recommended 'scheduler' {settings['scheduler']!r} is not one of "
                             f"{', '.join(SCHEDULERS)}")
    return settings


def sampling_defaults(src: str | Path) -> dict[str, Any]:
    """The folder's recommended sampling settings (``editkit_sampling.json``), or {} (hub ids, older folders)."""
    path = Path(src) / SAMPLING_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GuideLoadError(f"cannot read {path}: {exc}") from None
    return sampling_settings(data, str(path))


def _scheduler_config(src: str) -> dict[str, Any]:
    local = Path(src) / "scheduler" / "scheduler_config.json"
    if local.is_file():
        return json.loads(local.read_text())
    from diffusers import DDIMScheduler

    try:
        return dict(DDIMScheduler.load_config(src, subfolder="scheduler"))
    except (OSError, ValueError) as exc:
        raise GuideLoadError(f"cannot load the scheduler config from '{src}': {exc}") from None


def text_to_image_unet(unet):
    """A 4-channel text-to-image UNet from an 8-channel InstructPix2Pix UNet: ``conv_in`` keeps the noisy-latent
    channels. Exactly the ip2p UNet fed zero source latents (its image-dropout null, which zeroes any coordinate
    channels too), since ``conv_in`` is linear."""
    from diffusers import UNet2DConditionModel

    if unet.config.in_channels == 4:
        return unet
    if unet.config.in_channels not in (8, 10):
        raise GuideLoadError(f"expected a UNet with 4, 8 or 10 (8 + coordinates) input channels, "
                             f"got {unet.config.in_channels}")
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    out = UNet2DConditionModel(**{**config, "in_channels": 4})
    state = unet.state_dict()
    state["conv_in.weight"] = state["conv_in.weight"][:, :4].clone()
    out.load_state_dict(state)
    return out.to(dtype=unet.dtype).eval()
