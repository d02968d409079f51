"""What EditWorld says: instruction templates (several paraphrases per edit), canonical rewrites, and the
vocabulary a word-level tokenizer needs to cover every instruction, rewrite and caption."""
from __future__ import annotations

import re

from .edit_types import GLOBAL_ACTIONS
from .world import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    KINDS,
    MARKERS,
    POSITION_PHRASE,
    POSITIONS,
    SIZES,
    Obj,
    tokenize,
)


# Instructions have several paraphrases; rewrites are canonical (one template per action).
T_RECOLOUR = ("make {ref} {colour}", "turn {ref} {colour}", "change {ref} to {colour}",
              "recolour {ref} {colour}", "paint {ref} {colour}", "colour {ref} {colour}")
T_REMOVE = ("remove {ref}", "delete {ref}", "erase {ref}", "take away {ref}", "get rid of {ref}")
T_ADD = ("add a {noun} {where}", "put a {noun} {where}", "place a {noun} {where}", "draw a {noun} {where}")
T_REPLACE = ("replace {ref} with a {kind}", "turn {ref} into a {kind}", "change {ref} into a {kind}",
             "swap {ref} for a {kind}")
T_GROW = ("make {ref} larger", "make {ref} bigger", "enlarge {ref}", "make {ref} large")
T_SHRINK = ("make {ref} smaller", "shrink {ref}", "make {ref} small", "reduce the size of {ref}")
T_MOVE = ("move {ref} to the {pos}", "shift {ref} to the {pos}", "put {ref} {where}", "place {ref} {where}")
T_BACKGROUND = ("make the background {bg}", "change the background to {bg}", "turn the background {bg}",
                "paint the background {bg}", "recolour the background {bg}")
T_GLOBAL = {
    ("brightness", "brighter"): ("make the image brighter", "brighten the image", "increase the brightness",
                                 "make the picture brighter", "make it brighter"),
    ("brightness", "darker"): ("make the image darker", "darken the image", "decrease the brightness",
                               "reduce the brightness", "make the picture darker"),
    ("contrast", "increase"): ("increase the contrast", "boost the contrast", "add more contrast",
                               "give the image more contrast"),
    ("contrast", "decrease"): ("decrease the contrast", "reduce the contrast", "lower the contrast",
                               "give the image less contrast"),
}
R_GLOBAL = {
    ("brightness", "brighter"): "make the image brighter",
    ("brightness", "darker"): "make the image darker",
    ("contrast", "increase"): "increase the contrast of the image",
    ("contrast", "decrease"): "decrease the contrast of the image",
}
CAPTION_PREFIX = {
    ("brightness", "brighter"): "a brighter image of ",
    ("brightness", "darker"): "a darker image of ",
    ("contrast", "increase"): "a high contrast image of ",
    ("contrast", "decrease"): "a low contrast image of ",
}
# referring expressions
T_UNIQUE = {"kind": ("the only {kind}",), "colour": ("the only {colour} shape", "the only {colour} object"),
            "size": ("the only {size} shape", "the only {size} object")}
T_SUPERLATIVE = {"large": ("the largest {group}", "the biggest {group}"),
                 "small": ("the smallest {group}", "the tiniest {group}")}
T_SPATIAL = {"left": ("the leftmost shape", "the leftmost object"),
             "right": ("the rightmost shape", "the rightmost object"),
             "top": ("the topmost shape", "the highest shape"),
             "bottom": ("the bottommost shape", "the lowest shape")}
T_ODD = ("the odd one out", "the odd shape out", "the shape that is different")
# multimodal
T_MM_ADD = ("add the {m} {where}", "put the {m} {where}", "place the {m} {where}", "add {m} {where}")
T_MM_REPLACE = ("replace {ref} with the {m}", "replace {ref} with {m}", "swap {ref} for the {m}",
                "turn {ref} into the {m}")
T_MM_REMOVE = ("remove the {m}", "delete the {m}", "take away the {m}", "erase the {m}")
T_MM_REPLACE_PAIR = ("replace the {a} with the {b}", "swap the {a} for the {b}", "turn the {a} into the {b}")

CAPTION_WORDS = ("a", "an", "empty", "background", "with", "and", ",")
"""Words that :func:`describe` adds around attribute values."""


def rewrite_for(action: str, obj: Obj | None, result: Obj | None, **extra: str) -> str:
    """The canonical explicit rewrite of an edit (what an expressive instruction should say)."""
    if action == "recolour":
        return f"make {obj.full()} {result.colour}"
    if action == "remove":
        return f"remove {obj.full()}"
    if action == "add":
        return f"add a {result.noun()} {POSITION_PHRASE[result.position]}"
    if action == "replace":
        return f"replace {obj.full()} with a {result.noun()}"
    if action == "resize":
        return f"make {obj.full()} {result.size}"
    if action == "move":
        return f"move {obj.full()} to the {result.position}"
    if action == "background":
        return f"make the background {extra['background']}"
    if action in GLOBAL_ACTIONS:
        return R_GLOBAL[(action, extra["direction"])]
    raise ValueError(f"unknown action {action!r}")


def _template_tokens() -> set[str]:
    texts: list[str] = []
    groups = [T_RECOLOUR, T_REMOVE, T_ADD, T_REPLACE, T_GROW, T_SHRINK, T_MOVE, T_BACKGROUND, T_ODD,
              T_MM_ADD, T_MM_REPLACE, T_MM_REMOVE, T_MM_REPLACE_PAIR, *T_GLOBAL.values(), *T_UNIQUE.values(),
              *T_SUPERLATIVE.values(), *T_SPATIAL.values(), tuple(R_GLOBAL.values()), tuple(CAPTION_PREFIX.values())]
    for group in groups:
        texts += list(group)
    tokens: set[str] = set()
    for text in texts:
        tokens.update(tokenize(re.sub(r"\{[a-z_]+\}", " ", text)))
    return tokens


def vocabulary() -> list[str]:
    """Every token that can appear in an instruction, rewrite or caption, sorted.

    Lowercase words, punctuation and the ``[image1]``/``[audio1]`` markers, each as one token as
    produced by :func:`editkit.editworld.tokenize`. Rewrites use the same words as instructions
    (e.g. "the", attribute values, position phrases), so a word-level tokenizer built from this list
    covers everything the generator writes.
    """
    tokens = _template_tokens()
    tokens.update(["the", "only"])  # explicit references "the red circle"
    for values in (KINDS, COLOUR_NAMES, SIZES, BACKGROUND_NAMES, POSITIONS, tuple(POSITION_PHRASE.values()),
                   CAPTION_WORDS, MARKERS):
        for value in values:
            tokens.update(tokenize(value))
    return sorted(tokens)
