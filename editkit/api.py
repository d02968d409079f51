"""The one-call API: :func:`edit`, :func:`load_guide`, :func:`available_guides`.

Loaded guides are cached per (name, validated config); diffusion backends are shared through one
process-wide ``BackendCache``, created (and torch imported) only when a guide first asks for it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from . import registry
from .errors import EditkitError, GuideLoadError, InvalidInputError
from .images import load_image, load_mask
from .types import EditRequest, EditResult

if TYPE_CHECKING:  # pragma: no cover
    from .backend import BackendCache
    from .guide import Guide

__all__ = ["edit", "load_guide", "available_guides", "backend_cache", "clear_cache"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus"}

_lock = threading.RLock()
_guides: dict[tuple[str, str], "Guide"] = {}


class _LazyBackendCache:
    """Stands in for the process-wide ``editkit.backend.BackendCache`` until a guide uses it.

    Guides that never touch it (classical guides, test guides) never import torch or diffusers.
    """

    def __init__(self) -> None:
        self._real: "BackendCache | None" = None

    def resolve(self) -> "BackendCache":
        with _lock:
            if self._real is None:
                from .backend import BackendCache

                self._real = BackendCache()
            return self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)

    def __len__(self) -> int:
        return 0 if self._real is None else len(self._real)

    def __repr__(self) -> str:
        return f"<lazy BackendCache ({'created' if self._real is not None else 'not created yet'})>"


_backends = _LazyBackendCache()


def backend_cache() -> _LazyBackendCache:
    """The process-wide backend cache every guide loads through."""
    return _backends


def available_guides() -> list[str]:
    """Names of the registered guides (imports no plugin)."""
    return registry.names()


def clear_cache(name: str | None = None) -> None:
    """Drop cached guides (all, or those of ``name``); backends stay cached."""
    with _lock:
        for key in [k for k in _guides if name is None or k[0] == name]:
            del _guides[key]


def _guide_instance(name: str, options: dict[str, Any]) -> "Guide":
    """The cached (possibly not yet loaded) guide for ``name`` and validated ``options``."""
    cls = registry.load_guide_class(name)
    config = cls.validate(options)
    key = (name, f"{cls.__module__}:{cls.__qualname__}:{config.model_dump_json()}")
    with _lock:
        guide = _guides.get(key)
        if guide is None or type(guide) is not cls:
            guide = cls(config)
            _guides[key] = guide
        return guide


def _ensure_loaded(guide: "Guide") -> float:
    if getattr(guide, "_editkit_loaded", False):
        return 0.0
    t0 = time.perf_counter()
    with _lock:
        if not getattr(guide, "_editkit_loaded", False):
            try:
                guide.load(_backends)
            except EditkitError:
                raise
            except Exception as exc:  # missing weights, offline hub, out of memory...
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise GuideLoadError(f"guide '{guide.name}': loading failed: {detail}") from exc
            guide._editkit_loaded = True  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def load_guide(name: str, **config: Any) -> "Guide":
    """The guide ``name`` with ``config`` validated and its weights loaded (cached across calls)."""
    guide = _guide_instance(name, config)
    _ensure_loaded(guide)
    return guide


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _split_batch(image: Any) -> list[Any]:
    """A list stays a list; a 4-D array/tensor with N > 1 becomes N images."""
    if isinstance(image, (list, tuple)):
        return list(image)
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) == 4 and shape[0] > 1:
        return [image[i] for i in range(shape[0])]
    return [image]


def _label(src: Any, i: int, n: int) -> str | None:
    return None if isinstance(src, (str, os.PathLike)) else (f"image {i}" if n > 1 else "image")


def _load_extra(name: str, value: Any) -> Any:
    """Extra inputs: image files and 3-D/4-D arrays -> RGB PIL images, other files -> Path, rest unchanged."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.exists():
            raise InvalidInputError(f"input '{name}': '{path}': no such file")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return load_image(path)
        return path
    kind = type(value).__module__.split(".")[0]
    if kind == "PIL" or (kind in ("numpy", "torch") and getattr(value, "ndim", 0) in (3, 4)):
        return load_image(value, name=f"input '{name}'")  # 1-D/2-D arrays (waveforms) pass through
    return value


def _instructions(instruction: Any, n: int) -> list[str]:
    items = _as_list(instruction)
    for text in items:
        if not isinstance(text, str):
            raise InvalidInputError(f"the instruction must be a string, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError("the instruction is empty")
    if len(items) not in (1, n):
        raise InvalidInputError(f"got {len(items)} instructions for {n} images (give 1 or {n})")
    return items


def edit(
    image: Any,
    instruction: str | Sequence[str],
    guide: str = "ip2p",
    *,
    mask: Any = None,
    inputs: dict[str, Any] | None = None,
    seed: int = 0,
    **options: Any,
) -> EditResult:
    """Edit one image or a list of images with ``guide``; ``options`` are validated by its ``Config``.

    ``image``: path, PIL image, numpy array, tensor, or a list of them. ``instruction``: one string
    (broadcast) or one per image. ``mask``: box string ``"x0,y0,x1,y1"``, path, image or array (one, or
    one per image). ``inputs``: named extra inputs (paths to images or audio, or objects).
    Sample ``i`` uses seed ``seed + i``.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    g = _guide_instance(guide, options)  # unknown guide / bad option fail before reading any file
    sources = _split_batch(image)
    if not sources:
        raise InvalidInputError("no image given")
    images = [load_image(src, name=_label(src, i, len(sources))) for i, src in enumerate(sources)]
    instructions = _instructions(instruction, len(images))
    masks = None
    if mask is not None:
        mask_list = _as_list(mask)
        if len(mask_list) not in (1, len(images)):
            raise InvalidInputError(f"got {len(mask_list)} masks for {len(images)} images (give 1 or {len(images)})")
        if len(mask_list) == 1:
            mask_list = mask_list * len(images)
        masks = [load_mask(m, img.size) for m, img in zip(mask_list, images)]
    extra = {str(k): _load_extra(str(k), v) for k, v in (inputs or {}).items()}
    request = EditRequest(images=images, instructions=instructions, masks=masks, inputs=extra, seed=seed)
    timings["load_inputs"] = time.perf_counter() - t0
    g.check_inputs(request)  # missing mask / inputs fail before any weights are loaded
    timings["load_guide"] = _ensure_loaded(g)
    t1 = time.perf_counter()
    result = g.edit(request)
    for key, value in timings.items():
        result.timings.setdefault(key, value)
    result.timings.setdefault("edit", time.perf_counter() - t1)
    result.timings["total"] = time.perf_counter() - t0
    return result
