"""Options of the ``blended`` guide (validated; every error names the guide and the option)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from editkit.config import DiffusionGuideConfig, DualGuidanceConfig


class BlendedConfig(DualGuidanceConfig, DiffusionGuideConfig):
    model: str = Field(
        "editworld", min_length=1,
        description="Diffusion weights: 'editworld' (committed tiny weights, an 8-channel InstructPix2Pix UNet "
        "conditioned on the source), a Stable Diffusion text-to-image folder or hub id (4-channel UNet, e.g. "
        "'stabilityai/stable-diffusion-2-1-base', or SDXL: 'stabilityai/stable-diffusion-xl-base-1.0'), or an "
        "InstructPix2Pix folder or hub id.",
    )
    text_scale: float | None = Field(
        None, ge=0.0, le=50.0, description="Text guidance scale s_T; None: the weights' recommendation "
        "(editkit_sampling.json), else the reference's: 5.0 on SDXL pipelines (Blended Latent Diffusion's SDXL "
        "script), 7.5 on others.")
    clip: str = Field("editworld", min_length=1, description="CLIP for guidance and ranking: 'editworld' (committed "
                      "tiny CLIP), an open_clip model name (e.g. 'ViT-B-16') or an open_clip config JSON.")
    clip_checkpoint: str | None = Field(None, description="Local CLIP weights (.safetensors or weights-only .pt); "
                                        "required unless clip='editworld'.")
    clip_pretrained: str | None = Field(None, description="open_clip pretrained tag for a named CLIP (e.g. "
                                        "'openai' for ViT-B-16; fetched into the Hugging Face cache once).")
    prompt: str | None = Field(None, description="Text for CLIP guidance and ranking (a description of the wanted "
                               "region, e.g. 'a blue circle'); default: the instruction.")
    steps: int | None = Field(
        None, ge=1, le=1000, description="Sampling steps of the full schedule; None: the diffusion weights' "
        "recommendation (editkit_sampling.json: 10 for the EditWorld weights), else 20 (the reference uses DDIM 50 "
        "at full size).")
    skip: float = Field(0.25, ge=0.0, lt=1.0, description="Fraction of the schedule skipped: sampling starts from the "
                        "source noised to that level (Blended Latent Diffusion: 0.25).")
    scheduler: Literal["ddim", "ddpm"] = Field("ddim", description="Sampler (CLIP guidance needs DDIM or DDPM).")
    candidates: int = Field(4, ge=1, le=64, description="Samples per image, generated in one batch and ranked "
                            "best first.")
    rank: bool = Field(True, description="Rank candidates by the CLIP similarity of the edited region to the text.")
    clip_guidance_scale: float = Field(0.0, ge=0.0, le=1e6, description="lambda_clip of the CLIP guidance loss on "
                                       "the masked x0 estimate; 0 turns CLIP guidance off (faster).")
    range_scale: float = Field(50.0, ge=0.0, le=1e6, description="lambda_range of the range loss (pixels of the "
                               "decoded x0 outside [-1, 1]); used with CLIP guidance.")
    guidance_gradient: Literal["unet", "x0"] = Field(
        "unet", description="How the CLIP loss on x0 reaches the noisy latents: 'unet' differentiates through the "
        "UNet (as the reference); 'x0' holds the UNet output fixed, several times faster, an approximation.")
    augmentations: int = Field(8, ge=1, le=64, description="Views per sample for CLIP guidance: the first "
                               "unaugmented, the rest random affine + perspective ('extending augmentations').")
    mask_dilation: int = Field(0, ge=0, le=10, description="Progressive mask dilation for thin masks: k dilated masks "
                               "(kernels 3+2i in latent cells), the widest first, then the mask itself.")
    blend_noise: Literal["matched", "reference"] = Field(
        "matched", description="Noise level of the source outside the mask: 'matched' = the level of the latents "
        "after the step (clean at the end); 'reference' = the level before the step, the official scripts' "
        "off-by-one.")
    paste_back: bool = Field(True, description="Paste the source pixels outside the mask back after decoding, "
                             "so they are bit-identical.")
    feather: float = Field(0.0, ge=0.0, le=64.0, description="Soften the paste-back edge inside the mask by this "
                           "many pixels (Gaussian); pixels outside the mask stay exact. 0 = hard edge.")
