"""EditWorld dataset folders: write generated samples to disk and read them back, validating clearly.

Layout of a folder ``DIR``::

    DIR/dataset.json            {"format": "editworld", "version": 1, "split", "seed", "types", "size", "count", ...}
    DIR/samples.jsonl           one JSON object per sample (below)
    DIR/source/<id>.png         RGB source image
    DIR/target/<id>.png         RGB ground-truth target
    DIR/mask/<id>.png           edit mask, single channel, 255 = the edit may change this pixel
    DIR/inputs/<id>_image1.png  multimodal cut-out (RGB), when the sample has one
    DIR/inputs/<id>_audio1.wav  multimodal sound (16-bit PCM mono, 16 kHz), when the sample has one

Each JSONL record: ``id, split, edit_type, family, action, instruction, rewrite, captions {source,
target}, scene, target_scene, edit, size, files {source, target, mask, inputs {name: path}}`` with
paths relative to ``DIR``.
"""
from __future__ import annotations

import json
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInputError
from .audio import SAMPLE_RATE, read_wav, write_wav
from .edit_types import FAMILY_OF
from .generator import Sample
from .world import Scene

FORMAT = "editworld"
VERSION = 1
SAMPLES_FILE = "samples.jsonl"
META_FILE = "dataset.json"
_REQUIRED = ("id", "edit_type", "instruction", "rewrite", "captions", "scene", "target_scene", "edit", "files")


def _record(sample: Sample) -> dict[str, Any]:
    files: dict[str, Any] = {
        "source": f"source/{sample.id}.png",
        "target": f"target/{sample.id}.png",
        "mask": f"mask/{sample.id}.png",
        "inputs": {},
    }
    for name, value in sample.inputs.items():
        ext = "wav" if name.startswith("audio") else "png"
        files["inputs"][name] = f"inputs/{sample.id}_{name}.{ext}"
    return {
        "id": sample.id,
        "split": sample.split,
        "edit_type": sample.edit_type,
        "family": sample.family,
        "action": sample.action,
        "instruction": sample.instruction,
        "rewrite": sample.rewrite,
        "captions": sample.captions,
        "scene": sample.scene.to_dict(),
        "target_scene": sample.target_scene.to_dict(),
        "edit": sample.edit,
        "size": sample.size,
        "files": files,
    }


def prepare_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out`` or check it may be written: refuse a non-empty folder unless ``overwrite``.

    With ``overwrite`` only the files of an earlier EditWorld dataset there (those listed in its
    samples.jsonl, and the two index files) are removed; nothing else in the folder is touched.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InvalidInputError(f"{out} is not empty; pass --overwrite to replace an EditWorld dataset there")
        index = out / SAMPLES_FILE
        if index.is_file():
            for line in index.read_text().splitlines():
                try:
                    files = json.loads(line).get("files", {})
                except (ValueError, AttributeError):
                    continue
                paths = [files.get(k) for k in ("source", "target", "mask")] + list(files.get("inputs", {}).values())
                for rel in paths:
                    if isinstance(rel, str) and not os.path.isabs(rel) and ".." not in Path(rel).parts:
                        (out / rel).unlink(missing_ok=True)
            index.unlink()
        (out / META_FILE).unlink(missing_ok=True)
    if not out.parent.exists():
        raise InvalidInputError(f"the parent folder of {out} does not exist")
    out.mkdir(exist_ok=True)
    return out


def write_dataset(samples: Iterable[Sample], out: str | Path, *, overwrite: bool = False,
                  meta: dict[str, Any] | None = None, progress: bool = False, total: int | None = None) -> Path:
    """Write samples (any iterable, consumed once) as a dataset folder; returns the folder.

    samples.jsonl is written under a temporary name and renamed at the end, so an interrupted run
    never leaves a folder that loads as a complete dataset.
    """
    out = prepare_dir(out, overwrite)
    for sub in ("source", "target", "mask", "inputs"):
        (out / sub).mkdir(exist_ok=True)
    tmp = out / (SAMPLES_FILE + ".part")
    count = 0
    iterator: Iterable[Sample] = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, total=total, desc="editworld", unit="sample")
    with tmp.open("w") as fh:
        for sample in iterator:
            rec = _record(sample)
            files = rec["files"]
            Image.fromarray(sample.source).save(out / files["source"])
            Image.fromarray(sample.target).save(out / files["target"])
            Image.fromarray(sample.mask.astype(np.uint8) * 255, mode="L").save(out / files["mask"])
            for name, value in sample.inputs.items():
                path = out / files["inputs"][name]
                if name.startswith("audio"):
                    write_wav(path, value, SAMPLE_RATE)
                else:
                    Image.fromarray(value).save(path)
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
            count += 1
    info = {"format": FORMAT, "version": VERSION, "count": count, "sample_rate": SAMPLE_RATE, **(meta or {})}
    (out / META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / SAMPLES_FILE)
    return out


@dataclass
class EditWorldDataset(Sequence[Sample]):
    """Samples read from a dataset folder (list-like), with the folder's ``meta`` (dataset.json)."""

    root: Path
    samples: list[Sample]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


def _read_rgb(path: Path, where: str, size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InvalidInputError(f"{where}: file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{where}: cannot read image {path}: {exc}") from None
    if size is not None and arr.shape[:2] != (size, size):
        raise InvalidInputError(f"{where}: {path.name} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}")
    return arr


def _read_mask(path: Path, where: str, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise InvalidInputError(f"{where}: file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{where}: cannot read mask {path}: {exc}") from None
    if arr.shape != (size, size):
        raise InvalidInputError(f"{where}: mask {path.name} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}")
    if not np.isin(arr, (0, 255)).all():
        raise InvalidInputError(f"{where}: mask {path.name} is not binary (values other than 0 and 255)")
    return arr > 127


def _safe_path(root: Path, rel: Any, where: str) -> Path:
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise InvalidInputError(f"{where}: file path {rel!r} must be relative to the dataset folder")
    return root / rel


def _parse(root: Path, rec: Any, where: str) -> Sample:
    if not isinstance(rec, dict):
        raise InvalidInputError(f"{where}: expected a JSON object")
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise InvalidInputError(f"{where}: missing field(s) {', '.join(missing)}")
    edit_type = rec["edit_type"]
    if edit_type not in FAMILY_OF:
        raise InvalidInputError(f"{where}: unknown edit_type {edit_type!r}")
    try:
        scene = Scene.from_dict(rec["scene"])
        target_scene = Scene.from_dict(rec["target_scene"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: invalid scene description: {exc}") from None
    edit = rec["edit"]
    if not isinstance(edit, dict) or "action" not in edit:
        raise InvalidInputError(f"{where}: 'edit' must be an object with an 'action'")
    files = rec["files"]
    if not isinstance(files, dict) or any(k not in files for k in ("source", "target", "mask")):
        raise InvalidInputError(f"{where}: 'files' must name source, target and mask")
    source = _read_rgb(_safe_path(root, files["source"], where), where, None)
    size = source.shape[0]
    if source.shape[:2] != (size, size):
        raise InvalidInputError(f"{where}: source image is not square ({source.shape[1]}x{source.shape[0]})")
    if rec.get("size", size) != size:
        raise InvalidInputError(f"{where}: size {rec.get('size')} does not match the {size}x{size} source image")
    target = _read_rgb(_safe_path(root, files["target"], where), where, size)
    mask = _read_mask(_safe_path(root, files["mask"], where), where, size)
    inputs: dict[str, np.ndarray] = {}
    for name, rel in (files.get("inputs") or {}).items():
        path = _safe_path(root, rel, where)
        if str(rel).lower().endswith(".wav"):
            try:
                audio, rate = read_wav(path)
            except FileNotFoundError:
                raise InvalidInputError(f"{where}: file {path} is missing") from None
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                raise InvalidInputError(f"{where}: cannot read audio {path}: {exc}") from None
            if rate != SAMPLE_RATE:
                raise InvalidInputError(f"{where}: {path.name} has sample rate {rate}, expected {SAMPLE_RATE}")
            inputs[name] = audio
        else:
            inputs[name] = _read_rgb(path, where, size)
    captions = rec["captions"] if isinstance(rec["captions"], dict) else {}
    return Sample(
        id=str(rec["id"]),
        split=str(rec.get("split", "")),
        source=source,
        target=target,
        mask=mask,
        instruction=str(rec["instruction"]),
        rewrite=str(rec["rewrite"]),
        edit_type=edit_type,
        family=str(rec.get("family", FAMILY_OF[edit_type])),
        source_caption=str(captions.get("source", "")),
        target_caption=str(captions.get("target", "")),
        scene=scene,
        target_scene=target_scene,
        edit=edit,
        inputs=inputs,
    )


def load_dataset(path: str | Path, limit: int | None = None) -> EditWorldDataset:
    """Read a dataset folder written by :func:`write_dataset` (``limit``: only the first N samples).

    Audio is read with the stdlib ``wave`` module into float32. Every problem raises
    :class:`editkit.errors.InvalidInputError` naming the file and line.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"EditWorld dataset folder {root} does not exist")
    index = root / SAMPLES_FILE
    if not index.is_file():
        hint = " (an interrupted write left samples.jsonl.part)" if (root / (SAMPLES_FILE + ".part")).exists() else ""
        raise InvalidInputError(f"{root} is not an EditWorld dataset folder: {SAMPLES_FILE} is missing{hint}")
    meta: dict[str, Any] = {}
    if (root / META_FILE).is_file():
        try:
            meta = json.loads((root / META_FILE).read_text())
        except ValueError as exc:
            raise InvalidInputError(f"{root / META_FILE}: invalid JSON: {exc}") from None
        if meta.get("format") != FORMAT:
            raise InvalidInputError(f"{root / META_FILE}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("version", VERSION) > VERSION:
            raise InvalidInputError(f"{root / META_FILE}: version {meta['version']} is newer than this editkit reads ({VERSION})")
    samples: list[Sample] = []
    seen: set[str] = set()
    with index.open() as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(samples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{index}:{lineno}"
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(f"{where}: invalid JSON: {exc}") from None
            sample = _parse(root, rec, where)
            if sample.id in seen:
                raise InvalidInputError(f"{where}: duplicate sample id {sample.id!r}")
            seen.add(sample.id)
            samples.append(sample)
    if not samples:
        raise InvalidInputError(f"{index} holds no samples")
    return EditWorldDataset(root, samples, meta)
