"""InstructAny2Pix's vector arithmetic: norms, the condition mix, and the norm-preserving latent mix."""
from __future__ import annotations

import torch


def to_norm(x: torch.Tensor, norm: float) -> torch.Tensor:
    """Rows of ``x`` scaled to L2 norm ``norm`` (x / (|x| + 1e-9) * norm, as the reference)."""
    return x / (x.norm(dim=-1, keepdim=True) + 1e-9) * norm


def condition_mix(base: torch.Tensor, gen: torch.Tensor, prior: torch.Tensor, h: tuple[float, float, float],
                  norm: float) -> torch.Tensor:
    """c = h0 * base + h1 * gen + h2 * prior, renormalised to ``norm``.

    ``base`` is an input embedding already at ``norm``; ``gen`` enters un-normalised (the raw projector output,
    as in the reference); ``prior`` is renormalised to ``norm`` first.
    """
    c = h[0] * base + h[1] * gen + h[2] * to_norm(prior, norm)
    return to_norm(c, norm)


def polar_mix(inverted: torch.Tensor, noise: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * inv + (1 - alpha) * noise, rescaled to alpha |inv| + (1 - alpha) |noise| (per sample)."""
    def norms(x):
        return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))

    mixed = alpha * inverted + (1 - alpha) * noise
    target = alpha * norms(inverted) + (1 - alpha) * norms(noise)
    return mixed / norms(mixed).clamp(min=1e-12) * target
