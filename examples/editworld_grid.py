"""Picture grid for docs: source / instruction / each guide's output / target on EditWorld test samples.

    python examples/editworld_grid.py --out docs/img/ip2p_editworld.png --guides ip2p
    python examples/editworld_grid.py --out docs/img/mgie_referring.png --guides mgie,ip2p --types referring
    python examples/editworld_grid.py --out docs/img/any2pix_editworld.png --guides any2pix --types multimodal
    python examples/editworld_grid.py --out docs/img/blended_editworld.png --guides blended --types recolour+add+replace

The samples are the first ``count`` test samples of the seed and types (no selection), one per row. Under the
instruction stands each guide's text output when it has one (MGIE's expressive instruction); beside each
output the strict EditWorld edit-success verdict. Guides that need a mask get the sample's mask.
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

import editkit
from editkit.editworld import generate
from editkit.eval.editworld_metrics import edit_success
from editkit.types import EditRequest

SCALE = 2
TEXT_W = 330


def run_guide(name: str, samples, seed: int, options: dict):
    """(output images, text outputs or None) of one guide; samples with extra inputs ([image1], [audio1]) are
    edited one by one, since a request's inputs are shared by its images."""
    guide = editkit.load_guide(name, progress=False, **options)

    def edit(batch, inputs):
        masks = None
        if "mask" in guide.needs:
            masks = [Image.fromarray(s.mask.astype(np.uint8) * 255) for s in batch]
        return guide.edit(EditRequest(images=[Image.fromarray(s.source) for s in batch], inputs=inputs,
                                      instructions=[s.instruction for s in batch], masks=masks, seed=seed))

    if not any(s.inputs for s in samples):
        result = edit(samples, {})
        return result.images, result.text
    results = [edit([s], {k: Image.fromarray(v) if k.startswith("image") else v for k, v in s.inputs.items()})
               for s in samples]
    texts = [r.text[0] if r.text else None for r in results]
    return [r.images[0] for r in results], (texts if any(texts) else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--guides", default="ip2p", help="comma-separated guide names, one output column each")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--types", default="explicit", help="EditWorld types or families joined by '+'")
    ap.add_argument("--set", action="append", default=[], metavar="GUIDE.KEY=VALUE",
                    help="an option of one guide, e.g. blended.clip_guidance_scale=1000 (YAML value)")
    args = ap.parse_args()
    import yaml

    options: dict[str, dict] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        guide_name, _, option = key.partition(".")
        options.setdefault(guide_name, {})[option] = yaml.safe_load(value)

    names = [g.strip() for g in args.guides.split(",") if g.strip()]
    samples = generate("test", args.count, seed=args.seed, types=args.types.split("+"))
    results = {name: run_guide(name, samples, args.seed, options.get(name, {})) for name in names}
    side = samples[0].source.shape[0] * SCALE
    col = side + 20
    width = side + TEXT_W + col * (len(names) + 1)
    rows = []
    for i, s in enumerate(samples):
        row = Image.new("RGB", (width, side + 24), "white")
        d = ImageDraw.Draw(row)
        row.paste(Image.fromarray(s.source).resize((side, side), Image.NEAREST), (0, 4))
        d.text((side + 8, 6), f"[{s.edit_type}]", fill=(90, 90, 90))
        d.text((side + 8, 22), s.instruction, fill="black")
        y = 40
        for name in names:
            text = results[name][1][i] if results[name][1] else None
            if text:
                d.text((side + 8, y), f"{name}: {text}"[:60], fill=(30, 60, 160))
                y += 16
        x = side + TEXT_W
        for name in names:
            out = results[name][0][i]
            ok = edit_success(np.asarray(out), s)
            row.paste(out.resize((side, side), Image.NEAREST), (x, 4))
            d.text((x, side + 8), "success" if ok else "FAIL", fill=(0, 130, 0) if ok else (200, 0, 0))
            x += col
        row.paste(Image.fromarray(s.target).resize((side, side), Image.NEAREST), (x, 4))
        rows.append(row)
    header = Image.new("RGB", (width, 18), "white")
    d = ImageDraw.Draw(header)
    labels = [(0, "source"), (side + 8, "instruction")]
    labels += [(side + TEXT_W + k * col, f"{n} output") for k, n in enumerate(names)]
    labels += [(side + TEXT_W + len(names) * col, "target")]
    for x, label in labels:
        d.text((x, 2), label, fill="black")
    grid = Image.new("RGB", (width, 18 + sum(r.height for r in rows)), "white")
    grid.paste(header, (0, 0))
    y = 18
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    grid.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
