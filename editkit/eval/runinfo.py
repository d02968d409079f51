"""What a run.json records besides the numbers: versions, git commit, device, time stamps."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("editkit", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "timm", "lpips",
            "numpy", "pillow", "pydantic")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str | None]:
    """Installed versions (read from package metadata, nothing imported)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(path: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git work tree holding ``path`` (default: the editkit package)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {"commit": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def device_info(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The guide's device and dtype options, the CPU, and the GPU when torch is already loaded."""
    config = config or {}
    info: dict[str, Any] = {
        "device": config.get("device"),
        "dtype": config.get("dtype"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        try:
            if torch.cuda.is_available():
                info["cuda_device"] = torch.cuda.get_device_name(0)
        except Exception:  # pragma: no cover - driver problems must not break a run
            pass
    return info
