"""Options of the ``any2pix`` guide (validated; every error names the guide and the option)."""
from __future__ import annotations

from pydantic import Field

from editkit.config import DiffusionGuideConfig
from editkit.quantization import Quantize


class Any2PixConfig(DiffusionGuideConfig):
    model: str = Field("editworld", min_length=1, description="An editkit any2pix weights folder (ImageBind, LLM, "
                       "projectors, prior, IP-Adapter, diffusion pipeline); 'editworld' = the committed tiny "
                       "EditWorld weights.")
    steps: int | None = Field(None, ge=1, le=1000, description="Sampling steps (DDIM), also used for the inversion; "
                              "None: the weights' recommendation ('sampling' in any2pix_config.json), else 25.")
    cfg: float | None = Field(None, ge=0.0, le=50.0, description="Classifier-free guidance scale; None: the "
                              "weights' recommendation ('sampling' in any2pix_config.json), else the reference 10.")
    alpha: float = Field(0.7, ge=0.0, le=1.0, description="Consistency: weight of the DDIM-inverted base latents in "
                         "the norm-preserving mix with fresh noise (1 = start from the inversion only).")
    h_base: float = Field(0.0, ge=-5.0, le=5.0, description="h0: weight of the base input's embedding in the mix.")
    h_gen: float = Field(0.4, ge=-5.0, le=5.0, description="h1: weight of the LLM's [gen] embedding.")
    h_prior: float = Field(1.0, ge=-5.0, le=5.0, description="h2: weight of the refinement prior's output.")
    norm: float = Field(20.0, gt=0.0, le=1000.0, description="Norm of input embeddings and of the mixed condition.")
    prior_guidance: float = Field(10.0, ge=0.0, le=100.0, description="Guidance of the refinement prior between "
                                  "(embedding, score) and (zero embedding, negative score).")
    score: float = Field(6.5, ge=0.0, le=10.0, description="Aesthetic score of the prior's conditional branch.")
    negative_score: float = Field(2.0, ge=0.0, le=10.0, description="Aesthetic score of its unconditional branch.")
    adapter_scale: float = Field(1.0, ge=0.0, le=10.0, description="Scale of the IP-Adapter cross-attention.")
    temperature: float = Field(0.3, ge=0.0, le=5.0, description="LLM sampling temperature (0 = greedy); sampling is "
                               "seeded by the request's seed.")
    max_new_tokens: int = Field(100, ge=8, le=1024, description="LLM generation limit.")
    quantize: Quantize = Field("none", description="Load the LLM in 8 or 4 bits with bitsandbytes (CUDA only, "
                               "optional dependency); ImageBind, projectors and prior stay in `dtype`.")
