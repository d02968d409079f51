"""The InstructAny2Pix language model: reference injection, generation, and reading the [base]/[gen] slots.

The source image is presented to the LLM as the first input, then every ``[imageK]`` / ``[audioK]``
reference of the instruction, each as a ``<video>`` placeholder whose token embedding gets the projected
ImageBind feature **added** (the reference meant to replace it, but its zeroing line is a no-op, so the
released weights were trained with the sum). The answer is generated from input embeddings (sampling
at ``temperature`` with a seeded generator, or greedy), then one more forward pass over prompt + answer
gives the last-layer hidden states from which the output projector reads [base], [gen] and [sub].
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import grammar

REFERENCE = re.compile(r"\[(image|audio)(\d+)\]")
VICUNA_V1 = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
             "helpful, detailed, and polite answers to the user's questions. USER: {instruction} ASSISTANT:")


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """``mlp2x_gelu``: Linear -> GELU -> Linear (keys .0 and .2 as in the reference)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


def references(instruction: str) -> list[str]:
    """Input names in order of appearance, e.g. ['image1', 'audio1']."""
    return [f"{kind}{num}" for kind, num in REFERENCE.findall(instruction)]


def placeholder_prompt(instruction: str, template: str) -> str:
    """The source image first, every reference replaced by ``<video>``, in the checkpoint's template."""
    return template.format(instruction="<video> " + REFERENCE.sub("<video>", instruction))


@dataclass
class Answer:
    text: str
    gen: torch.Tensor  # (D,) raw projector output
    base: torch.Tensor | None  # (D,) predicted base embedding or None
    subs: list[torch.Tensor] = field(default_factory=list)
    caption: str | None = None


class Any2PixLLM:
    def __init__(self, model: Any, tokenizer: Any, in_projector: nn.Module, out_projector: nn.Module,
                 template: str = VICUNA_V1):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.in_projector = in_projector.eval().requires_grad_(False)
        self.out_projector = out_projector.eval().requires_grad_(False)
        self.template = template
        self.token_ids = {t: tokenizer.convert_tokens_to_ids(t) for t in grammar.SPECIAL_TOKENS}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def embed(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Token embeddings with the projected features added at the ``<video>`` positions (in order)."""
        emb = self.model.get_input_embeddings()(ids)
        slots = (ids[0] == self.token_ids["<video>"]).nonzero().flatten()
        n = min(len(slots), features.shape[0])
        if n:
            emb = emb.clone()
            emb[0, slots[:n]] = emb[0, slots[:n]] + self.in_projector(features[:n].to(emb.dtype))
        return emb

    @torch.inference_mode()
    def answer(self, instruction: str, features: torch.Tensor, *, temperature: float, max_new_tokens: int,
               seed: int) -> Answer:
        """``features``: (1 + references, D) ImageBind features at the reference norm, source image first."""
        prompt = placeholder_prompt(instruction, self.template)
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.device)
        if ids.shape[1] > 1 and int(ids[0, -1]) == self.tokenizer.eos_token_id:  # tokenizers that append </s>
            ids = ids[:, :-1]
        emb = self.embed(ids, features)
        sample = temperature > 0
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            torch.manual_seed(seed)
            out = self.model.generate(
                inputs_embeds=emb, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                do_sample=sample, temperature=temperature if sample else None, top_p=None, top_k=None,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
        new = out[0].tolist()
        full = torch.cat([ids, torch.tensor([new], device=self.device)], dim=1)
        hidden = self.model(inputs_embeds=self.embed(full, features), output_hidden_states=True).hidden_states[-1][0]
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        parsed = grammar.parse(full[0].tolist(), ids.shape[1], self.token_ids, text)
        read = self.out_projector
        return Answer(
            text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
            gen=read(hidden[parsed.gen]).float(),
            base=read(hidden[parsed.base]).float() if parsed.base is not None else None,
            subs=[read(hidden[i]).float() for i in parsed.subs],
            caption=parsed.caption,
        )
