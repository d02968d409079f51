"""Prompts, [IMG] tokens, the expressive-instruction rule and the [IMG] position rule (no torch).

Everything here follows apple/ml-mgie (demo.ipynb, mgie_train.py) as described in
docs/guides/mgie.md; the two guarded reference bugs (empty expressive instruction, missing [IMG0])
are noted where they are handled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

#: The question MGIE asks its multimodal LLM (apple/ml-mgie:demo.ipynb).
QUERY = "what will this image be like if '{instruction}'"
NUM_IMG_TOKENS = 8  # hard-coded in the reference (mgie_train.py#L531, #L790)


def img_tokens(n: int = NUM_IMG_TOKENS) -> list[str]:
    return [f"[IMG{i}]" for i in range(n)]


@dataclass(frozen=True)
class Template:
    """A conversation template in the style of LLaVA's ``Conversation`` with ``SeparatorStyle.TWO``."""

    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    sep: str = " "
    sep2: str = "</s>"

    def prompt(self, query: str) -> str:
        """``get_prompt()`` of haotian-liu/LLaVA@7ace501 for one user turn and an open assistant turn."""
        seps = (self.sep, self.sep2)
        out = self.system + seps[0]
        messages = ((self.roles[0], query), (self.roles[1], None))
        for i, (role, message) in enumerate(messages):
            out += f"{role}: {message}{seps[i % 2]}" if message else f"{role}:"
        return out if self.system else out.lstrip()


TEMPLATES: dict[str, Template] = {
    # conv_templates['vicuna_v1_1'] (llava/conversation.py#L232-L242): what the official release uses.
    "llava_v1": Template(
        system="A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    ),
    # The tiny EditWorld models: same turn structure, no system prompt (it would only cost tokens).
    "simple": Template(system=""),
}


def build_prompt(instruction: str, *, template: str, image_token: str, image_seq_length: int,
                 im_start: str = "", im_end: str = "") -> str:
    """The full prompt text with the image placeholder tokens already expanded.

    Official: ``... USER: what will this image be like if '<instr>'\\n<im_start><im_patch>x256<im_end> ASSISTANT:``.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown conversation template '{template}' (known: {', '.join(TEMPLATES)})")
    image_block = im_start + image_token * image_seq_length + im_end
    query = QUERY.format(instruction=instruction.strip()) + "\n" + image_block
    return TEMPLATES[template].prompt(query)


def clean_expressive(text: str, eos_token: str | None = "</s>", img0: str = "[IMG0]") -> str:
    """The expressive instruction as the reference demo shows it (``remove_alter`` in demo.ipynb).

    Keep what follows ``ASSISTANT:`` and precedes the end-of-sequence token; cut at the first
    "alternative" (case-insensitive) and at ``[IMG0]``; keep the first two sentences (split on '.');
    end with '.'. Reference bug guarded: an empty remainder gives "" instead of an IndexError.
    """
    s = text
    if "ASSISTANT:" in s:
        s = s[s.index("ASSISTANT:") + len("ASSISTANT:"):]
    for stop in (eos_token, "</s>"):
        if stop and stop in s:
            s = s[: s.index(stop)]
    low = s.lower()
    if "alternative" in low:
        s = s[: low.index("alternative")]
    if img0 in s:
        s = s[: s.index(img0)]
    # The reference re-joins with '.' alone ("red.The sun"); editkit puts a space after the period.
    s = ". ".join(part.strip() for part in s.split(".")[:2]).strip()
    if s in ("", "."):
        return ""
    if not s.endswith("."):
        s += "."
    return s


def img_positions(tokens: Sequence[int], prompt_length: int, img0_id: int, eos_id: int | None,
                  n: int = NUM_IMG_TOKENS) -> tuple[int, bool, int]:
    """Where the edit head reads the LLM: ``(p, found, length)`` so that ``hidden[p:p+n]`` is used.

    ``tokens`` is one row of the generated output (prompt, possibly left-padded, then new tokens,
    possibly followed by padding after the end-of-sequence token). ``length`` is the sequence length
    up to and including the first end-of-sequence token; the hidden states have ``length - 1``
    positions (position i = the state of input token i, which predicts token i+1). As in the
    reference: ``p = index([IMG0]) - 1`` (the states that predict [IMG0]..[IMG(n-1)]), or the last
    positions ``len(hid) - n - 1`` when no [IMG0] was generated, then ``p = min(p, len(hid) - n - 1)``.
    """
    tokens = list(tokens)
    length = len(tokens)
    if eos_id is not None:
        for i in range(prompt_length, len(tokens)):
            if tokens[i] == eos_id:
                length = i + 1
                break
    n_hid = length - 1
    found = False
    p = n_hid - (n + 1)
    for i in range(prompt_length, length):
        if tokens[i] == img0_id:
            p, found = i - 1, True
            break
    p = max(0, min(p, n_hid - (n + 1)))
    return p, found, length
