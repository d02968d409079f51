"""PIE-Bench (cure-lab/PnPInversion), read from a user-supplied copy.

``mapping_file.json`` maps an image key to ``image_path`` (relative to ``annotation_images/``),
``original_prompt``, ``editing_prompt`` (differences in ``[]``), ``editing_instruction``,
``editing_type_id``, ``blended_word`` and ``mask``: a run-length encoding of the edit region over the
row-major pixels, pairs ``(start, length)``, 1 = edit. The mask is decoded as it is (editkit
convention); the PIE-Bench-compatible metrics (``piebench_*``) additionally force the 1-pixel border
into the edit region as PIE-Bench's ``mask_decode`` does. Captions are the prompts without brackets.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ...errors import InvalidInputError
from ..samples import EvalDataset, EvalSample

EDIT_TYPES = {
    "0": "random", "1": "change_object", "2": "add_object", "3": "delete_object", "4": "change_content",
    "5": "change_pose", "6": "change_color", "7": "change_material", "8": "change_background", "9": "change_style",
}


def decode_rle(encoded: list[int], shape: tuple[int, int]) -> np.ndarray:
    """PIE-Bench RLE -> (H, W) bool, True = edit region (without PIE-Bench's forced border)."""
    length = shape[0] * shape[1]
    flat = np.zeros(length, bool)
    if len(encoded) % 2:
        raise ValueError("the RLE list must hold (start, length) pairs")
    for start, run in zip(encoded[0::2], encoded[1::2]):
        start, run = int(start), int(run)
        if start < 0 or run < 0:
            raise ValueError("negative start or length in the RLE mask")
        flat[start:min(start + run, length)] = True
    return flat.reshape(shape)


def encode_rle(mask: np.ndarray) -> list[int]:
    """The inverse of :func:`decode_rle` (used to write test fixtures)."""
    flat = np.concatenate([[False], mask.reshape(-1).astype(bool), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def force_border(mask: np.ndarray) -> np.ndarray:
    """PIE-Bench's ``mask_decode`` marks the 1-pixel border as edit region "to avoid annotation errors"."""
    out = mask.copy()
    out[0, :] = out[-1, :] = True
    out[:, 0] = out[:, -1] = True
    return out


def strip_brackets(prompt: str) -> str:
    return " ".join(prompt.replace("[", "").replace("]", "").split())


def _mask_loader(rle: list[int], image: Path, where: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            with Image.open(image) as im:
                width, height = im.size
            return decode_rle(rle, (height, width))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{where}: cannot decode the mask: {exc}") from None
    return load


def load(path: Path, limit: int | None = None) -> EvalDataset:
    mapping = path if path.is_file() else path / "mapping_file.json"
    root = mapping.parent
    if not mapping.is_file():
        raise InvalidInputError(f"{root} is not a PIE-Bench folder: mapping_file.json is missing")
    try:
        data: Any = json.loads(mapping.read_text())
    except ValueError as exc:
        raise InvalidInputError(f"{mapping}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{mapping}: expected an object mapping image keys to entries")
    images = root / "annotation_images" if (root / "annotation_images").is_dir() else root
    samples: list[EvalSample] = []
    for key, rec in data.items():
        if limit is not None and len(samples) >= limit:
            break
        where = f"{mapping}: entry {key!r}"
        if not isinstance(rec, dict):
            raise InvalidInputError(f"{where}: expected an object")
        missing = [k for k in ("image_path", "editing_instruction") if not rec.get(k)]
        if missing:
            raise InvalidInputError(f"{where}: missing {', '.join(missing)}")
        image = images / str(rec["image_path"])
        if not image.is_file():
            raise InvalidInputError(f"{where}: image {image} is missing")
        rle = rec.get("mask")
        if rle is not None and not (isinstance(rle, list) and all(isinstance(v, int) for v in rle)):
            raise InvalidInputError(f"{where}: 'mask' must be a list of integers (RLE)")
        type_id = str(rec.get("editing_type_id", ""))
        samples.append(EvalSample(
            id=str(key),
            instruction=str(rec["editing_instruction"]).strip(),
            source=image,
            mask=_mask_loader(rle, image, where) if rle is not None else None,
            source_caption=strip_brackets(str(rec["original_prompt"])) if rec.get("original_prompt") else None,
            target_caption=strip_brackets(str(rec["editing_prompt"])) if rec.get("editing_prompt") else None,
            edit_type=EDIT_TYPES.get(type_id, f"type{type_id}" if type_id else None),
            meta={"editing_type_id": type_id, "blended_word": rec.get("blended_word")},
        ))
    return EvalDataset(samples, "piebench", str(root), {"mapping_file": mapping.name},
                       ["PIE-Bench has no target images: target metrics are skipped"])
