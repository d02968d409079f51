"""Plain data types passed between the API, guides and the backend.

Nothing here imports torch: tensors appear only as annotations, so ``import editkit`` stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image


@dataclass
class EditRequest:
    """One call's worth of edits: N source images with N instructions (one instruction is broadcast).

    ``images`` are RGB PIL images (the API converts paths, arrays and tensors). ``masks`` holds one
    single-channel image per source (255 = editable) or is None. ``inputs`` carries named extra
    inputs such as reference images (``image1``) and audio clips (``audio1``) as the guide expects them.
    """

    images: list["Image.Image"]
    instructions: list[str]
    masks: list["Image.Image"] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.instructions) == 1 and len(self.images) > 1:
            self.instructions = self.instructions * len(self.images)

    @property
    def batch_size(self) -> int:
        return len(self.images)

    def repeat(self, k: int) -> "EditRequest":
        """The request with every sample repeated ``k`` times in a row (aligned with K candidates per image)."""
        if k == 1:
            return self

        def rep(items):
            return None if items is None else [x for x in items for _ in range(k)]

        return EditRequest(images=rep(self.images), instructions=rep(self.instructions), masks=rep(self.masks),
                           inputs=self.inputs, seed=self.seed)

    def seeds(self) -> list[int]:
        """Per-sample seeds: sample i of a batch uses ``seed + i`` so results do not depend on batching."""
        return [self.seed + i for i in range(self.batch_size)]


@dataclass
class Candidate:
    image: "Image.Image"
    score: float


@dataclass
class EditResult:
    """What every guide returns: output images plus everything needed to reproduce and explain them."""

    images: list["Image.Image"]
    guide: str
    config: dict[str, Any]
    seed: int
    text: list[str | None] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    candidates: list[list[Candidate]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> "Image.Image":
        return self.images[0]

    def save(self, path: str) -> None:
        self.images[0].save(path)


@dataclass
class Conditioning:
    """What a guide hands to the backend for one batch of B samples.

    ``cond`` / ``null`` are encoder hidden states (B, L, D); the null branch is always supplied by
    the guide (the backend never assumes the empty prompt). ``mode`` selects how the source images
    enter sampling:

    - ``"ip2p"``: InstructPix2Pix 8-channel UNet; the unscaled VAE-mode latents of the sources are
      concatenated to the noisy latents; three-branch dual guidance (``text_scale``, ``image_scale``)
      with zero image latents as the image null. With ``strength`` < 1 sampling starts, as in
      ``"sdedit"``, from the noised source latents after skipping ``1 - strength`` of the schedule.
    - ``"sdedit"``: 4-channel UNet started from the noised source latents after skipping
      ``1 - strength`` of the schedule; two-branch guidance with ``text_scale``.
    - ``"noise"``: 4-channel UNet from pure noise, or from ``init_latents`` (e.g. DDIM-inverted).

    ``extra`` may hold ``"image_embeds"`` (B, D) or (B, N, D) for UNets with IP-Adapter image tokens
    (``encoder_hid_dim_type="ip_image_proj"``) and ``"null_image_embeds"`` for the unconditional branches
    (zeros when absent); ``"text_embeds"`` (B, P), the pooled prompt embeddings SDXL UNets need
    (``addition_embed_type="text_time"``; the second part of ``backend.encode_prompts``), and
    ``"null_text_embeds"`` for the unconditional branches (required with guidance); ``"unet_kwargs"`` passed to
    every UNet call; and ``"guidance_through_unet"`` (default True): False holds the model output fixed when
    differentiating a guide's loss on x0 (cheaper). The backend sends image and text embeddings together in
    one ``added_cond_kwargs`` (SDXL + IP-Adapter: both).
    """

    cond: "torch.Tensor"
    null: "torch.Tensor | None" = None
    mode: str = "ip2p"
    text_scale: float = 7.5
    image_scale: float = 1.5
    strength: float = 1.0
    init_latents: "torch.Tensor | None" = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepState:
    """What per-step hooks see and may change. ``latents`` may be replaced by ``on_step`` hooks."""

    step: int
    timestep: Any
    latents: "torch.Tensor"
    pred_x0: "torch.Tensor | None" = None
    noise_pred: "torch.Tensor | None" = None
    #: Loop context for hooks: "scheduler", "timesteps" (of this run), "noise" (the start noise) and, when the
    #: mode has a source image, "source_latents" (scaled, clean; per sample, candidates repeated).
    extra: dict[str, Any] = field(default_factory=dict)


StepCallback = Callable[[StepState], None]
