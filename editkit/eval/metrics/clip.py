"""CLIP metrics with open_clip and local weights: CLIP-I, CLIP-T, CLIP direction, CLIP image.

All embeddings are L2-normalised before use, as in MagicBrush and InstructPix2Pix:

* ``clip_i`` = cos(E_img(output), E_img(target))  (MagicBrush CLIP-I, MGIE CVS);
* ``clip_t`` = cos(E_img(output), E_txt(target caption))  (MagicBrush CLIP-T, raw cosine);
* ``clip_direction`` = cos(E_img(output) - E_img(source), E_txt(target caption) - E_txt(source caption))
  (InstructPix2Pix ``sim_direction``; 0 when the output embeds exactly like the source);
* ``clip_image`` = cos(E_img(source), E_img(output))  (InstructPix2Pix ``sim_image``, preservation);
* ``piebench_clip_whole`` / ``piebench_clip_edited``: PIE-Bench's CLIPScore, max(100 cos, 0), of the
  target prompt against the whole output / the output multiplied by the edit mask (border forced).

The backbone is ``ClipSettings.model`` (an open_clip name, or an open_clip model-config JSON for a
custom model) with weights from ``ClipSettings.checkpoint``: there are no pretrained weights offline,
so without a checkpoint these metrics are skipped with a note.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import ClipSettings, Metric, MetricBatch, register_metric
from .learned import cosine, embed_cached, normalise_rows, preprocess


def direction_similarity(img_source: np.ndarray, img_output: np.ndarray, txt_source: np.ndarray,
                         txt_target: np.ndarray) -> float:
    """cos(img_output - img_source, txt_target - txt_source) of normalised embeddings."""
    n = normalise_rows
    return cosine(n(img_output) - n(img_source), n(txt_target) - n(txt_source))


class ClipEmbedder:
    """An open_clip model with local weights that embeds uint8 images and strings (normalised, numpy)."""

    kind = "clip"

    @staticmethod
    def unavailable(settings: ClipSettings) -> str | None:
        if not settings.checkpoint and settings.model != "editworld":
            return ("needs local open_clip weights (--clip-checkpoint PATH, metrics.clip.checkpoint); "
                    "nothing is downloaded")
        return None

    def __init__(self, settings: ClipSettings, device: str = "cpu"):
        import torch

        from ...backend.clip import load_clip

        self.settings, self.device = settings, device
        clip = load_clip(settings.model, settings.checkpoint, device=device)
        self.model, self.tokenizer = clip.model, clip.tokenizer
        self.image_size, self.mean, self.std = clip.image_size, clip.mean, clip.std
        self._torch = torch

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        step = self.settings.batch_size
        with torch.inference_mode():
            for k in range(0, len(images), step):
                x = preprocess(images[k:k + step], self.image_size, self.mean, self.std,
                               crop=self.settings.preprocess == "crop").to(self.device)
                out.append(self.model.encode_image(x).float().cpu().numpy())
        return normalise_rows(np.concatenate(out))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return normalise_rows(self.model.encode_text(tokens).float().cpu().numpy())

    def describe(self) -> dict[str, Any]:
        s = self.settings
        crop = "resize short side + centre crop" if s.preprocess == "crop" else "squash resize, no crop"
        return {"backbone_model": s.model, "checkpoint": s.checkpoint, "image_size": self.image_size,
                "preprocess": f"bicubic {crop} to {self.image_size}, CLIP mean/std"}


class _ClipMetric(Metric):
    backbone = "clip"
    family = "instruction"

    @property
    def clip(self) -> ClipEmbedder:
        return self.backbones.get("clip")

    def config(self) -> dict[str, Any]:
        return self.clip.describe()

    def images(self, batch: MetricBatch, which: str, indices: list[int]) -> dict[int, np.ndarray]:
        arrays = {"output": batch.outputs, "source": batch.sources, "target": batch.targets}[which]
        return embed_cached(batch, f"clip:{which}", indices, lambda i: arrays[i], self.clip.encode_images)

    def texts(self, batch: MetricBatch, field: str, indices: list[int]) -> dict[int, np.ndarray]:
        return embed_cached(batch, f"clip:{field}", indices, lambda i: getattr(batch.samples[i], field),
                            self.clip.encode_texts)


@register_metric
class ClipI(_ClipMetric):
    name, needs, higher_is_better, family = "clip_i", frozenset({"target"}), True, "target"
    description = "cos(CLIP image embedding of output, of target) (MagicBrush CLIP-I, MGIE CVS)"

    def compute(self, batch, indices):
        out, tgt = self.images(batch, "output", indices), self.images(batch, "target", indices)
        return [cosine(out[i], tgt[i]) for i in indices]


@register_metric
class ClipT(_ClipMetric):
    name, needs, higher_is_better = "clip_t", frozenset({"target_caption"}), True
    description = "cos(CLIP image embedding of output, text embedding of the target caption) (MagicBrush CLIP-T)"

    def compute(self, batch, indices):
        out, txt = self.images(batch, "output", indices), self.texts(batch, "target_caption", indices)
        return [cosine(out[i], txt[i]) for i in indices]


@register_metric
class ClipDirection(_ClipMetric):
    name, higher_is_better = "clip_direction", True
    needs = frozenset({"source_caption", "target_caption"})
    description = ("cos(E_img(output) - E_img(source), E_txt(target caption) - E_txt(source caption)) "
                   "(InstructPix2Pix directional similarity)")

    def compute(self, batch, indices):
        out, src = self.images(batch, "output", indices), self.images(batch, "source", indices)
        t_src, t_tgt = self.texts(batch, "source_caption", indices), self.texts(batch, "target_caption", indices)
        return [direction_similarity(src[i], out[i], t_src[i], t_tgt[i]) for i in indices]


@register_metric
class ClipImage(_ClipMetric):
    name, higher_is_better, family = "clip_image", True, "preservation"
    description = "cos(CLIP image embedding of source, of output) (InstructPix2Pix image similarity)"

    def compute(self, batch, indices):
        out, src = self.images(batch, "output", indices), self.images(batch, "source", indices)
        return [cosine(src[i], out[i]) for i in indices]


@register_metric
class PieBenchClipWhole(_ClipMetric):
    name, needs, higher_is_better, family = "piebench_clip_whole", frozenset({"target_caption"}), True, "piebench"
    default = False
    description = "PIE-Bench-compatible CLIPScore max(100 cos, 0) of the target prompt vs the whole output"

    def compute(self, batch, indices):
        out, txt = self.images(batch, "output", indices), self.texts(batch, "target_caption", indices)
        return [max(100.0 * cosine(out[i], txt[i]), 0.0) for i in indices]


@register_metric
class PieBenchClipEdited(_ClipMetric):
    name, higher_is_better, family = "piebench_clip_edited", True, "piebench"
    needs = frozenset({"target_caption", "mask"})
    default = False
    description = "PIE-Bench-compatible CLIPScore of the target prompt vs the output x edit mask (border forced)"

    def compute(self, batch, indices):
        from ..datasets.piebench import force_border

        edited = {i: batch.outputs[i] * force_border(batch.masks[i])[..., None].astype(np.uint8) for i in indices}
        emb = embed_cached(batch, "clip:output_edited", indices, lambda i: edited[i], self.clip.encode_images)
        txt = self.texts(batch, "target_caption", indices)
        return [max(100.0 * cosine(emb[i], txt[i]), 0.0) for i in indices]
