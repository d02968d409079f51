"""``ip2p``: plain InstructPix2Pix (Brooks et al., CVPR 2023) on the shared backend.

The instruction is encoded by the text encoder of the checkpoint; the null text branch is the
encoding of the empty prompt (InstructPix2Pix's own null); sampling uses the three-branch dual
classifier-free guidance with the source latents concatenated to an 8-channel UNet.
"""
from __future__ import annotations

from pydantic import Field

from editkit.config import DiffusionGuideConfig, DualGuidanceConfig, SamplingConfig
from editkit.guide import Guide
from editkit.types import Conditioning, EditRequest


class InstructPix2PixConfig(SamplingConfig, DualGuidanceConfig, DiffusionGuideConfig):
    model: str = Field(
        "editworld",
        description="Weights: 'editworld' (committed tiny EditWorld weights), a local diffusers-layout "
        "folder, or a hub id such as 'timbrooks/instruct-pix2pix'.",
        min_length=1,
    )


class InstructPix2PixGuide(Guide):
    name = "ip2p"
    Config = InstructPix2PixConfig

    @classmethod
    def contract_options(cls) -> dict:
        return {"steps": 2, "progress": False}

    def load(self, backends) -> None:
        cfg = self.config
        self.backend = backends.get(cfg.model, device=cfg.device, dtype=cfg.dtype)
        self._null = None

    random_sizes = ("test", "sd15")

    def load_random(self, backends, size: str) -> None:
        """Random weights in the shapes of ``size`` ('sd15': the 8-channel InstructPix2Pix UNet, SD VAE, CLIP
        ViT-L/14 text encoder), for benchmarks."""
        import torch

        from editkit.backend.architectures import random_components
        from editkit.backend.cache import resolve_device

        cfg = self.config
        device = resolve_device(cfg.device)
        self.backend = backends.get(
            f"random:{size}", device=cfg.device, dtype=cfg.dtype, key="ip2p",
            loader=lambda _src: random_components(size, in_channels=8, device=device, dtype=getattr(torch, cfg.dtype)))
        self._null = None

    def prepare(self, request: EditRequest) -> Conditioning:
        backend = self.backend
        if self._null is None:
            self._null = backend.encode_text([""])
        return Conditioning(
            cond=backend.encode_text(request.instructions),
            null=self._null,
            mode="ip2p",
            **self.dual_guidance_scales(),
        )
