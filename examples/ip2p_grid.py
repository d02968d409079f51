"""Picture grid for docs: source / instruction / ip2p output / target on EditWorld test samples.

    python examples/ip2p_grid.py --out docs/img/ip2p_editworld.png [--count 12] [--seed 0]

The samples are the first ``count`` explicit test samples of the seed (no selection), one per row,
with the strict edit-success verdict printed beside each output.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

import editkit
from editkit.editworld import generate
from editkit.eval.editworld_metrics import edit_success

SCALE = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--types", default="explicit")
    args = ap.parse_args()

    samples = generate("test", args.count, seed=args.seed, types=args.types)
    guide = editkit.load_guide("ip2p", progress=False)
    from editkit.types import EditRequest

    result = guide.edit(EditRequest(images=[Image.fromarray(s.source) for s in samples],
                                    instructions=[s.instruction for s in samples], seed=args.seed))
    side = samples[0].source.shape[0] * SCALE
    text_w = 330
    rows = []
    for s, out in zip(samples, result.images):
        ok = edit_success(np.asarray(out), s)
        row = Image.new("RGB", (3 * side + text_w + 40, side + 8), "white")
        row.paste(Image.fromarray(s.source).resize((side, side), Image.NEAREST), (0, 4))
        row.paste(out.resize((side, side), Image.NEAREST), (text_w + side + 10, 4))
        row.paste(Image.fromarray(s.target).resize((side, side), Image.NEAREST), (text_w + 2 * side + 30, 4))
        d = ImageDraw.Draw(row)
        d.text((side + 8, 8), f"[{s.edit_type}]", fill=(90, 90, 90))
        d.text((side + 8, 26), s.instruction, fill="black")
        d.text((side + 8, 50), "success" if ok else "FAIL", fill=(0, 130, 0) if ok else (200, 0, 0))
        rows.append(row)
    header = Image.new("RGB", (rows[0].width, 18), "white")
    d = ImageDraw.Draw(header)
    for x, label in ((0, "source"), (side + 8, "instruction"), (text_w + side + 10, "ip2p output"),
                     (text_w + 2 * side + 30, "target")):
        d.text((x, 2), label, fill="black")
    grid = Image.new("RGB", (rows[0].width, 18 + sum(r.height for r in rows)), "white")
    grid.paste(header, (0, 0))
    y = 18
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
