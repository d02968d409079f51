"""Shared pieces of the training recipes: EditWorld pools as tensors, schedules, logging, saving."""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def set_threads() -> None:
    n = int(os.environ.get("EDITKIT_TRAIN_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)


def images_to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> float (N, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


def info_nce(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, scale: float | torch.Tensor,
             hard_a: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned embeddings with logits ``scale * cos``; rows whose ``labels`` are
    equal (ids, or whole token rows) count as positives of each other, so repeated texts are not negatives.
    ``hard_a`` (row-aligned with ``a``'s space) adds one negative per row of ``b`` that only that row is
    contrasted against (a hard negative of its own pair)."""
    normalize, ce = torch.nn.functional.normalize, torch.nn.functional.cross_entropy
    a, b = normalize(a, dim=-1), normalize(b, dim=-1)
    logits = scale * a @ b.t()
    n = labels.shape[0]
    same = (labels[:, None] == labels[None, :]).reshape(n, n, -1).all(-1).float()
    target = same / same.sum(1, keepdim=True)
    if hard_a is None:
        return 0.5 * (ce(logits, target) + ce(logits.t(), target))
    own = scale * (b * normalize(hard_a, dim=-1)).sum(-1, keepdim=True)
    b_to_a = ce(torch.cat([logits.t(), own], 1), torch.cat([target, target.new_zeros(n, 1)], 1))
    return 0.5 * (ce(logits, target) + b_to_a)


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1], computed on the 0-255 scale after rounding."""
    a8 = ((a.clamp(-1, 1) + 1) * 127.5).round()
    b8 = ((b.clamp(-1, 1) + 1) * 127.5).round()
    mse = (a8 - b8).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


class RunLog:
    """Appends JSON lines to ``log.jsonl`` and keeps wall time for the recipe record."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "log.jsonl"
        self.path.write_text("")
        self.start = time.perf_counter()

    def write(self, **row: Any) -> None:
        row["elapsed_s"] = round(time.perf_counter() - self.start, 2)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _shell_value(value: Any) -> str:
    """A recipe value as the command line takes it: mappings and lists as quoted JSON."""
    if isinstance(value, (dict, list)):
        return "'" + json.dumps(value) + "'"
    return str(value)


def write_recipe(folder: Path, name: str, config: dict[str, Any], seconds: float, results: dict[str, Any]) -> None:
    """Record how the weights in ``folder`` were made: the recipe, its settings, time, hardware, results."""
    record = {
        "recipe": name,
        "command": f"editkit train {name} " + " ".join(f"--{k.replace('_', '-')} {_shell_value(v)}"
                                                      for k, v in config.items() if k not in {"out"} and v is not None),
        "config": config,
        "seconds": round(seconds, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
        "results": results,
    }
    (Path(folder) / f"recipe_{name}.json").write_text(json.dumps(record, indent=2, default=str))


def group_samples(split: str, count: int, seed: int, types: str, size: int) -> list:
    """``count`` EditWorld samples split equally among comma-separated groups ("explicit,referring"); a group may
    join several families/types with '+' ("explicit,contrast+replace" gives those two types a second share)."""
    from .. import editworld

    groups = [t.strip() for t in types.split(",") if t.strip()]
    out = []
    for k, group in enumerate(groups):
        share = count // len(groups) + (1 if k < count % len(groups) else 0)
        if share:
            out += editworld.generate(split, share, seed=seed, types=group.split("+"), size=size)
    return out


def spread(items: list, n: int) -> list:
    """At most ``n`` items taken evenly over the whole list (a probe that sees every group of an ordered list)."""
    return list(items[:: max(1, len(items) // n)][:n]) if n > 0 else []


def plugin_module(guide: str, module: str):
    """A module of the plugin package that provides ``guide``, reached through its entry point (editkit never
    imports a guide plugin by name)."""
    import importlib

    from ..registry import load_guide_class

    package = load_guide_class(guide).__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{module}")
