"""``blended``: Blended (Latent) Diffusion (Avrahami et al., CVPR 2022 / SIGGRAPH 2023) on the shared backend.

Mask-restricted edits: sampling starts from the source latents noised after skipping a fraction of
the schedule; after every step the latents outside the mask are replaced by the source noised to the
level of the latents they are blended with; optional CLIP guidance of the masked x0 estimate with
"extending augmentations" and a range loss; K candidates in one batch ranked by the CLIP similarity
of the edited region; a final pixel paste-back so every pixel outside the mask equals the source.
Modules: ``config``, ``masks`` (latent masks, dilation schedule, paste-back), ``clip_guidance``
(augmentations and losses), ``guide``. See docs/guides/blended.md.
"""
from __future__ import annotations

from .config import BlendedConfig
from .guide import BlendedGuide

__all__ = ["BlendedConfig", "BlendedGuide"]
