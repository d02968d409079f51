"""The ``blended`` guide: mask-restricted sampling with per-step blending, CLIP guidance and ranking.

torch and the helper modules are imported when the guide is loaded, not when it is listed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from editkit.guide import Guide
from editkit.types import Conditioning, EditRequest, StepState

from .config import BlendedConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Unset ``text_scale`` on SDXL pipelines: Blended Latent Diffusion's SDXL script (scripts/text_editing_SDXL.py).
SDXL_TEXT_SCALE = 5.0


class BlendedGuide(Guide):
    name = "blended"
    Config = BlendedConfig
    needs = frozenset({"mask"})

    @classmethod
    def contract_options(cls) -> dict:
        return {"steps": 4, "candidates": 2, "rank": False, "progress": False}

    # ----------------------------------------------------------------- loading
    def load(self, backends) -> None:
        from editkit.backend.coordinates import is_image_conditioned

        cfg = self.config
        self.backend = backends.get(cfg.model, device=cfg.device, dtype=cfg.dtype)
        self.image_conditioned = is_image_conditioned(self.backend.unet)
        self.clip = None
        if cfg.rank and cfg.candidates > 1 or cfg.clip_guidance_scale > 0:
            from editkit.backend.clip import load_clip

            self.clip = load_clip(cfg.clip, cfg.clip_checkpoint, pretrained=cfg.clip_pretrained,
                                  device=str(self.backend.device), dtype=self.backend.dtype)
        self._null = None

    def hooks_used(self) -> dict[str, bool]:
        return {"on_step": True, "guidance_loss": self.config.clip_guidance_scale > 0}

    # ----------------------------------------------------------------- conditioning
    def prepare(self, request: EditRequest) -> Conditioning:
        from . import masks

        backend, cfg = self.backend, self.config
        if self._null is None:
            self._null = backend.encode_prompts([""])  # the empty prompt, as the reference scripts
        k = self.num_candidates()
        f = backend.vae_factor  # the padded size the backend samples at (no pixel conversion needed for it)
        w, h = (-(-side // f) * f for side in request.images[0].size)
        pix = masks.pixel_masks(request.masks, h, w).repeat_interleave(k, 0).to(backend.device, backend.dtype)
        self._pixel_masks = pix
        self._latent_masks = masks.dilation_schedule(masks.latent_masks(pix, backend.vae_factor), cfg.mask_dilation)
        self._texts = [cfg.prompt or text for text in request.instructions for _ in range(k)]
        if self.clip is not None:
            self._text_emb = self.clip.encode_texts(self._texts).to(backend.device)
        self._seed = request.seed
        text, pooled = backend.encode_prompts(request.instructions)
        null, null_pooled = self._null
        extra = {"guidance_through_unet": cfg.guidance_gradient == "unet"}
        if backend.is_sdxl:  # SDXL's pooled prompt embeddings; the backend adds the size ids (time_ids)
            extra.update(text_embeds=pooled, null_text_embeds=null_pooled)
        return Conditioning(
            cond=text,
            null=null,
            mode="ip2p" if self.image_conditioned else "sdedit",
            **self.dual_guidance_scales(),
            strength=1.0 - cfg.skip,
            extra=extra,
        )

    def dual_guidance_scales(self) -> dict[str, float]:
        """As set, else the weights' recommendation, else the reference: on SDXL pipelines the SDXL script's
        ``text_scale`` 5.0 instead of 7.5."""
        scales = super().dual_guidance_scales()
        if self.backend.is_sdxl:
            scales["text_scale"] = self.guidance_scale("text_scale", SDXL_TEXT_SCALE)
        return scales

    # ----------------------------------------------------------------- per-step blending
    def on_step(self, state: StepState) -> "torch.Tensor":
        """Keep the edit inside the mask: outside it, the source noised to the level of ``state.latents``."""
        from . import masks

        ctx = state.extra
        timesteps, source = ctx["timesteps"], ctx["source_latents"]
        i = state.step
        if self.config.blend_noise == "reference":  # the official scripts: the level before this step
            level = timesteps[i]
        else:
            level = timesteps[i + 1] if i + 1 < len(timesteps) else None
        if level is None:
            background = source
        else:
            background = ctx["scheduler"].add_noise(source, ctx["noise"], level.reshape(1).repeat(source.shape[0]))
        mask = self._latent_masks[masks.stage(i, len(timesteps), len(self._latent_masks))]
        return state.latents * mask + background * (1 - mask)

    # ----------------------------------------------------------------- CLIP guidance
    def guidance_loss(self, pred_x0: "torch.Tensor", state: StepState) -> "torch.Tensor | None":
        import torch

        from . import clip_guidance

        cfg, backend = self.config, self.backend
        pixels = backend.vae.decode(pred_x0 / backend.scaling_factor).sample
        region = clip_guidance.masked_view(pixels, self._pixel_masks)
        gen = torch.Generator().manual_seed(self._seed * 1000 + state.step)
        views = clip_guidance.extending_augmentations(region, cfg.augmentations, gen)
        emb = self.clip.encode_pixels(views).view(pixels.shape[0], cfg.augmentations, -1)
        distance = clip_guidance.spherical_distance(emb, self._text_emb[:, None, :]).mean(1)
        loss = cfg.clip_guidance_scale * distance.sum()
        if cfg.range_scale > 0:
            loss = loss + cfg.range_scale * clip_guidance.range_loss(pixels).sum()
        return loss

    # ----------------------------------------------------------------- results
    def postprocess(self, images: list[Any], request: EditRequest) -> list[Any]:
        if not self.config.paste_back:
            return images
        from . import masks

        return [masks.paste_back(out, src, m, self.config.feather)
                for out, src, m in zip(images, request.images, request.masks)]

    def rank(self, images: list[Any], request: EditRequest) -> list[float] | None:
        """CLIP cosine similarity of each candidate's masked region to the text (higher is better)."""
        if self.clip is None or not self.config.rank or self.num_candidates() == 1:
            return None
        import torch

        from editkit.backend.images import pil_to_tensor

        from . import clip_guidance, masks

        with torch.inference_mode():
            x = pil_to_tensor(images).to(self.backend.device, self.clip.dtype)
            h, w = x.shape[-2:]
            pix = masks.pixel_masks(request.masks, h, w).to(x.device, x.dtype)
            emb = self.clip.encode_pixels(clip_guidance.masked_view(x, pix))
            return (emb * self._text_emb).sum(-1).tolist()
