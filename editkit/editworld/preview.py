"""Picture grid of EditWorld samples: source | instruction and rewrite | extra input | target | mask.

    python -m editkit.editworld.preview --out docs/img/editworld_samples.png

draws one test-split sample of each chosen edit type (deterministic for ``--seed``).
"""
from __future__ import annotations

import argparse
import textwrap
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .edit_types import EDIT_TYPES
from .generator import Sample, iter_samples

DEFAULT_TYPES = (
    "recolour", "remove", "add", "replace", "resize", "move", "background", "brightness", "contrast",
    "unique_attribute", "superlative", "spatial", "odd_one_out", "add_audio", "replace_image", "remove_image",
)


def pick(types: Sequence[str], seed: int = 0, split: str = "test", size: int = 64) -> list[Sample]:
    """One sample per edit type: the first sample of a single-type stream (seed ``seed + i`` for type i)."""
    return [next(iter_samples(split, seed + i, [t], size)) for i, t in enumerate(types)]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def _audio_thumb(audio: np.ndarray, side: int) -> Image.Image:
    img = Image.new("RGB", (side, side), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    seg = audio[200:400]  # 12.5 ms after the attack shows the waveform shape
    xs = np.linspace(0, side - 1, len(seg))
    ys = side / 2 - seg / (np.abs(seg).max() + 1e-9) * (side * 0.4)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(40, 40, 40), width=1)
    return img


def grid(samples: Sequence[Sample], scale: int = 2) -> Image.Image:
    side = samples[0].size * scale
    text_w, pad, header = 360, 6, 22
    cols = [("source", side), ("instruction / rewrite", text_w), ("input", side), ("target", side), ("mask", side)]
    width = sum(w for _, w in cols) + pad * (len(cols) + 1)
    row_h = side + pad
    img = Image.new("RGB", (width, header + row_h * len(samples) + pad), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(13), _font(11)
    x = pad
    for title, w in cols:
        draw.text((x, 4), title, fill=(0, 0, 0), font=font)
        x += w + pad
    for i, s in enumerate(samples):
        y = header + i * row_h
        up = lambda a: Image.fromarray(a).resize((side, side), Image.Resampling.NEAREST)  # noqa: E731
        x = pad
        img.paste(up(s.source), (x, y))
        x += side + pad
        lines = [f"[{s.edit_type}]"]
        lines += textwrap.wrap(s.instruction, 52)
        lines += textwrap.wrap("-> " + s.rewrite, 52)
        for j, line in enumerate(lines[: max(1, side // 14)]):
            draw.text((x, y + 2 + j * 14), line, fill=(90, 90, 90) if j == 0 else (0, 0, 0), font=small if j == 0 else font)
        x += text_w + pad
        if "image1" in s.inputs:
            img.paste(up(s.inputs["image1"]), (x, y))
        elif "audio1" in s.inputs:
            img.paste(_audio_thumb(s.inputs["audio1"], side), (x, y))
        x += side + pad
        img.paste(up(s.target), (x, y))
        x += side + pad
        img.paste(up((s.mask * 255).astype(np.uint8)), (x, y))
    return img


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the images")
    parser.add_argument("--types", nargs="+", default=list(DEFAULT_TYPES), choices=list(EDIT_TYPES))
    args = parser.parse_args(argv)
    grid(pick(args.types, args.seed, size=args.size), scale=args.scale).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
