"""Dataset adapters for evaluation: every layout becomes an :class:`~editkit.eval.samples.EvalDataset`.

A dataset SPEC is a path (the format is detected) or ``FORMAT:PATH``:

=================== ===========================================================================
``editworld``       an EditWorld folder (``editkit data editworld``): dataset.json + samples.jsonl
``magicbrush``      the MagicBrush test layout, single-turn: every turn edits the ground-truth
                    previous image (MagicBrush's "all-turn" / ``_inde_`` setting)
``magicbrush-multi`` the same layout, multi-turn: turn i edits the model's own output of turn i-1
                    (``_iter_``); the ``final_turn`` tag gives MagicBrush's "final-turn" numbers
``piebench``        PIE-Bench: ``mapping_file.json`` + ``annotation_images/`` (RLE masks)
``jsonl``           a generic folder with ``samples.jsonl`` (or a path to any ``.jsonl`` file)
``editworld-gen``   EditWorld generated in memory, e.g. ``editworld-gen:split=test,count=200,seed=0``
=================== ===========================================================================

Detection: ``dataset.json`` with format editworld (or EditWorld records) -> editworld;
``edit_sessions.json`` (also under ``test/``) -> magicbrush; ``mapping_file.json`` -> piebench;
``samples.jsonl`` or a ``.jsonl`` file -> jsonl. A new format is one function added with
:func:`register_format`.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import InvalidInputError
from ..samples import EvalDataset, EvalSample, check_ids, limit_samples

FORMATS: dict[str, str] = {
    "editworld": "editkit.eval.datasets.editworld:load",
    "magicbrush": "editkit.eval.datasets.magicbrush:load_single_turn",
    "magicbrush-multi": "editkit.eval.datasets.magicbrush:load_multi_turn",
    "piebench": "editkit.eval.datasets.piebench:load",
    "jsonl": "editkit.eval.datasets.jsonl:load",
    "editworld-gen": "editkit.eval.datasets.editworld:generate",
}
"""Format name -> ``"module:function"``; the function takes ``(path, limit)`` and returns an EvalDataset."""
GENERATED = {"editworld-gen"}
"""Formats whose "path" is a parameter string (nothing is read from disk)."""


def register_format(name: str, loader: str | Callable[[Path, int | None], EvalDataset]) -> None:
    """Add a dataset format (a ``"module:function"`` string, imported on use, or the function)."""
    FORMATS[name] = loader  # type: ignore[assignment]


def _loader(name: str) -> Callable[[Path, int | None], EvalDataset]:
    target: Any = FORMATS[name]
    if callable(target):
        return target
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def parse_spec(spec: str | Path) -> tuple[str | None, Path]:
    """``"FORMAT:PATH"`` -> (FORMAT, PATH); a plain path -> (None, PATH)."""
    text = str(spec)
    head, sep, rest = text.partition(":")
    if sep and head in FORMATS:
        return head, Path(rest)
    if sep and head and "/" not in head and "\\" not in head and len(head) > 1 and not Path(text).exists():
        known = ", ".join(sorted(FORMATS))
        raise InvalidInputError(f"dataset '{text}': unknown format '{head}' (known: {known})")
    return None, Path(text)


def _first_record(path: Path) -> Any:
    try:
        with path.open() as fh:
            for line in fh:
                if line.strip():
                    return json.loads(line)
    except (OSError, ValueError):
        return None
    return None


def detect_format(path: Path) -> str:
    """The format of a dataset folder or file (see the module docstring)."""
    if not path.exists():
        raise InvalidInputError(f"dataset {path} does not exist")
    if path.is_file():
        if path.name == "mapping_file.json":
            return "piebench"
        if path.name == "edit_sessions.json":
            return "magicbrush"
        if path.suffix == ".jsonl":
            rec = _first_record(path)
            return "editworld" if isinstance(rec, dict) and "scene" in rec else "jsonl"
        raise InvalidInputError(f"dataset {path}: cannot tell the format of this file; give FORMAT:PATH "
                                f"(formats: {', '.join(sorted(FORMATS))})")
    meta = path / "dataset.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("format") == "editworld":
                return "editworld"
        except (ValueError, AttributeError):
            pass
    if (path / "samples.jsonl").is_file():
        rec = _first_record(path / "samples.jsonl")
        return "editworld" if isinstance(rec, dict) and "scene" in rec and "target_scene" in rec else "jsonl"
    if (path / "edit_sessions.json").is_file() or (path / "test" / "edit_sessions.json").is_file():
        return "magicbrush"
    if (path / "mapping_file.json").is_file():
        return "piebench"
    hint = " (an interrupted write left samples.jsonl.part)" if (path / "samples.jsonl.part").exists() else ""
    raise InvalidInputError(
        f"{path} is not a dataset folder: samples.jsonl is missing{hint} (EditWorld or generic JSONL), and there "
        "is no edit_sessions.json (MagicBrush) or mapping_file.json (PIE-Bench); or give FORMAT:PATH")


def load(spec: str | Path, limit: int | None = None) -> EvalDataset:
    """Read the dataset named by ``spec`` (``PATH`` or ``FORMAT:PATH``); ``limit``: the first N samples.

    Every problem raises :class:`~editkit.errors.InvalidInputError` naming the file.
    """
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    text = str(spec)
    head = text.partition(":")[0]
    if head in GENERATED:
        dataset = _loader(head)(text.partition(":")[2], limit)  # type: ignore[arg-type]
        path = Path(dataset.root)
    else:
        fmt, path = parse_spec(spec)
        if not path.exists():
            raise InvalidInputError(f"dataset {path} does not exist")
        dataset = _loader(fmt or detect_format(path))(path, limit)
    dataset.samples = limit_samples(dataset.samples, limit)
    check_ids(dataset.samples, str(path))
    if not dataset.samples:
        raise InvalidInputError(f"dataset {path} holds no samples")
    dataset.meta.setdefault("spec", str(spec))
    return dataset


def as_eval_dataset(obj: Any, limit: int | None = None) -> EvalDataset:
    """A spec string/path, an EvalDataset, an EditWorldDataset, or a list of EditWorld / Eval samples."""
    if isinstance(obj, (str, Path)):
        return load(obj, limit)
    if isinstance(obj, EvalDataset):
        samples, fmt, root, meta = list(obj.samples), obj.format, obj.root, dict(obj.meta)
        notes = list(obj.notes)
    else:
        from .editworld import from_editworld

        items: Sequence[Any] = list(obj)
        root = str(getattr(obj, "root", "<in memory>"))
        meta = dict(getattr(obj, "meta", {}) or {})
        notes = []
        if items and not isinstance(items[0], EvalSample):
            samples, fmt = [from_editworld(s) for s in items], "editworld"
        else:
            samples, fmt = list(items), "samples"
    samples = limit_samples(samples, limit)
    check_ids(samples, root)
    if not samples:
        raise InvalidInputError("the dataset holds no samples")
    return EvalDataset(samples, fmt, root, meta, notes)
