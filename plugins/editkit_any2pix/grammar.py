"""The answer grammar of the InstructAny2Pix LLM, parsed from token ids.

The answer names the base input with ``<base>`` (or ``<base_null>``), then ``<im_gen>`` followed by
``<video>`` slots: the first slot after the last ``<im_gen>`` is [gen], further ones are [sub] entries
(``additions: name:<video> ...``). A target caption may appear in the first ``[...]`` bracket of the
decoded text. Embeddings are read from the hidden state of the position that *predicts* a slot token.
The reference crashes (IndexError / None) on malformed answers; here each case is a clear error or a
documented fallback.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from editkit.errors import GuideError

SPECIAL_TOKENS = ("<im_gen_start>", "<im_gen>", "<mask_gen>", "<audio_gen>", "<audio_gen_start>", "<audio>",
                  "<video>", "<base>", "<base_null>")


@dataclass
class Parsed:
    gen: int  # index (in the full sequence) of the state that predicts the [gen] slot
    subs: list[int] = field(default_factory=list)
    base: int | None = None  # state predicting <base>; None when the answer has <base_null> or no base
    caption: str | None = None


def parse(ids: list[int], prompt_len: int, token_ids: dict[str, int], text: str) -> Parsed:
    """Positions in ``prompt + answer`` (``ids`` is the full sequence; the answer starts at ``prompt_len``)."""
    answer = ids[prompt_len:]
    im_gen, video, base = token_ids["<im_gen>"], token_ids["<video>"], token_ids["<base>"]
    gens = [i for i, t in enumerate(answer) if t == im_gen]
    if not gens:
        raise GuideError(f"guide 'any2pix': the language model's answer has no <im_gen> token, so there is no "
                         f"[gen] embedding (answer: {text[:120]!r}); try another seed or a higher temperature")
    slots = [i for i, t in enumerate(answer) if t == video and i > gens[-1]]
    if not slots:
        raise GuideError(f"guide 'any2pix': the language model's answer has no <video> slot after <im_gen> "
                         f"(answer: {text[:120]!r}); try another seed or a higher temperature")
    bases = [i for i, t in enumerate(answer) if t == base]
    match = re.search(r"\[([^\[\]]+)\]", text)
    return Parsed(
        gen=prompt_len + slots[0] - 1,
        subs=[prompt_len + i - 1 for i in slots[1:]],
        base=prompt_len + bases[0] - 1 if bases else None,
        caption=match.group(1).strip() if match else None,
    )
