"""The vocabulary of EditWorld: shape kinds, colours, sizes, positions, backgrounds, and scenes.

Everything here is plain Python (no numpy): the scene description, its canonical key, the split
rule, captions, phrases and the tokenizer/vocabulary that the tiny text models are built from.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable

# --------------------------------------------------------------------------- attributes
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
"""Shape kinds. Each has its own outline and, in the multimodal family, its own timbre."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (45, 175, 70),
    "blue": (45, 85, 225),
    "yellow": (240, 215, 45),
    "purple": (155, 60, 200),
    "cyan": (45, 205, 215),
}
"""Object colours: saturated and pairwise >= 110 apart in the largest channel difference (so no pixel
can be within the success tolerance of two of them) and >= 67 from every background pixel
(textures included), so an object can never be confused with background."""

SIZES: tuple[str, ...] = ("small", "large")
SIZE_SCALE: dict[str, float] = {"small": 0.6, "large": 0.88}
"""Object extent as a fraction of a grid cell (the bounding radius is ``scale * cell / 2``)."""

POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
"""The 3x3 grid, row-major. ``POSITION_CELL[name] = (row, column)``."""
POSITION_CELL: dict[str, tuple[int, int]] = {name: divmod(i, 3) for i, name in enumerate(POSITIONS)}
POSITION_PHRASE: dict[str, str] = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "cream": (226, 219, 198),
    "sand": (198, 164, 134),
    "grey": (138, 138, 138),
    "slate": (82, 94, 112),
    "charcoal": (44, 44, 50),
}
"""Named muted background tones (the "change the background" edit). Pairwise >= 30 apart in mean
channel difference, so a background of the wrong colour fails the region check of edit success."""
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)
"""The object colour and background tone names, in table order (what the generator draws from)."""

BACKGROUND_STYLES: tuple[str, ...] = ("flat", "gradient", "radial", "noise")
"""Background texture styles; each has ``BACKGROUND_VARIANTS`` variants (direction, centre or noise
seed). The texture is a low-amplitude luminance modulation shared by all colours, so changing the
background colour keeps the texture."""
BACKGROUND_VARIANTS = 8
BACKGROUND_AMPLITUDE = 14.0
"""Peak luminance modulation of textured backgrounds, in 0-255 levels."""

CUTOUT_BACKGROUND: tuple[int, int, int] = (128, 128, 128)
"""Plain neutral grey behind an object's cut-out image (not one of the named backgrounds)."""


# --------------------------------------------------------------------------- scene description
@dataclass(frozen=True, slots=True)
class Obj:
    """One object: ``kind`` in KINDS, ``colour`` in COLOURS, ``size`` in SIZES, ``position`` in POSITIONS."""

    kind: str
    colour: str
    size: str
    position: str

    @property
    def row(self) -> int:
        return POSITION_CELL[self.position][0]

    @property
    def col(self) -> int:
        return POSITION_CELL[self.position][1]

    def noun(self) -> str:
        """``"small red circle"``"""
        return f"{self.size} {self.colour} {self.kind}"

    def full(self) -> str:
        """The explicit, always unique name: ``"the small red circle at the top left"``."""
        return f"the {self.size} {self.colour} {self.kind} {POSITION_PHRASE[self.position]}"

    def replace(self, **changes: str) -> "Obj":
        values = {"kind": self.kind, "colour": self.colour, "size": self.size, "position": self.position}
        values.update(changes)
        return Obj(**values)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "position": self.position}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Obj":
        obj = cls(kind=data["kind"], colour=data["colour"], size=data["size"], position=data["position"])
        obj.validate()
        return obj

    def validate(self) -> None:
        for field_name, allowed in (("kind", KINDS), ("colour", COLOURS), ("size", SIZES), ("position", POSITIONS)):
            if getattr(self, field_name) not in allowed:
                raise ValueError(f"object {field_name} {getattr(self, field_name)!r} is not one of {list(allowed)}")


@dataclass(frozen=True, slots=True)
class Background:
    """``colour`` in BACKGROUNDS (or ``"plain"`` for cut-outs), ``style`` in BACKGROUND_STYLES, ``variant``."""

    colour: str
    style: str = "flat"
    variant: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"colour": self.colour, "style": self.style, "variant": self.variant}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Background":
        bg = cls(colour=data["colour"], style=data.get("style", "flat"), variant=int(data.get("variant", 0)))
        if bg.colour not in BACKGROUNDS and bg.colour != "plain":
            raise ValueError(f"background colour {bg.colour!r} is not one of {list(BACKGROUNDS)}")
        if bg.style not in BACKGROUND_STYLES:
            raise ValueError(f"background style {bg.style!r} is not one of {list(BACKGROUND_STYLES)}")
        if not 0 <= bg.variant < BACKGROUND_VARIANTS:
            raise ValueError(f"background variant {bg.variant} is not in [0, {BACKGROUND_VARIANTS})")
        return bg


@dataclass(frozen=True, slots=True)
class Scene:
    """A background and 0-4 objects on distinct grid cells, kept in row-major position order."""

    objects: tuple[Obj, ...]
    background: Background

    @staticmethod
    def make(objects: Iterable[Obj], background: Background) -> "Scene":
        objs = tuple(sorted(objects, key=lambda o: POSITIONS.index(o.position)))
        if len({o.position for o in objs}) != len(objs):
            raise ValueError("two objects share a grid position")
        return Scene(objs, background)

    def key(self) -> str:
        """Canonical semantic description used for the split rule (texture style/variant excluded)."""
        return scene_key(self)

    def occupied(self) -> set[str]:
        return {o.position for o in self.objects}

    def free_positions(self) -> list[str]:
        used = self.occupied()
        return [p for p in POSITIONS if p not in used]

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background.to_dict(), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scene":
        return cls.make([Obj.from_dict(o) for o in data["objects"]], Background.from_dict(data["background"]))


def scene_key(scene: Scene) -> str:
    """``"bg=cream|top left:small:red:circle|center:large:blue:square"`` (objects in grid order)."""
    parts = [f"bg={scene.background.colour}"]
    parts += [f"{o.position}:{o.size}:{o.colour}:{o.kind}" for o in scene.objects]
    return "|".join(parts)


def near_misses(obj: Obj) -> list[Obj]:
    """The object drawn as every other kind, at the other size, and in every other colour: the renders an edit
    that produces ``obj`` is checked against (edit success), and the hard negatives of the CLIP recipe."""
    alts = [obj.replace(kind=k) for k in KINDS if k != obj.kind]
    alts += [obj.replace(size=s) for s in SIZES if s != obj.size]
    alts += [obj.replace(colour=c) for c in COLOURS if c != obj.colour]
    return alts


def swap_object(scene: Scene, old: Obj, new: Obj) -> Scene:
    """``scene`` with ``old`` replaced by ``new``."""
    return Scene.make([new if o == old else o for o in scene.objects], scene.background)


SPLITS: tuple[str, ...] = ("train", "val", "test")


def split_of(scene: Scene) -> str:
    """The split a scene belongs to: ``sha1(scene_key) mod 10``: 0-7 train, 8 val, 9 test.

    Because the split is a function of the scene, no scene can ever appear in two splits; the
    generator rejects scenes of other splits while sampling.
    """
    bucket = int.from_bytes(hashlib.sha1(scene_key(scene).encode()).digest()[:8], "big") % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


# --------------------------------------------------------------------------- captions
def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe(scene: Scene) -> str:
    """A caption: ``"a cream background with a small red circle at the top left and a large blue square in the center"``."""
    bg = scene.background.colour
    if not scene.objects:
        return f"an empty {bg} background"
    objs = [f"a {o.noun()} {POSITION_PHRASE[o.position]}" for o in scene.objects]
    return f"a {bg} background with {_join(objs)}"


# --------------------------------------------------------------------------- tokens and vocabulary
_TOKEN_RE = re.compile(r"\[[a-z]+[0-9]*\]|[a-z]+|[0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase word-level tokens; punctuation and ``[image1]``/``[audio1]`` markers are single tokens."""
    return _TOKEN_RE.findall(text.lower())


def normalize_text(text: str) -> str:
    """Tokens joined by single spaces: the form in which rewrites are compared for exact match."""
    return " ".join(tokenize(text))


MARKERS: tuple[str, ...] = ("[image1]", "[audio1]")
