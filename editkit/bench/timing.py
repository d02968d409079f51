"""Timing helpers: warm-up, repeated runs, medians, device synchronisation, peak memory."""
from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_gb(device: str) -> dict[str, float]:
    """Peak GPU memory allocated by torch since the last reset, or the process's peak resident memory."""
    if device.startswith("cuda"):
        import torch

        return {"peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"peak_rss_gb": round(rss / (2**30 if sys.platform == "darwin" else 2**20), 3)}


@dataclass
class Measurement:
    """Wall times of the timed runs (seconds) plus per-stage times reported by each run."""

    warmup_s: list[float] = field(default_factory=list)
    runs_s: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    def summary(self) -> dict[str, Any]:
        stage_names = sorted({k for row in self.stages for k in row})
        return {
            "median_s": round(self.median_s, 4),
            "min_s": round(min(self.runs_s), 4),
            "runs_s": [round(t, 4) for t in self.runs_s],
            "warmup_s": [round(t, 4) for t in self.warmup_s],
            "stages_median_s": {k: round(statistics.median(r[k] for r in self.stages if k in r), 4)
                                for k in stage_names},
            **self.memory,
        }


def measure(run: Callable[[], dict[str, float] | None], *, device: str, warmup: int, repeats: int) -> Measurement:
    """Call ``run`` ``warmup`` times untimed-for-the-median (their times are kept: compilation shows there),
    then ``repeats`` times; ``run`` may return its own per-stage seconds."""
    m = Measurement()
    for i in range(warmup + repeats):
        if i == warmup:
            reset_peak(device)
        synchronize(device)
        t0 = time.perf_counter()
        stages = run() or {}
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if i < warmup:
            m.warmup_s.append(elapsed)
        else:
            m.runs_s.append(elapsed)
            m.stages.append(dict(stages))
    m.memory = peak_memory_gb(device)
    return m
