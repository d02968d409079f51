"""The multimodal LLM stage: prompts -> greedy generation -> [IMG] hidden states and expressive text.

Wraps a transformers ``LlavaForConditionalGeneration`` with its tokenizer (``[IMG0]``..``[IMG7]``
are its last 8 ids) and image processor. Prompts are left-padded so a batch generates together;
sample i of a batch gets the same tokens and (up to float rounding) the same hidden states as a
single call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .prompt import build_prompt, clean_expressive, img_positions


@dataclass
class LLMOutput:
    texts: list[str]  # cleaned expressive instructions
    hidden: torch.Tensor  # (B, n_img, llm_dim): last-layer states at the positions predicting [IMG0..n-1]
    found: list[bool]  # whether [IMG0] was generated (else the reference fallback was used)
    raw: list[str] = field(default_factory=list)  # decoded new tokens, before cleaning
    sequences: Any = None


class MLLM:
    """The LLM half of MGIE. ``meta`` is the ``llm`` section of ``mgie_config.json``."""

    def __init__(self, model, tokenizer, image_processor, meta: dict[str, Any]) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.meta = meta
        self.n_img = int(meta.get("num_img_tokens", 8))
        self.img_ids = tokenizer.convert_tokens_to_ids([f"[IMG{i}]" for i in range(self.n_img)])
        vocab = model.get_input_embeddings().weight.shape[0]
        if list(self.img_ids) != list(range(vocab - self.n_img, vocab)):
            raise ValueError(f"the [IMG] tokens must be the last {self.n_img} rows of the embedding matrix "
                             f"(ids {self.img_ids}, vocabulary {vocab})")
        self.image_token = meta.get("image_token", "<image>")
        self.image_seq_length = int(model.config.image_seq_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id)
        self.logits_processors: list = []  # extra transformers LogitsProcessors (tests force outputs with it)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def emb(self) -> torch.Tensor:
        """The [IMG] input embeddings, ``embed_tokens.weight[-n:]`` (what training feeds the edit head)."""
        return self.model.get_input_embeddings().weight[-self.n_img:]

    # ------------------------------------------------------------------ inputs
    def prompt(self, instruction: str) -> str:
        return build_prompt(
            instruction, template=self.meta.get("template", "simple"), image_token=self.image_token,
            image_seq_length=self.image_seq_length, im_start=self.meta.get("im_start", ""),
            im_end=self.meta.get("im_end", ""),
        )

    def prompt_ids(self, instruction: str) -> list[int]:
        ids = self.tokenizer(self.prompt(instruction), add_special_tokens=False).input_ids
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + list(ids)

    def pixel_values(self, images: list) -> torch.Tensor:
        pv = self.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def batch(self, images: list, instructions: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids``/``attention_mask`` and ``pixel_values`` for ``generate``."""
        rows = [self.prompt_ids(t) for t in instructions]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "pixel_values": self.pixel_values(images)}

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def run(self, images: list, instructions: list[str], *, max_new_tokens: int,
            no_repeat_ngram_size: int = 0, cache: str = "dynamic", compile: bool = False) -> LLMOutput:
        """Greedy decoding (``do_sample=False, num_beams=1``) with per-step hidden states.

        ``cache="static"`` preallocates the KV cache (fixed shapes); ``compile`` then lets transformers
        compile the decode step (GPU only). Tokens and hidden states are the same within float tolerance.
        """
        from transformers import GenerationConfig, LogitsProcessorList

        inputs = self.batch(images, instructions)
        prompt_length = inputs["input_ids"].shape[1]
        tok = self.tokenizer
        gen = GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
            no_repeat_ngram_size=no_repeat_ngram_size or None, eos_token_id=tok.eos_token_id,
            pad_token_id=self.pad_id, bos_token_id=tok.bos_token_id, output_hidden_states=True,
            return_dict_in_generate=True, use_cache=True,
            cache_implementation="static" if cache == "static" else None, disable_compile=not compile,
        )
        out = self.model.generate(**inputs, generation_config=gen,
                                  logits_processor=LogitsProcessorList(self.logits_processors))
        # hid[:, i] is the last-layer (final-norm) state of input token i: the first step returns every
        # prompt position, each later step one (the reference's hidden-state concatenation).
        hid = torch.cat([step[-1] for step in out.hidden_states], dim=1)
        seqs = out.sequences.tolist()
        texts, raws, found, rows = [], [], [], []
        for b, seq in enumerate(seqs):
            p, ok, length = img_positions(seq, prompt_length, self.img_ids[0], tok.eos_token_id, self.n_img)
            rows.append(hid[b, p: p + self.n_img])
            found.append(ok)
            raw = tok.decode(seq[prompt_length:length], skip_special_tokens=False)
            raws.append(raw)
            texts.append(clean_expressive(raw, eos_token=tok.eos_token))
        return LLMOutput(texts=texts, hidden=torch.stack(rows), found=found, raw=raws, sequences=out.sequences)
