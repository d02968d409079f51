"""The released InstructAny2Pix refinement prior (``ckpts/prior/model.bin``), state-dict compatible.

The reference's ``InstructAny2PixPrior`` is a GPT-2 backbone (built from the ``gpt2-medium`` config) fed a
sequence of input embeddings. Its config lists the inputs ``src_type, imagebind, crossattn_clip, score,
noisy_inputs, "noise_level" "tgt_type"``: the missing comma merges the last two into one key that is never
present, and in the one-step mode the pipeline uses, the noise input is stored under ``noisy_input`` (no
``s``), so it is not fed either. The *effective* inputs, declared here on purpose, are (by input index):

0. ``src_type``: ``modality_embedding(src_type)``, one position, no start/end tokens;
1. ``imagebind``: ``[SOS_1, Linear_1(x), EOS_1]``;
2. ``crossattn_clip``: ``[SOS_2, Linear_2(t_1) ... Linear_2(t_n), EOS_2]`` where ``t`` are the CLIP-ViT-H
   text-encoder states of the empty prompt (a constant, stored as ``text_states``; mask all ones);
3. ``score``: ``[SOS_3, Linear_3(e), EOS_3]`` with ``e`` a 512-d timestep embedding (cos first) of the
   aesthetic score.

SOS_i / EOS_i are rows ``i`` of ``start_of_sequence_tokens`` / ``end_of_sequence_tokens``. The output is the
last hidden state (after ``ln_f``) at the last position (EOS_3); ``output_proj`` is an identity in the release
(output width = model width) and the generation path never applies it. ``generate_diffusion(no_diffusion=True,
force_guidence_t0=True)`` is one DDPM step from t=1 whose x0 estimate is exactly ``y_u + g (y_c - y_u)`` (the
posterior noise at that step is scaled by 1e-10), which is what :meth:`ReferencePrior.refine` computes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .prior import VIDEO, sinusoid

SRC_TYPE, IMAGEBIND, TEXT, SCORE = 0, 1, 2, 3  # input indices (also the SOS/EOS rows)
SEQUENCE_TOKENS, MODALITIES = 32, 10  # rows of the SOS/EOS tables and of the modality embedding
GPT2_MEDIUM_HEADS = 16  # not recoverable from the weights


@dataclass
class ReferencePriorConfig:
    width: int = 1024  # GPT-2 width = ImageBind width (the input x and the output)
    text_dim: int = 1024
    text_tokens: int = 2  # CLIP tokens of "": <|startoftext|> <|endoftext|>
    score_dim: int = 512
    layers: int = 24
    heads: int = GPT2_MEDIUM_HEADS
    positions: int = 1024
    vocab: int = 50257
    inner: int = 4096

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "reference", **asdict(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], text_tokens: int,
                        heads: int = GPT2_MEDIUM_HEADS) -> "ReferencePriorConfig":
        """The sizes of a released prior state dict (GPT-2 keys under ``model.``); ``KeyError`` names a missing key."""
        def shape(key: str) -> torch.Size:
            return state[key].shape

        layers = sum(1 for k in state if k.startswith("model.h.") and k.endswith(".ln_1.weight"))
        return cls(width=shape("modality_embedding.weight")[1],
                   text_dim=shape(f"input_sequence_embed_linear.{TEXT}.weight")[1], text_tokens=text_tokens,
                   score_dim=shape(f"input_sequence_embed_linear.{SCORE}.weight")[1], layers=layers, heads=heads,
                   positions=shape("model.wpe.weight")[0], vocab=shape("model.wte.weight")[0],
                   inner=shape("model.h.0.mlp.c_fc.weight")[1])


def score_embedding(score: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) -> (B, dim): diffusers' ``get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)``."""
    return sinusoid(score, dim, cos_first=True)


class ReferencePrior(nn.Module):
    def __init__(self, config: ReferencePriorConfig):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        self.config = config
        w = config.width
        self.start_of_sequence_tokens = nn.Embedding(SEQUENCE_TOKENS, w)
        self.end_of_sequence_tokens = nn.Embedding(SEQUENCE_TOKENS, w)
        self.input_sequence_embed_linear = nn.ModuleList(
            [nn.Identity(), nn.Linear(w, w), nn.Linear(config.text_dim, w), nn.Linear(config.score_dim, w)])
        self.modality_embedding = nn.Embedding(MODALITIES, w)
        self.model = GPT2Model(GPT2Config(
            n_embd=w, n_layer=config.layers, n_head=config.heads, n_positions=config.positions,
            vocab_size=config.vocab, n_inner=config.inner, activation_function="gelu_new", layer_norm_epsilon=1e-5,
            bos_token_id=None, eos_token_id=None))
        self.register_buffer("text_states", torch.zeros(config.text_tokens, config.text_dim))

    def _wrapped(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T, W) -> (N, T + 2, W) between the start / end tokens of input ``index``."""
        ids = torch.full((tokens.shape[0], 1), index, dtype=torch.long, device=tokens.device)
        return torch.cat([self.start_of_sequence_tokens(ids), tokens, self.end_of_sequence_tokens(ids)], dim=1)

    def forward(self, x: torch.Tensor, score_embed: torch.Tensor, src_type: torch.Tensor) -> torch.Tensor:
        """x (N, W), score_embed (N, score_dim), src_type (N,) -> the read-out (N, W)."""
        n, linear = x.shape[0], self.input_sequence_embed_linear
        text = linear[TEXT](self.text_states)[None].expand(n, -1, -1)
        seq = torch.cat([
            self.modality_embedding(src_type)[:, None],
            self._wrapped(IMAGEBIND, linear[IMAGEBIND](x)[:, None]),
            self._wrapped(TEXT, text),
            self._wrapped(SCORE, linear[SCORE](score_embed)[:, None]),
        ], dim=1)
        return self.model(inputs_embeds=seq).last_hidden_state[:, -1]

    @torch.no_grad()
    def refine(self, gen: torch.Tensor, *, guidance: float, score: float, negative_score: float,
               src_type: int = VIDEO) -> torch.Tensor:
        """y_u + g (y_c - y_u) in one batched call. Conditional rows: (gen / |gen| * 100, embedding of ``score``);
        unconditional rows: (0, a vector filled with ``negative_score``): the reference builds them as
        ``score_embedding * 0 + negative_score``, so the negative score is never sinusoidally embedded."""
        b = gen.shape[0]
        dtype = self.text_states.dtype
        x = (gen / gen.norm(dim=-1, keepdim=True).clamp_min(1e-12) * 100.0).to(dtype)
        d = self.config.score_dim
        scores = torch.cat([score_embedding(torch.full((b,), score, device=gen.device), d),
                            torch.full((b, d), negative_score, device=gen.device)]).to(dtype)
        types = torch.full((2 * b,), src_type, dtype=torch.long, device=gen.device)
        y_c, y_u = self(torch.cat([x, torch.zeros_like(x)]), scores, types).chunk(2)
        return y_u + guidance * (y_c - y_u)
