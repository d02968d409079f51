"""LPIPS, only where its weights are available locally.

The ``lpips`` package ships the linear heads but downloads the ImageNet backbone (AlexNet, VGG or
SqueezeNet from torchvision) at first use, which fails offline. editkit therefore builds
``lpips.LPIPS(net=NET, pnet_rand=True, spatial=True)`` (heads from the package) and loads the backbone
from ``LpipsSettings.checkpoint``, a local torchvision state dict (``features.*`` keys). Without the
package or the checkpoint, the LPIPS metrics are skipped with a note.

``lpips`` = spatial mean of the LPIPS map, output vs target (inputs mapped to [-1, 1]);
``lpips_background`` = the LPIPS map, output vs source, averaged over the unedited region (editkit's
masked convention: the spatial map averaged over the selected pixels).
"""
from __future__ import annotations

import importlib.util
from typing import Any, Iterable

import numpy as np

from ...errors import InvalidInputError
from .base import LpipsSettings, Metric, register_metric


def backbone_key_map(lpips_names: Iterable[str]) -> dict[str, str]:
    """LPIPS backbone parameter names (``slice<k>.<i>.<param>``) -> torchvision names (``features.<i>.<param>``).

    lpips splits torchvision's ``features`` Sequential into slices that keep the original indices.
    """
    out = {}
    for name in lpips_names:
        head, _, rest = name.partition(".")
        if head.startswith("slice") and rest:
            out[name] = f"features.{rest}"
    return out


class LpipsModel:
    kind = "lpips"

    @staticmethod
    def unavailable(settings: LpipsSettings) -> str | None:
        if importlib.util.find_spec("lpips") is None:
            return "the 'lpips' package is not installed (it also needs local backbone weights, --lpips-checkpoint)"
        if not settings.checkpoint:
            return (f"needs local torchvision weights of its {settings.net} backbone (--lpips-checkpoint PATH); "
                    "the 'lpips' package ships only the linear heads")
        return None

    def __init__(self, settings: LpipsSettings, device: str = "cpu"):
        import lpips
        import torch

        from ...weights import load_state_dict

        self.settings, self.device = settings, device
        model = lpips.LPIPS(net=settings.net, pnet_rand=True, spatial=True, verbose=False)
        state = load_state_dict(str(settings.checkpoint))
        names = [n for n, _ in model.net.named_parameters()]
        mapping = backbone_key_map(names)
        missing = [tv for tv in mapping.values() if tv not in state]
        if missing:
            raise InvalidInputError(f"LPIPS {settings.net}: checkpoint '{settings.checkpoint}' lacks "
                                    f"{len(missing)} backbone key(s), e.g. {', '.join(missing[:3])}")
        model.net.load_state_dict({n: state[mapping[n]] for n in names}, strict=False)
        self.model = model.eval().to(device)
        self._torch = torch

    def distance_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The (H, W) LPIPS map of two uint8 images."""
        torch = self._torch

        def t(x: np.ndarray) -> Any:
            return (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 127.5 - 1.0).to(self.device)

        with torch.inference_mode():
            return self.model(t(a), t(b)).float().cpu().numpy()[0, 0]

    def describe(self) -> dict[str, Any]:
        return {"net": self.settings.net, "checkpoint": self.settings.checkpoint, "inputs": "[-1, 1]",
                "version": "lpips linear heads v0.1"}


class _LpipsMetric(Metric):
    backbone = "lpips"
    higher_is_better = False

    def config(self) -> dict[str, Any]:
        return self.backbones.get("lpips").describe()


@register_metric
class Lpips(_LpipsMetric):
    name, needs, family = "lpips", frozenset({"target"}), "target"
    description = "LPIPS distance to the target (spatial mean)"

    def compute(self, batch, indices):
        model = self.backbones.get("lpips")
        return [float(model.distance_map(batch.outputs[i], batch.targets[i]).mean()) for i in indices]


@register_metric
class LpipsBackground(_LpipsMetric):
    name, needs, family = "lpips_background", frozenset({"mask"}), "preservation"
    description = "LPIPS map to the source averaged over the unedited region"

    def compute(self, batch, indices):
        model = self.backbones.get("lpips")
        out = []
        for i in indices:
            region = ~batch.masks[i]
            dmap = model.distance_map(batch.outputs[i], batch.sources[i])
            out.append(float(dmap[region].mean()) if region.any() else None)
        return out
