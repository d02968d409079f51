"""The MagicBrush test layout (OSU-NLP-Group/MagicBrush), read from a user-supplied copy.

::

    test/edit_sessions.json        {"<img_id>": [{"input": "<img_id>-input.png", "mask": "<img_id>-mask1.png",
                                                  "output": "<img_id>-output1.png", "instruction": "..."}, ...]}
    test/images/<img_id>/          <img_id>-input.png, <img_id>-output<i>.png, <img_id>-mask<i>.png
    test/local_captions.json       captions of the ground-truth images, {"<img_id>": {"<file>": "..."}} or
                                   {"<file>": "..."} (also read: local_descriptions.json)
    test/global_descriptions.json  optional, the same shape; used for the source caption when the local
                                   captions do not describe the input image

Turn i of session ``<img_id>`` becomes sample ``<img_id>-<i>`` with ``target`` = ``output<i>``,
``mask`` = ``mask<i>`` (transparent or white = edit region), ``target_caption`` = the local caption of
the ground-truth output (MagicBrush's CLIP-T reference) and tags ``turn<i>`` (+ ``final_turn`` on the
last turn). Single-turn (:func:`load_single_turn`): turn i edits the ground-truth image of turn i-1
(MagicBrush's ``_inde_`` outputs, its "all-turn" numbers). Multi-turn (:func:`load_multi_turn`): turn
i edits the model's own output of turn i-1 (``_iter_``); MagicBrush reports the ``final_turn`` subset.
A missing ``input``/``mask``/``output`` entry falls back to those file names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError
from ..samples import EvalDataset, EvalSample

CAPTION_FILES = ("local_captions.json", "local_descriptions.json")
GLOBAL_CAPTION_FILES = ("global_descriptions.json", "global_captions.json")


def _root(path: Path) -> Path:
    if path.is_file():
        return path.parent
    if not (path / "edit_sessions.json").is_file() and (path / "test" / "edit_sessions.json").is_file():
        return path / "test"
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidInputError(f"{path}: invalid JSON: {exc}") from None


def _captions(root: Path, names: tuple[str, ...]) -> dict[str, Any]:
    for name in names:
        if (root / name).is_file():
            data = _read_json(root / name)
            if not isinstance(data, dict):
                raise InvalidInputError(f"{root / name}: expected a JSON object")
            return data
    return {}


def _caption(captions: dict[str, Any], img_id: str, file: str) -> str | None:
    nested = captions.get(img_id)
    if isinstance(nested, dict) and isinstance(nested.get(file), str):
        return nested[file]
    value = captions.get(file)
    return value if isinstance(value, str) else None


def _sessions(root: Path) -> dict[str, list[dict[str, Any]]]:
    index = root / "edit_sessions.json"
    if not index.is_file():
        raise InvalidInputError(f"{root} is not a MagicBrush test folder: edit_sessions.json is missing")
    data = _read_json(index)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{index}: expected an object mapping image ids to lists of turns")
    for img_id, turns in data.items():
        if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
            raise InvalidInputError(f"{index}: session {img_id!r} must be a non-empty list of turn objects")
        for i, turn in enumerate(turns, start=1):
            if not isinstance(turn.get("instruction"), str) or not turn["instruction"].strip():
                raise InvalidInputError(f"{index}: session {img_id!r} turn {i} has no instruction")
    return data


def _load(path: Path, limit: int | None, multi_turn: bool) -> EvalDataset:
    root = _root(path)
    sessions = _sessions(root)
    local = _captions(root, CAPTION_FILES)
    glob = _captions(root, GLOBAL_CAPTION_FILES)
    images = root / "images"
    samples: list[EvalSample] = []
    missing_captions = 0
    for img_id, turns in sessions.items():
        if limit is not None and len(samples) >= limit:
            break
        folder = images / str(img_id)
        if not folder.is_dir():
            raise InvalidInputError(f"{root}: image folder images/{img_id}/ of session {img_id!r} is missing")
        for i, turn in enumerate(turns, start=1):
            src_name = str(turn.get("input") or (f"{img_id}-input.png" if i == 1 else f"{img_id}-output{i - 1}.png"))
            out_name = str(turn.get("output") or f"{img_id}-output{i}.png")
            mask_name = str(turn.get("mask") or f"{img_id}-mask{i}.png")
            for name in (src_name, out_name):
                if not (folder / name).is_file():
                    raise InvalidInputError(f"{root}: session {img_id!r} turn {i}: images/{img_id}/{name} is missing")
            target_caption = _caption(local, str(img_id), out_name)
            missing_captions += target_caption is None
            source_caption = _caption(local, str(img_id), src_name) or _caption(glob, str(img_id), src_name)
            tags = (f"turn{i}",) + (("final_turn",) if i == len(turns) else ())
            samples.append(EvalSample(
                id=f"{img_id}-{i}",
                instruction=turn["instruction"].strip(),
                source=folder / src_name,
                target=folder / out_name,
                mask=(folder / mask_name) if (folder / mask_name).is_file() else None,
                source_caption=source_caption,
                target_caption=target_caption,
                chain_from=f"{img_id}-{i - 1}" if (multi_turn and i > 1) else None,
                tags=tags,
                meta={"session": str(img_id), "turn": i},
            ))
    notes = []
    if missing_captions:
        notes.append(f"{missing_captions} turn(s) have no local caption (CLIP-T skipped for them)")
    fmt = "magicbrush-multi" if multi_turn else "magicbrush"
    setting = "multi-turn: each turn edits the previous output" if multi_turn else \
        "single-turn: each turn edits the ground-truth previous image"
    return EvalDataset(samples, fmt, str(root), {"setting": setting, "sessions": len(sessions)}, notes)


def load_single_turn(path: Path, limit: int | None = None) -> EvalDataset:
    return _load(path, limit, multi_turn=False)


def load_multi_turn(path: Path, limit: int | None = None) -> EvalDataset:
    return _load(path, limit, multi_turn=True)
