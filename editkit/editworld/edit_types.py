"""EditWorld's edit types, their families, and how a ``--types`` selection resolves to them."""
from __future__ import annotations

import hashlib
from typing import Sequence

from ..errors import InvalidInputError


EXPLICIT_TYPES: tuple[str, ...] = (
    "recolour", "remove", "add", "replace", "resize", "move", "background", "brightness", "contrast",
)
REFERRING_TYPES: tuple[str, ...] = ("unique_attribute", "superlative", "spatial", "odd_one_out")
MULTIMODAL_TYPES: tuple[str, ...] = (
    "add_image", "add_audio", "replace_image", "replace_audio", "remove_image", "remove_audio",
)
FAMILIES: dict[str, tuple[str, ...]] = {
    "explicit": EXPLICIT_TYPES,
    "referring": REFERRING_TYPES,
    "multimodal": MULTIMODAL_TYPES,
}
EDIT_TYPES: tuple[str, ...] = EXPLICIT_TYPES + REFERRING_TYPES + MULTIMODAL_TYPES
OPT_IN_TYPES: dict[str, str] = {"replace_image_pair": "multimodal"}
"""Types generated only when named (``--types replace_image_pair``), so that "all" and the families keep the
samples they always had. ``replace_image_pair`` ("replace the [image1] with the [image2]") hands a guide three
images, the scene and two cut-outs: the probe of InstructAny2Pix's [base] retrieval among several inputs."""
FAMILY_OF: dict[str, str] = {**{t: fam for fam, types in FAMILIES.items() for t in types}, **OPT_IN_TYPES}
ACTIONS: tuple[str, ...] = EXPLICIT_TYPES
"""What an edit does to the scene; referring and multimodal edits use one of these too."""
REFERRING_ACTIONS: tuple[str, ...] = ("recolour", "remove", "replace", "move")
GLOBAL_ACTIONS: tuple[str, ...] = ("brightness", "contrast")


def resolve_types(types: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, a family name, an edit type, or a list of those -> the tuple of edit types."""
    items = [types] if isinstance(types, str) else list(types)
    out: list[str] = []
    for item in items:
        if item == "all":
            chosen: Sequence[str] = EDIT_TYPES
        elif item in FAMILIES:
            chosen = FAMILIES[item]
        elif item in EDIT_TYPES or item in OPT_IN_TYPES:
            chosen = (item,)
        else:
            raise InvalidInputError(
                f"unknown EditWorld edit type {item!r}; use all, {', '.join(FAMILIES)} or one of: "
                f"{', '.join((*EDIT_TYPES, *OPT_IN_TYPES))}"
            )
        out += [t for t in chosen if t not in out]
    if not out:
        raise InvalidInputError("no EditWorld edit types selected")
    return tuple(out)


def selection_tag(types: Sequence[str]) -> str:
    """Short name of a type selection for sample ids: "all", a family name, or a hash."""
    if tuple(types) == EDIT_TYPES:
        return "all"
    for family, members in FAMILIES.items():
        if tuple(types) == members:
            return family
    if len(types) == 1:
        return types[0]
    return "t" + hashlib.sha1("+".join(types).encode()).hexdigest()[:6]
