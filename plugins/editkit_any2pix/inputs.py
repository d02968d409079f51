"""Reading the any2pix guide's referenced inputs: images (PIL) and audio (WAV via the standard library)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from editkit.errors import InvalidInputError, MissingInputError

from .encoders import SAMPLE_RATE


def audio_wave(name: str, value: Any) -> np.ndarray:
    """A 16 kHz mono float32 waveform from a WAV path or an array (resampled linearly when the rate differs)."""
    if isinstance(value, (str, Path)):
        from editkit.editworld import read_wav

        path = Path(value)
        if path.suffix.lower() != ".wav":
            raise InvalidInputError(f"guide 'any2pix': input '{name}': '{path}' is not a WAV file (only 16-bit PCM WAV "
                                    "is read, without FFmpeg; convert it first)")
        try:
            wave, rate = read_wav(path)
        except FileNotFoundError:
            raise InvalidInputError(f"guide 'any2pix': input '{name}': '{path}': no such file") from None
        except Exception as exc:  # wave.Error, EOFError, ValueError: a corrupt or unsupported file
            raise InvalidInputError(f"guide 'any2pix': input '{name}': '{path}' is not a readable 16-bit PCM WAV "
                                    f"file ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    else:
        wave, rate = np.asarray(value, dtype=np.float32), SAMPLE_RATE
        if wave.ndim == 2:
            wave = wave.mean(axis=0) if wave.shape[0] < wave.shape[1] else wave.mean(axis=1)
        if wave.ndim != 1:
            raise InvalidInputError(f"guide 'any2pix': input '{name}' must be a waveform (1-D array), got shape "
                                    f"{tuple(wave.shape)}")
    if wave.size == 0 or not np.isfinite(wave).all():
        raise InvalidInputError(f"guide 'any2pix': input '{name}' is empty or not finite")
    if rate != SAMPLE_RATE:
        n = max(1, round(wave.size * SAMPLE_RATE / rate))
        wave = np.interp(np.linspace(0, wave.size - 1, n), np.arange(wave.size), wave).astype(np.float32)
    return wave


def referenced(request_inputs: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inputs named in the instruction, checked: images must be images, audio must be audio."""
    out = {}
    for name in names:
        if name not in request_inputs:
            raise MissingInputError(f"guide 'any2pix': the instruction refers to [{name}] but no input '{name}' was "
                                    f"given (--input {name}=PATH)")
        value = request_inputs[name]
        if name.startswith("image"):
            if type(value).__module__.split(".")[0] != "PIL":
                raise InvalidInputError(f"guide 'any2pix': input '{name}' must be an image")
            out[name] = value.convert("RGB")
        else:
            out[name] = audio_wave(name, value)
    return out
