"""open_clip models with local weights, shared by guides (CLIP guidance and ranking) and evaluation.

A CLIP is named by ``model``: ``"editworld"`` (the committed tiny EditWorld CLIP), an open_clip
model name such as ``"ViT-B-16"``, or the path of an open_clip model-config JSON (a custom size, as
the EditWorld CLIP is). Weights come only from a local file (safetensors or a weights-only torch
checkpoint); nothing is downloaded. Every model uses open_clip's own BPE tokenizer, which ships with
the package, so texts are tokenised identically at training and at inference.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from ..weights import load_into

EDITWORLD_CLIP = Path(__file__).resolve().parent.parent / "assets" / "editworld-clip"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


@dataclass
class ClipModel:
    """An open_clip model with its tokenizer and image preprocessing constants."""

    model: Any
    tokenizer: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> CLIP input: resized (differentiably) to the model size, normalised."""
        x = (pixels + 1) / 2
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=not x.requires_grad)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of images in [-1, 1]; differentiable (no inference mode here)."""
        emb = self.model.encode_image(self.normalise(pixels).to(self.dtype))
        return F.normalize(emb.float(), dim=-1)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def model_config(spec: Path) -> dict[str, Any]:
    """The open_clip ``CLIP(**cfg)`` arguments stored in a model-config JSON (``model_cfg`` key optional)."""
    if not spec.is_file():
        raise InvalidInputError(f"CLIP model config {spec}: no such file")
    try:
        cfg = json.loads(spec.read_text())
    except ValueError as exc:
        raise InvalidInputError(f"CLIP model config {spec}: invalid JSON: {exc}") from None
    return cfg.get("model_cfg", cfg)


def build_clip(model: str) -> tuple[Any, Any]:
    """An open_clip model with random weights and its tokenizer (``model``: name or config JSON)."""
    import open_clip

    spec = Path(model)
    if spec.suffix == ".json":
        cfg = model_config(spec)
        try:
            clip = open_clip.CLIP(**cfg)
        except TypeError as exc:
            raise InvalidInputError(f"CLIP model config {spec}: {exc}") from None
        context = int(cfg.get("text_cfg", {}).get("context_length", 77))
        return clip, open_clip.SimpleTokenizer(context_length=context)
    if model not in open_clip.list_models():
        raise InvalidInputError(f"unknown open_clip model '{model}' (a name from open_clip.list_models(), "
                                "a model-config .json, or 'editworld')")
    return open_clip.create_model(model, pretrained=None), open_clip.get_tokenizer(model)


def resolve(model: str, checkpoint: str | None) -> tuple[str, str | None]:
    """Map ``"editworld"`` to the committed config and weights; other specs pass through."""
    if model == "editworld":
        return str(EDITWORLD_CLIP / CONFIG_NAME), checkpoint or str(EDITWORLD_CLIP / WEIGHTS_NAME)
    return model, checkpoint


def load_clip(model: str, checkpoint: str | None, *, pretrained: str | None = None, device: str = "cpu",
              dtype: torch.dtype = torch.float32) -> ClipModel:
    """Build ``model`` with local ``checkpoint`` weights, or with an open_clip ``pretrained`` tag (e.g.
    ``"openai"``; open_clip fetches it into the Hugging Face cache, so it needs the network once).
    Random CLIP weights are never used silently: one of the two is required."""
    model, checkpoint = resolve(model, checkpoint)
    if pretrained and not checkpoint:
        clip, tokenizer = _pretrained(model, pretrained)
    elif not checkpoint:
        raise InvalidInputError(f"CLIP model '{model}' needs local weights (a .safetensors or weights-only .pt "
                                "file) or an open_clip pretrained tag; nothing is downloaded otherwise")
    else:
        clip, tokenizer = build_clip(model)
        load_into(clip, checkpoint, f"CLIP model '{model}'")
    clip = clip.to(device=device, dtype=dtype).eval().requires_grad_(False)
    size = clip.visual.image_size
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean = tuple(getattr(clip.visual, "image_mean", None) or OPENAI_DATASET_MEAN)
    std = tuple(getattr(clip.visual, "image_std", None) or OPENAI_DATASET_STD)
    return ClipModel(clip, tokenizer, int(size[0] if isinstance(size, (tuple, list)) else size), mean, std, model)


def _pretrained(model: str, tag: str) -> tuple[Any, Any]:
    import open_clip

    try:
        return open_clip.create_model(model, pretrained=tag), open_clip.get_tokenizer(model)
    except Exception as exc:  # unknown tag, offline hub, corrupt download
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InvalidInputError(f"CLIP model '{model}' with pretrained '{tag}' cannot be loaded: {msg}") from None
