"""Process-wide cache of loaded backends, so the same weights are never loaded twice."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from .components import Components, load_components, resolve_source

_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import InvalidInputError

        raise InvalidInputError(f"device '{device}' requested but CUDA is not available")
    return device


class BackendCache:
    """Maps (weights source, device, dtype) to one :class:`LatentDiffusionBackend`."""

    def __init__(self) -> None:
        self._backends: dict[tuple[str, str, str, str], object] = {}
        self._lock = threading.Lock()

    def get(
        self,
        source: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        loader: Callable[[str], Components] | None = None,
        key: str = "",
    ):
        """Return the backend for ``source``, loading it on first use.

        ``loader`` builds the components (default: the diffusers folder layout); ``key`` separates
        backends built from the same source by different loaders.
        """
        import torch

        from .diffusion import LatentDiffusionBackend

        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype '{dtype}'")
        device = resolve_device(device)
        if dtype == "float16" and device == "cpu":
            from ..errors import InvalidInputError

            raise InvalidInputError("dtype 'float16' needs a GPU; use float32 or bfloat16 on the CPU")
        src = resolve_source(source)
        cache_key = (src, device, dtype, key)
        with self._lock:
            if cache_key not in self._backends:
                components = (loader or load_components)(src)
                self._backends[cache_key] = LatentDiffusionBackend(components, device, getattr(torch, dtype))
            return self._backends[cache_key]

    def put(self, source: str, backend, *, device: str = "cpu", dtype: str = "float32", key: str = "") -> None:
        self._backends[(resolve_source(source), device, dtype, key)] = backend

    def __len__(self) -> int:
        return len(self._backends)

    def clear(self) -> None:
        self._backends.clear()
