"""The refinement prior: a small causal transformer that maps an ImageBind-space embedding plus an
aesthetic score to a refined embedding, used with one-step guidance.

Inputs, declared explicitly: the source-modality embedding; ``[SOS, Linear(embedding), EOS]``;
``[SOS, text states, EOS]`` (the reference feeds CLIP-ViT-H states of the empty prompt, a constant; here a
learned constant of the same role); ``[SOS, Linear(sinusoidal(score)), EOS]``. The reference's prior
config misses a comma, so its ``noise_level`` and ``tgt_type`` keys silently merge into one unknown key
and are never fed; that is the *effective* input list of the released prior, written out here on purpose
rather than reproduced by accident. The output is a linear read-out of the last position.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

IMAGE, AUDIO, TEXT, VIDEO = 0, 1, 2, 3


@dataclass
class PriorConfig:
    embed_dim: int
    width: int = 256
    layers: int = 4
    heads: int = 4
    score_dim: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid(x: torch.Tensor, dim: int, cos_first: bool = False) -> torch.Tensor:
    """(B,) -> (B, dim) sinusoidal embedding (transformer timestep style); ``cos_first`` is diffusers'
    ``get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = x.float()[:, None] * freqs[None]
    parts = [angles.cos(), angles.sin()] if cos_first else [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=-1)


class RefinementPrior(nn.Module):
    SEQUENCE = 10  # type, [SOS x EOS], [SOS text EOS], [SOS score EOS]

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.type_embedding = nn.Embedding(4, w)
        self.sos = nn.Parameter(torch.randn(w) * 0.02)
        self.eos = nn.Parameter(torch.randn(w) * 0.02)
        self.input_proj = nn.Linear(config.embed_dim, w)
        self.text_state = nn.Parameter(torch.zeros(w))
        self.score_proj = nn.Linear(config.score_dim, w)
        self.position = nn.Parameter(torch.zeros(self.SEQUENCE, w))
        layer = nn.TransformerEncoderLayer(w, config.heads, 4 * w, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.output = nn.Linear(w, config.embed_dim)
        self.register_buffer("causal", torch.triu(torch.full((self.SEQUENCE, self.SEQUENCE), float("-inf")), 1),
                             persistent=False)

    def forward(self, x: torch.Tensor, score: torch.Tensor, src_type: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        sos, eos = self.sos.expand(b, -1), self.eos.expand(b, -1)
        seq = torch.stack([
            self.type_embedding(src_type), sos, self.input_proj(x), eos,
            sos, self.text_state.expand(b, -1), eos,
            sos, self.score_proj(sinusoid(score, self.config.score_dim)), eos,
        ], dim=1)
        h = self.blocks(seq + self.position, mask=self.causal)
        return self.output(self.norm(h[:, -1]))

    @torch.no_grad()
    def refine(self, gen: torch.Tensor, *, guidance: float, score: float, negative_score: float,
               src_type: int = VIDEO) -> torch.Tensor:
        """One-step guided regression: y_u + g (y_c - y_u), conditional = (gen / |gen| * 100, score),
        unconditional = (0, negative_score), both in one batched call."""
        b = gen.shape[0]
        x = torch.cat([gen / (gen.norm(dim=-1, keepdim=True) + 1e-9) * 100.0, torch.zeros_like(gen)])
        scores = torch.tensor([score] * b + [negative_score] * b, device=gen.device)
        types = torch.full((2 * b,), src_type, dtype=torch.long, device=gen.device)
        y_c, y_u = self(x, scores, types).chunk(2)
        return y_u + guidance * (y_c - y_u)
