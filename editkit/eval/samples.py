"""The dataset-independent sample the evaluation runner and the metrics work on.

Every dataset adapter (:mod:`editkit.eval.datasets`) turns its own layout into :class:`EvalSample`
objects. Images may be held as arrays or as paths read on demand (benchmarks of 512x512 photos are not
loaded into memory at once). Conventions:

* images are (H, W, 3) uint8 RGB arrays;
* ``mask`` is an (H, W) bool array, **True = the edit region** (the pixels the edit may change); the
  unedited region (background) is ``~mask``;
* ``chain_from`` names the sample whose *output* is this sample's source (multi-turn editing from the
  model's own previous result); the runner substitutes it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInputError

ImageRef = Any
"""An (H, W, 3) uint8 array, a path to an image file, or a zero-argument callable returning an array."""

FIELDS = ("target", "mask", "source_caption", "target_caption", "edit_type", "rewrite", "editworld")
"""Optional sample fields a metric can declare in ``needs`` (``text``: the guide's text output, too)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def present(value: Any) -> bool:
    """Not None and not an empty string (arrays count as present)."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def safe_name(sample_id: str) -> str:
    """A file-name-safe version of a sample id (used for ``outputs/<name>.png``)."""
    name = _UNSAFE.sub("_", str(sample_id)).strip("._") or "sample"
    return name[:150]


def read_rgb(path: str | Path, where: str = "") -> np.ndarray:
    """An image file as (H, W, 3) uint8; transparency composited on white."""
    path = Path(path)
    label = f"{where}: " if where else ""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(canvas, rgba)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InvalidInputError(f"{label}image file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{label}cannot read image {path}: {exc}") from None


def read_mask(path: str | Path, where: str = "") -> np.ndarray:
    """A mask file as an (H, W) bool array, True = edit region.

    A mask whose alpha channel holds both opaque and fully transparent pixels follows the DALL-E 2
    convention (MagicBrush's masks were drawn for it): transparent = edit region. Otherwise the
    luminance decides: > 127 = edit region (white = editable, as everywhere in editkit).
    """
    path = Path(path)
    label = f"{where}: " if where else ""
    try:
        with Image.open(path) as im:
            im.load()
            if "A" in im.getbands():
                alpha = np.asarray(im.getchannel("A"))
                if (alpha == 0).any() and (alpha == 255).any():
                    return alpha == 0
            return np.asarray(im.convert("L")) > 127
    except FileNotFoundError:
        raise InvalidInputError(f"{label}mask file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{label}cannot read mask {path}: {exc}") from None


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB array to ``size`` = (H, W) with bicubic filtering (no-op when already that size)."""
    if image.shape[:2] == tuple(size):
        return image
    pil = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(pil)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == tuple(size):
        return mask
    pil = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(pil) > 127


@dataclass
class EvalSample:
    """One (source, instruction) pair with whatever references its dataset provides."""

    id: str
    instruction: str
    source: ImageRef
    target: ImageRef | None = None
    mask: ImageRef | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    edit_type: str | None = None
    family: str | None = None
    rewrite: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    chain_from: str | None = None
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    editworld: Any = None  # editkit.editworld.generator.Sample for EditWorld samples

    def fields(self) -> set[str]:
        """Names of the optional fields this sample has (see :data:`FIELDS`)."""
        return {name for name in FIELDS if present(getattr(self, name))}

    def _load(self, ref: ImageRef, what: str) -> np.ndarray:
        if isinstance(ref, np.ndarray):
            return ref
        if callable(ref):
            return ref()
        return read_rgb(ref, f"sample {self.id}: {what}")

    def load_source(self) -> np.ndarray:
        return self._load(self.source, "source")

    def load_target(self, size: tuple[int, int] | None = None) -> np.ndarray | None:
        if self.target is None:
            return None
        image = self._load(self.target, "target")
        return resize_rgb(image, size) if size is not None else image

    def load_mask(self, size: tuple[int, int] | None = None) -> np.ndarray | None:
        if self.mask is None:
            return None
        ref = self.mask
        if isinstance(ref, np.ndarray):
            mask = ref.astype(bool, copy=False)
        elif callable(ref):
            mask = np.asarray(ref()).astype(bool)
        else:
            mask = read_mask(ref, f"sample {self.id}: mask")
        return resize_mask(mask, size) if size is not None else mask


@dataclass
class EvalDataset(Sequence[EvalSample]):
    """Samples of one dataset with where they came from (``format``, ``root``) and loader notes."""

    samples: list[EvalSample]
    format: str
    root: str = "<in memory>"
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[EvalSample]:
        return iter(self.samples)

    def fields(self) -> set[str]:
        """Optional fields present in at least one sample."""
        have: set[str] = set()
        for s in self.samples:
            have |= s.fields()
        return have

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "path": self.root, "count": len(self.samples), **self.meta}


def check_ids(samples: Sequence[EvalSample], where: str) -> None:
    """Sample ids must be unique, also after :func:`safe_name` (they name the output files)."""
    seen: dict[str, str] = {}
    for s in samples:
        name = safe_name(s.id)
        if name in seen:
            other = seen[name]
            if other == s.id:
                raise InvalidInputError(f"{where}: duplicate sample id {s.id!r}")
            raise InvalidInputError(f"{where}: sample ids {other!r} and {s.id!r} map to the same file name")
        seen[name] = s.id
    earlier: set[str] = set()
    for s in samples:
        if s.chain_from is not None and s.chain_from not in earlier:
            raise InvalidInputError(f"{where}: sample {s.id!r} continues from {s.chain_from!r}, which is not an "
                                    "earlier sample of the dataset")
        earlier.add(s.id)


def limit_samples(samples: list[EvalSample], limit: int | None) -> list[EvalSample]:
    """The first ``limit`` samples (earlier turns always come first, so chains stay complete)."""
    return samples if limit is None else samples[:limit]
