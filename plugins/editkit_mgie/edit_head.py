"""MGIE's edit head (apple/ml-mgie:mgie_llava.py#L187-L203), with the sizes as configuration.

``EditHead(llm_hidden, emb)``: ``llm2hid(llm_hidden + emb)`` -> ``nn.Transformer`` (encoder over the
[IMG] tokens, decoder over learned queries) -> ``hid2feat``. Parameter names are the reference's,
so ``edit_head.*`` keys of an official ``mllm.pt`` load unchanged.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class EditHeadConfig:
    llm_dim: int = 4096  # width of the LLM hidden states
    hidden: int = 512  # d_model of the transformer
    num_queries: int = 77  # learned queries = length of the conditioning sequence
    out_dim: int = 768  # the UNet's cross_attention_dim
    nhead: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    ff: int = 2048
    num_img_tokens: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EditHeadConfig":
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], *, nhead: int = 4, num_img_tokens: int = 8,
                        prefix: str = "") -> "EditHeadConfig":
        """Infer the sizes from weights (``nhead`` cannot be inferred; the reference uses 4)."""
        def count(part: str) -> int:
            ids = {k[len(prefix):].split(".")[3] for k in sd if k.startswith(f"{prefix}mapper.{part}.layers.")}
            return len(ids)

        hidden, llm_dim = sd[f"{prefix}llm2hid.weight"].shape
        return cls(
            llm_dim=int(llm_dim), hidden=int(hidden), num_queries=int(sd[f"{prefix}query"].shape[1]),
            out_dim=int(sd[f"{prefix}hid2feat.weight"].shape[0]), nhead=nhead,
            encoder_layers=count("encoder"), decoder_layers=count("decoder"),
            ff=int(sd[f"{prefix}mapper.encoder.layers.0.linear1.weight"].shape[0]), num_img_tokens=num_img_tokens,
        )


class EditHead(nn.Module):
    def __init__(self, config: EditHeadConfig | None = None, **sizes: int) -> None:
        super().__init__()
        self.config = config or EditHeadConfig(**sizes)
        c = self.config
        self.llm2hid = nn.Linear(c.llm_dim, c.hidden)
        self.query = nn.Parameter(torch.randn(1, c.num_queries, c.hidden))
        with warnings.catch_warnings():  # "enable_nested_tensor ... norm_first": harmless
            warnings.simplefilter("ignore")
            self.mapper = nn.Transformer(
                d_model=c.hidden, nhead=c.nhead, num_encoder_layers=c.encoder_layers,
                num_decoder_layers=c.decoder_layers, dim_feedforward=c.ff, dropout=0.0,
                batch_first=True, norm_first=True,
            )
        self.hid2feat = nn.Linear(c.hidden, c.out_dim)

    def forward(self, llm: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``llm`` (B, n, llm_dim) hidden states at the [IMG] positions, ``emb`` (n, llm_dim) or (B, n, llm_dim)
        [IMG] input embeddings -> (B, num_queries, out_dim)."""
        hid = self.llm2hid(llm + emb.to(llm.dtype))
        return self.hid2feat(self.mapper(hid, self.query.to(hid.dtype).repeat(llm.shape[0], 1, 1)))

    def null(self, emb: torch.Tensor) -> torch.Tensor:
        """MGIE's unconditional text branch ``edit_head(zeros, EMB)`` (never the empty prompt), (1, Q, D)."""
        c = self.config
        p = self.llm2hid.weight
        return self(torch.zeros(1, c.num_img_tokens, c.llm_dim, device=p.device, dtype=p.dtype), emb)
