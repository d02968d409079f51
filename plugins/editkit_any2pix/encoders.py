"""ImageBind encoders (the ``imagebind`` package's model code) with editkit's own preprocessing.

The package is an optional extra (``pip install --no-deps imagebind-unofficial==0.1.1``; code and weights
are CC BY-NC-SA 4.0). Its ``__init__`` imports data loaders that need torchaudio, pytorchvideo and
``pkg_resources``, so the model modules are imported through a shim that skips it, and images, audio
and text are prepared here:

* vision: bicubic resize of the short side, centre crop to the model size, CLIP mean/std;
* audio: 16 kHz mono, cut into ``clips`` windows of ``clip_seconds``, Kaldi-compatible log-mel filterbank
  (25 ms Hann window, 10 ms shift, ``mel_bins`` bins, HTK mel scale, DC removal, pre-emphasis 0.97),
  padded or cut to ``target_len`` frames and normalised with ImageBind's mean -4.268 / std 9.138;
* text: ImageBind's BPE tokenizer (context 77).
"""
from __future__ import annotations

import importlib.util
import math
import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from editkit.errors import GuideLoadError
from editkit.weights import stored

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138
SAMPLE_RATE = 16000


def import_imagebind() -> tuple[Any, Any]:
    """(imagebind_model module, SimpleTokenizer class) without running the package ``__init__``."""
    if "imagebind" not in sys.modules:
        spec = importlib.util.find_spec("imagebind")
        if spec is None or not spec.submodule_search_locations:
            raise GuideLoadError("guide 'any2pix' needs the ImageBind model code: pip install --no-deps "
                                 "imagebind-unofficial==0.1.1 iopath einops (CC BY-NC-SA 4.0)")
        pkg = types.ModuleType("imagebind")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["imagebind"] = pkg
    try:
        from imagebind.models import imagebind_model
        from imagebind.models.multimodal_preprocessors import SimpleTokenizer
    except ImportError as exc:
        raise GuideLoadError(f"guide 'any2pix': the ImageBind model code does not import ({exc}); it needs timm, "
                             "iopath, einops, ftfy and regex") from None
    return imagebind_model, SimpleTokenizer


@dataclass
class AudioSettings:
    clips: int = 3
    clip_seconds: float = 2.0
    mel_bins: int = 128
    target_len: int = 204


def kaldi_fbank(wave: torch.Tensor, mel_bins: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(T,) float waveform -> (frames, mel_bins) log-mel energies, as torchaudio.compliance.kaldi.fbank with
    htk_compat, Hann window, no dither, no energy term (what ImageBind calls)."""
    frame, shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
    if wave.numel() < frame:
        wave = F.pad(wave, (0, frame - wave.numel()))
    frames = wave.unfold(0, frame, shift)  # snip edges
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = torch.cat([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], dim=1)
    frames = frames * torch.hann_window(frame, periodic=False, dtype=frames.dtype)
    n_fft = 1 << (frame - 1).bit_length()
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2)
    return torch.log(power @ mel_banks(mel_bins, n_fft, sample_rate).T + torch.finfo(power.dtype).eps)


def mel_banks(bins: int, n_fft: int, sample_rate: int, low: float = 20.0) -> torch.Tensor:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f / 700)) over the FFT bins, (bins, n_fft // 2 + 1)."""
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(low), mel(sample_rate / 2)
    centres = torch.linspace(lo, hi, bins + 2)
    freqs = torch.arange(n_fft // 2 + 1) * sample_rate / n_fft
    m = 1127.0 * torch.log1p(freqs / 700.0)
    left, centre, right = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    up = (m[None] - left) / (centre - left)
    down = (right - m[None]) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    banks[:, -1] = 0.0  # Kaldi ignores the Nyquist bin
    return banks


def audio_input(wave: np.ndarray, settings: AudioSettings) -> torch.Tensor:
    """A 16 kHz waveform -> (clips, 1, mel_bins, target_len), clips evenly spaced over the waveform."""
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    length = int(settings.clip_seconds * SAMPLE_RATE)
    if x.numel() < length:
        x = F.pad(x, (0, length - x.numel()))
    starts = np.linspace(0, x.numel() - length, settings.clips).round().astype(int)
    out = []
    for s in starts:
        fb = kaldi_fbank(x[s: s + length], settings.mel_bins).T  # (mel, frames)
        fb = F.pad(fb, (0, max(0, settings.target_len - fb.shape[1])))[:, : settings.target_len]
        out.append(((fb - AUDIO_MEAN) / AUDIO_STD)[None])
    return torch.stack(out)


def vision_input(images: list[Any], size: int) -> torch.Tensor:
    """PIL images -> (N, 3, size, size): bicubic short-side resize, centre crop, CLIP mean/std."""
    from PIL import Image

    out = []
    for img in images:
        img = img.convert("RGB")
        scale = size / min(img.size)
        w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    x = torch.stack(out)
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


#: The state-dict key of the text token embedding, and its compact form (row index + those rows).
TEXT_EMBEDDING = "modality_preprocessors.text.token_embedding.weight"
TEXT_ROWS, TEXT_VALUES = "modality_preprocessors.text.token_embedding.rows", "modality_preprocessors.text.token_embedding.values"
#: ImageBind towers editkit never runs (a compact state dict leaves them out; they keep their initialisation).
UNUSED_TOWERS = ("depth", "thermal", "imu")
UNUSED_PREFIXES = tuple(f"modality_{part}.{m}." for m in UNUSED_TOWERS
                        for part in ("preprocessors", "trunks", "heads", "postprocessors"))


class ImageBindEncoder:
    """Joint embeddings of images, audio clips and texts from one ImageBind model."""

    def __init__(self, model_kwargs: dict[str, Any], image_size: int = 224, audio: AudioSettings | None = None):
        imagebind_model, tokenizer_cls = import_imagebind()
        self.modality = imagebind_model.ModalityType
        self.model = imagebind_model.ImageBindModel(**model_kwargs).eval().requires_grad_(False)
        self.model_kwargs = dict(model_kwargs)
        self.image_size = image_size
        self.audio = audio or AudioSettings()
        import os

        bpe = os.path.join(sys.modules["imagebind"].__path__[0], "bpe", "bpe_simple_vocab_16e6.txt.gz")
        self.tokenizer = tokenizer_cls(bpe_path=bpe)

    @classmethod
    def from_files(cls, config: dict[str, Any], weights: str, what: str) -> "ImageBindEncoder":
        """An encoder from its config (``{"model": ..., "image_size": ..., "audio": {...}}``, as the any2pix folder
        and the ``imagebind`` recipe write it) and a safetensors state dict, full or compact
        (:meth:`compact_state`); ``what`` names it in errors."""
        from editkit.weights import load_state_dict, load_state_into

        encoder = cls(config["model"], config.get("image_size", 224), AudioSettings(**config.get("audio", {})))
        state = load_state_dict(weights)
        ignore: tuple[str, ...] = ()
        if TEXT_ROWS in state:  # compact: the stored rows of the text embedding, the unused towers left out
            dense = torch.zeros_like(encoder.model.state_dict()[TEXT_EMBEDDING])
            rows = state.pop(TEXT_ROWS).long()
            if rows.numel() and (rows.min() < 0 or rows.max() >= dense.shape[0]):
                from editkit.errors import InvalidInputError

                raise InvalidInputError(f"{what}: checkpoint '{weights}' has text embedding rows outside the vocabulary")
            dense[rows] = state.pop(TEXT_VALUES).to(dense.dtype)
            state[TEXT_EMBEDDING] = dense
            ignore = UNUSED_PREFIXES
        load_state_into(encoder.model, state, what, weights, ignore)
        return encoder

    def compact_state(self, texts: list[str], dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The state dict for storage of a small trained model: the towers editkit uses (vision, text, audio),
        the text token embedding reduced to the rows that ``texts`` tokenise to (an index + those rows; the
        other rows load as zeros), floating tensors cast to ``dtype``. :meth:`from_files` reads it back."""
        rows = torch.unique(self.tokenizer(list(texts)).flatten())
        out = {}
        for k, v in self.model.state_dict().items():
            if k.startswith(UNUSED_PREFIXES):
                continue
            if k == TEXT_EMBEDDING:
                out[TEXT_ROWS], v = rows.to(torch.int64), v[rows]
                k = TEXT_VALUES
            out[k] = stored(v, dtype)
        return out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _run(self, key: str, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model({key: x.to(self.device)})[key].float()

    def encode_images(self, images: list[Any]) -> torch.Tensor:
        return self._run(self.modality.VISION, vision_input(images, self.image_size))

    def encode_audio(self, waves: list[np.ndarray]) -> torch.Tensor:
        return self._run(self.modality.AUDIO, torch.stack([audio_input(w, self.audio) for w in waves]))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self._run(self.modality.TEXT, self.tokenizer(list(texts)))
