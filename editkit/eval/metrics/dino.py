"""DINO similarity with a timm ViT and local weights.

``dino`` = cos(CLS feature of output, of target) (MagicBrush / MGIE / ImagenHub, DINO ViT-S/16);
``dino_source`` = cos(CLS feature of output, of source) (Emu Edit's DINO input-edit, preservation).
Preprocessing as MagicBrush: bicubic resize of the short side to 256, centre crop 224, ImageNet
mean/std (both scaled with ``DinoSettings.image_size``). Without ``DinoSettings.checkpoint`` the
metrics are skipped with a note (timm would otherwise download weights).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InvalidInputError
from .base import DinoSettings, Metric, register_metric
from ...weights import load_into
from .learned import IMAGENET_MEAN, IMAGENET_STD, cosine, embed_cached, normalise_rows, preprocess


class DinoEmbedder:
    kind = "dino"

    @staticmethod
    def unavailable(settings: DinoSettings) -> str | None:
        if not settings.checkpoint:
            return "needs local timm ViT weights (--dino-checkpoint PATH, metrics.dino.checkpoint); nothing is downloaded"
        return None

    def __init__(self, settings: DinoSettings, device: str = "cpu"):
        import timm
        import torch

        self.settings, self.device = settings, device
        try:
            model = timm.create_model(settings.model, pretrained=False, num_classes=0, **settings.model_kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"DINO model '{settings.model}': {' '.join(str(exc).split())}") from None
        load_into(model, str(settings.checkpoint), f"DINO model '{settings.model}'", ignore=("head.", "fc_norm."))
        self.model = model.eval().to(device)
        self.resize = settings.resize or round(settings.image_size * 256 / 224)
        self._torch = torch

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        step = self.settings.batch_size
        with torch.inference_mode():
            for k in range(0, len(images), step):
                x = preprocess(images[k:k + step], self.settings.image_size, IMAGENET_MEAN, IMAGENET_STD,
                               crop=True, resize=self.resize).to(self.device)
                out.append(self.model(x).float().cpu().numpy())
        return normalise_rows(np.concatenate(out))

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"backbone_model": s.model, "checkpoint": s.checkpoint, "model_kwargs": s.model_kwargs,
                "preprocess": f"bicubic resize short side {self.resize}, centre crop {s.image_size}, ImageNet mean/std"}


class _DinoMetric(Metric):
    backbone = "dino"
    higher_is_better = True
    reference = "target"

    def config(self) -> dict[str, Any]:
        return self.backbones.get("dino").describe()

    def compute(self, batch, indices):
        dino = self.backbones.get("dino")
        refs = batch.targets if self.reference == "target" else batch.sources
        out = embed_cached(batch, "dino:output", indices, lambda i: batch.outputs[i], dino.encode_images)
        ref = embed_cached(batch, f"dino:{self.reference}", indices, lambda i: refs[i], dino.encode_images)
        return [cosine(out[i], ref[i]) for i in indices]


@register_metric
class Dino(_DinoMetric):
    name, needs, family = "dino", frozenset({"target"}), "target"
    description = "cos(DINO CLS feature of output, of target) (MagicBrush DINO)"


@register_metric
class DinoSource(_DinoMetric):
    name, family, reference = "dino_source", "preservation", "source"
    description = "cos(DINO CLS feature of output, of source) (Emu Edit's DINO input-edit)"
