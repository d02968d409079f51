"""Data of the ``mgie`` recipe: EditWorld samples as teacher-forcing batches, the LM forward pass, the [IMG]
states, and the expressive exact match the recipe logs during training."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class Pool:
    """EditWorld samples as tensors: images for the tower (uint8), prompt/target token ids, and VAE latents
    unless ``vae`` is None (a pool for phase 1 alone)."""

    def __init__(self, samples, mllm, vae, scale: float, n_img: int) -> None:
        from .ip2p import encode_pool

        tok = mllm.tokenizer
        self.rewrites = [s.rewrite for s in samples]  # only what training reads, not the samples' other images
        self.pixels = torch.from_numpy(np.stack([s.source for s in samples])).permute(0, 3, 1, 2)
        self.src = encode_pool(vae, [s.source for s in samples]) if vae is not None else None
        self.tgt = encode_pool(vae, [s.target for s in samples]) * scale if vae is not None else None
        self.prompts = [mllm.prompt_ids(s.instruction) for s in samples]
        self.answers = [tok(r, add_special_tokens=False).input_ids for r in self.rewrites]
        self.tail = list(mllm.img_ids) + [tok.eos_token_id]
        self.pad = mllm.pad_id
        self.n_img = n_img
        proc = mllm.image_processor  # the guide's own normalisation (tested against it)
        self.mean = torch.tensor(proc.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(proc.image_std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.rewrites)

    def batch(self, idx: torch.Tensor, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Right-padded teacher-forcing batch; ``img_pos[b]`` is the position whose state predicts [IMG0]."""
        rows, labels, pos = [], [], []
        for i in idx.tolist():
            prompt, answer = self.prompts[i], self.answers[i] + self.tail
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
            pos.append(len(prompt) + len(self.answers[i]) - 1)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (r, l) in enumerate(zip(rows, labels)):
            ids[b, : len(r)], lab[b, : len(l)], mask[b, : len(r)] = torch.tensor(r), torch.tensor(l), 1
        out = {"input_ids": ids, "labels": lab, "attention_mask": mask, "img_pos": torch.tensor(pos),
               "pixel_values": (self.pixels[idx].float() / 255 - self.mean) / self.std}
        if self.src is not None:
            out.update(src=self.src[idx], tgt=self.tgt[idx])
        return {k: v.to(device) for k, v in out.items()}


def lm_forward(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy on the answer tokens, last-layer hidden states)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], output_hidden_states=True)
    logits = out.logits[:, :-1].float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    return ce, out.hidden_states[-1]


def img_states(hidden: torch.Tensor, pos: torch.Tensor, n: int) -> torch.Tensor:
    """``hidden[b, pos_b : pos_b + n]`` for every b: the states that predict [IMG0]..[IMG(n-1)]."""
    index = pos[:, None] + torch.arange(n, device=pos.device)[None]
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))


@torch.no_grad()
def expressive_exact_match(mllm, samples, max_new_tokens: int, batch: int = 32) -> dict[str, float]:
    """Greedy decoding as the guide does it; exact match of the cleaned text with the rewrite, by family."""
    from PIL import Image

    from ..editworld import normalize_text

    mllm.model.eval()
    hits: dict[str, list[int]] = {}
    for i in range(0, len(samples), batch):
        chunk = samples[i: i + batch]
        out = mllm.run([Image.fromarray(s.source) for s in chunk], [s.instruction for s in chunk],
                       max_new_tokens=max_new_tokens)
        for s, text in zip(chunk, out.texts):
            ok = normalize_text(text).rstrip(" .") == normalize_text(s.rewrite).rstrip(" .")
            hits.setdefault(s.family, []).append(int(ok))
    return {f"exact_match_{fam}": round(sum(v) / len(v), 4) for fam, v in sorted(hits.items())}
