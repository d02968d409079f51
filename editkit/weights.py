"""Safe checkpoint loading: safetensors, or torch files that load with ``weights_only=True``.

A checkpoint that needs unpickling arbitrary Python objects is refused with
:class:`~editkit.errors.UnsafeCheckpointError` (it could run code); convert it to ``.safetensors``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import InvalidInputError, UnsafeCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

SAFETENSORS_SUFFIXES = {".safetensors"}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


def stored(tensor: "torch.Tensor", dtype: "torch.dtype") -> "torch.Tensor":
    """A tensor as a weights file keeps it: floating tensors in ``dtype``, detached, contiguous, on the CPU.
    Small trained models are stored in float16 to halve their files; they load back in the guide's dtype."""
    return (tensor.to(dtype) if tensor.is_floating_point() else tensor).detach().contiguous().cpu()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def checkpoint_shards(folder: str | os.PathLike) -> list[Path]:
    """The weight files of a transformers checkpoint folder: the shards its ``model.safetensors.index.json`` or
    ``pytorch_model.bin.index.json`` names (sorted, each once), else ``model.safetensors`` or ``pytorch_model.bin``;
    [] when it has none."""
    import json

    folder = Path(folder)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            return [folder / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()][:1]


def _is_pickle_container(path: Path) -> bool:
    """A pickle stream (PROTO opcode) or a zip file such as torch.save writes; read without unpickling."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head == b"PK"


def load_state_dict(path: str | os.PathLike, *, device: str = "cpu") -> "dict[str, torch.Tensor]":
    """Read a state dict from ``.safetensors`` or a weights-only torch file (``.pt/.pth/.bin/.ckpt``).

    A ``{"state_dict": {...}}`` wrapper (Lightning checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"checkpoint '{path}': no such file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=device)
        except Exception as exc:  # SafetensorError, OSError: header or data unreadable
            raise InvalidInputError(f"checkpoint '{path}': not a readable safetensors file ({_one_line(exc)})") from None
    if suffix not in TORCH_SUFFIXES:
        known = ", ".join(sorted(SAFETENSORS_SUFFIXES | TORCH_SUFFIXES))
        raise InvalidInputError(f"checkpoint '{path}': unknown format '{suffix}' (known: {known})")

    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says it all
            obj: Any = torch.load(str(path), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if m or _is_pickle_container(path):
            what = f" (it contains {m.group(1)})" if m else ""
            raise UnsafeCheckpointError(
                f"checkpoint '{path}' is a pickle that needs arbitrary Python objects{what}; refusing to load it "
                "(convert it to .safetensors)"
            ) from None
        raise InvalidInputError(f"checkpoint '{path}': not a readable torch file (neither a zip checkpoint nor a pickle)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise InvalidInputError(f"checkpoint '{path}': not a readable torch file ({_one_line(exc)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InvalidInputError(f"checkpoint '{path}': expected a state dict, got {type(obj).__name__}")
    return obj


def load_into(module: Any, checkpoint: str, what: str, ignore: Sequence[str] = ()) -> None:
    """Load a local state dict into ``module``; a mismatch is an error naming the first keys."""
    load_state_into(module, load_state_dict(checkpoint), what, checkpoint, ignore)


def load_state_into(module: Any, state: dict, what: str, checkpoint: str, ignore: Sequence[str] = ()) -> None:
    """Load an already read state dict (from ``checkpoint``, named in errors); keys starting with an
    ``ignore`` prefix may be missing or extra. Tensors are cast to the module's dtypes."""
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches are raised even when not strict
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()][1:3]
        raise InvalidInputError(f"{what}: checkpoint '{checkpoint}' does not fit the model: {'; '.join(lines)}") from None
    missing = [k for k in result.missing_keys if not any(k.startswith(p) for p in ignore)]
    unexpected = [k for k in result.unexpected_keys if not any(k.startswith(p) for p in ignore)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        raise InvalidInputError(f"{what}: checkpoint '{checkpoint}' does not fit the model: {'; '.join(parts)}")
