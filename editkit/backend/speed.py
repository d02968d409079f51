"""Switchable fast paths of the backend, applied to the shared models when a guide's options ask for them.

Every switch keeps results identical within floating-point tolerance (tests/test_speed.py):

- ``channels_last``: UNet and VAE weights and activations in NHWC (faster convolutions on GPUs, tensor cores);
- ``fuse_qkv``: one projection matmul instead of three in every self-attention and two in every cross-attention
  with the plain processor (diffusers' own fusion; an IP-Adapter's cross-attention keeps its processor);
- ``compile``: ``torch.compile`` of the UNet forward (mode as given; "reduce-overhead" captures CUDA graphs).
  The first calls at a new shape pay the compilation; benchmarks report that warm-up separately;
- ``vae_tiling``: decode/encode large images in overlapping tiles (diffusers' tiling), bounded memory;
- ``fused_sampler``: DDIM (eta 0) as one multiply-add per step with coefficients precomputed before the
  loop, and the guidance batch written into a preallocated buffer: no scheduler Python, no host-device
  synchronisation and no tensor allocation of the loop's own inside the denoising loop. Used when nothing needs
  the scheduler's step output (no step hook, callback or gradient guidance); otherwise the diffusers
  scheduler runs as before.

A backend is shared by guides with the same weights, so :func:`apply` moves the shared models to the
requested state each call and does nothing when it is already there.
"""
from __future__ import annotations

from typing import Any

from ..config import SpeedOptions

__all__ = ["SpeedOptions", "FusedDDIM", "apply"]


def apply(backend: Any, options: SpeedOptions) -> None:
    """Bring the backend's shared models to ``options`` (idempotent)."""
    import torch

    state: SpeedOptions = backend.speed
    if options.channels_last != state.channels_last:
        fmt = torch.channels_last if options.channels_last else torch.contiguous_format
        backend.unet.to(memory_format=fmt)
        backend.vae.to(memory_format=fmt)
    if options.fuse_qkv != state.fuse_qkv:
        _set_fused_qkv(backend.unet, options.fuse_qkv)
    if options.vae_tiling != state.vae_tiling:
        (backend.vae.enable_tiling if options.vae_tiling else backend.vae.disable_tiling)()
    if options.compile != state.compile:
        backend.compiled_unet = None if options.compile == "off" else _compiled(backend, options.compile)
    backend.speed = options


def _compiled(backend: Any, mode: str):
    import torch

    cache = backend.__dict__.setdefault("_compiled_unets", {})
    if mode not in cache:
        cache[mode] = torch.compile(backend.unet, mode=mode, fullgraph=False, dynamic=False)
    return cache[mode]


def _set_fused_qkv(unet: Any, fused: bool) -> None:
    """diffusers' fusion, per attention module: q/k/v become one matmul in self-attention and k/v one in
    cross-attention. Only modules with the plain processor are fused; others (e.g. the IP-Adapter's decoupled
    cross-attention) keep theirs, so the fast path stays available to a UNet that has them."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

    for module in unet.modules():
        if not isinstance(module, Attention):
            continue
        if fused and type(module.processor) is AttnProcessor2_0:
            module.fuse_projections()
            module.set_processor(FusedAttnProcessor2_0())
        elif not fused and type(module.processor) is FusedAttnProcessor2_0:
            module.set_processor(AttnProcessor2_0())  # the separate q/k/v weights were kept


class FusedDDIM:
    """DDIM with eta 0 as ``x <- a_i * x + b_i * model_output``, coefficients computed once per loop.

    Matches ``diffusers.DDIMScheduler.step`` (eta 0, no clipping or thresholding) for epsilon and
    v-prediction: with the model output turned into (eps, x0) at alpha_bar_t and x_prev =
    sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev) eps, both terms are linear in x and the output.
    """

    def __init__(self, sched: Any, timesteps: Any) -> None:
        import torch

        cfg = sched.config
        alphas = sched.alphas_cumprod.to(torch.float64)
        final = float(sched.final_alpha_cumprod)
        stride = cfg.num_train_timesteps // sched.num_inference_steps
        self.coefficients: list[tuple[float, float]] = []
        self.ok = True
        for t in timesteps.tolist():
            a_t = float(alphas[int(t)])
            prev = int(t) - stride
            a_p = float(alphas[prev]) if prev >= 0 else final
            sa, ss, pa, ps = a_t ** 0.5, (1 - a_t) ** 0.5, a_p ** 0.5, (1 - a_p) ** 0.5
            if cfg.prediction_type == "v_prediction":
                # x0 = sa x - ss v, eps = ss x + sa v
                self.coefficients.append((pa * sa + ps * ss, -pa * ss + ps * sa))
            elif sa == 0.0:  # epsilon prediction at zero SNR has no x0 estimate (diffusers divides by 0 too)
                self.ok = False
            else:
                # x0 = (x - ss eps) / sa
                self.coefficients.append((pa / sa, ps - pa * ss / sa))

    @staticmethod
    def supports(sched: Any, scheduler: str) -> bool:
        cfg = sched.config
        return (scheduler == "ddim" and cfg.prediction_type in ("epsilon", "v_prediction")
                and not cfg.get("clip_sample", False) and not cfg.get("thresholding", False))
