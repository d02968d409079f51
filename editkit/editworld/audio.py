"""Synthetic object sounds (1 s, 16 kHz, mono float32) and 16-bit PCM WAV I/O with the stdlib ``wave``.

Every object has a deterministic sound: the **timbre** comes from the shape kind (harmonic profile
and envelope), the **pitch** from the colour (six notes of a whole-tone scale, within one octave) and the **octave** from
the size (large objects sound an octave lower), so a sound identifies kind, colour and size.
"""
from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from .world import COLOURS, KINDS, SIZES

SAMPLE_RATE = 16000
DURATION_S = 1.0
PEAK = 0.6

PITCH_HZ: dict[str, float] = {  # whole-tone scale C5..A#5 for small objects; large ones an octave lower
    "red": 523.25,
    "green": 587.33,
    "blue": 659.26,
    "yellow": 739.99,
    "purple": 830.61,
    "cyan": 932.33,
}
OCTAVE: dict[str, float] = {"small": 1.0, "large": 0.5}

# harmonic amplitudes (1st..8th) and envelope decay rate (1/s) per kind
_HARMONICS: dict[str, tuple[float, ...]] = {
    "circle": (1.0,),  # pure sine
    "square": (1.0, 0.0, 0.9, 0.0, 0.75, 0.0, 0.6, 0.0, 0.45),  # bright odd harmonics: hollow, clarinet-like
    "triangle": (0.35, 1.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.4),  # strong 2nd, 4th and 8th: an octave-heavy bell
    "diamond": (1.0, 0.7, 0.55, 0.45, 0.38, 0.33, 0.29, 0.26),  # every harmonic: sawtooth-like buzz
}
_DECAY: dict[str, float] = {"circle": 1.5, "square": 0.5, "triangle": 4.0, "diamond": 2.5}
_TREMOLO_HZ: dict[str, float] = {"circle": 0.0, "square": 0.0, "triangle": 0.0, "diamond": 6.0}


@lru_cache(maxsize=256)
def _sound(kind: str, colour: str, size: str) -> np.ndarray:
    if kind not in KINDS or colour not in COLOURS or size not in SIZES:
        raise ValueError(f"no sound for {size} {colour} {kind}")
    n = int(SAMPLE_RATE * DURATION_S)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    f0 = PITCH_HZ[colour] * OCTAVE[size]
    wave_ = np.zeros(n)
    for h, amp in enumerate(_HARMONICS[kind], start=1):
        if amp and h * f0 < SAMPLE_RATE / 2:
            wave_ += amp * np.sin(2 * np.pi * h * f0 * t)
    attack = np.minimum(t / 0.01, 1.0)
    release = np.minimum((DURATION_S - t) / 0.02, 1.0)
    env = attack * release * np.exp(-_DECAY[kind] * t)
    if _TREMOLO_HZ[kind]:
        env *= 0.75 + 0.25 * np.cos(2 * np.pi * _TREMOLO_HZ[kind] * t)
    out = wave_ * env
    out = (PEAK * out / np.abs(out).max()).astype(np.float32)
    out.setflags(write=False)
    return out


def object_sound(kind: str, colour: str, size: str) -> np.ndarray:
    """The object's sound: float32 array of ``SAMPLE_RATE * DURATION_S`` samples in [-PEAK, PEAK]."""
    return _sound(kind, colour, size).copy()


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM."""
    pcm = np.clip(np.rint(np.asarray(audio, np.float64) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV (mono, or the mean of its channels) as float32 in [-1, 1] and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported (sample width {w.getsampwidth()} bytes)")
        channels, rate, frames = w.getnchannels(), w.getframerate(), w.readframes(w.getnframes())
    data = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate
