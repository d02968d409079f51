"""A generic dataset: a folder with ``samples.jsonl`` (or any ``.jsonl`` file) and images beside it.

One JSON object per line; paths are relative to the JSONL file's folder (absolute paths work too)::

    {"id": "cat-1", "source": "images/cat.png", "instruction": "make the cat black",
     "target": "targets/cat-1.png", "mask": "masks/cat-1.png",
     "source_caption": "a white cat", "target_caption": "a black cat",
     "edit_type": "recolour", "rewrite": "...", "inputs": {"image1": "refs/hat.png"},
     "chain_from": "cat-0", "tags": ["turn2"], "meta": {...}}

Only ``source`` and ``instruction`` are required; ``id`` defaults to the line number. Masks: white (or
transparent, see :func:`editkit.eval.samples.read_mask`) = edit region. Unknown keys are errors (put
your own fields under ``meta``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from ...config import EditkitModel
from ...errors import InvalidInputError
from ..samples import EvalDataset, EvalSample

SAMPLES_FILE = "samples.jsonl"


class JsonlRecord(EditkitModel):
    id: str | None = None
    source: str = Field(min_length=1)
    instruction: str = Field(min_length=1)
    target: str | None = None
    mask: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    edit_type: str | None = None
    family: str | None = None
    rewrite: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    chain_from: str | None = None
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


def _file(root: Path, rel: str, where: str, what: str) -> Path:
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if not path.is_file():
        raise InvalidInputError(f"{where}: {what} file {path} is missing")
    return path


def load(path: Path, limit: int | None = None) -> EvalDataset:
    index = path if path.is_file() else path / SAMPLES_FILE
    if not index.is_file():
        raise InvalidInputError(f"{path} is not a JSONL dataset folder: {SAMPLES_FILE} is missing")
    root = index.parent
    samples: list[EvalSample] = []
    with index.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(samples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{index}:{lineno}"
            try:
                raw = json.loads(line)
                rec = JsonlRecord.model_validate(raw)
            except ValueError as exc:
                if isinstance(exc, ValidationError):
                    err = exc.errors()[0]
                    loc = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
                    problem = "unknown key" if err.get("type") == "extra_forbidden" else err.get("msg")
                    raise InvalidInputError(f"{where}: '{loc}': {problem}") from None
                raise InvalidInputError(f"{where}: invalid JSON: {exc}") from None
            if not rec.instruction.strip():
                raise InvalidInputError(f"{where}: the instruction is empty")
            samples.append(EvalSample(
                id=rec.id if rec.id is not None else f"{lineno:06d}",
                instruction=rec.instruction.strip(),
                source=_file(root, rec.source, where, "source"),
                target=_file(root, rec.target, where, "target") if rec.target else None,
                mask=_file(root, rec.mask, where, "mask") if rec.mask else None,
                source_caption=rec.source_caption,
                target_caption=rec.target_caption,
                edit_type=rec.edit_type,
                family=rec.family,
                rewrite=rec.rewrite,
                inputs={k: _file(root, v, where, f"input '{k}'") for k, v in rec.inputs.items()},
                chain_from=rec.chain_from,
                tags=tuple(rec.tags),
                meta=dict(rec.meta),
            ))
    return EvalDataset(samples, "jsonl", str(root), {"file": index.name})
