"""``editkit data editworld --split test --count N --seed S --out DIR``: write an EditWorld dataset folder."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import InvalidInputError

SPLITS = ("train", "val", "test")
TYPE_CHOICES_HELP = ("all, explicit, referring, multimodal, or edit types separated by commas (e.g. recolour,remove; "
                     "replace_image_pair only when named)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data",
        help="generate datasets (EditWorld)",
        description="Generate datasets. 'editkit data editworld' writes EditWorld samples (PNGs, WAVs, "
        "samples.jsonl) that 'editkit eval --dataset DIR' reads.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="DATASET")
    ew = sub.add_parser(
        "editworld",
        help="write an EditWorld dataset folder",
        description="Write COUNT EditWorld samples of one split to DIR: samples.jsonl, dataset.json, "
        "source/, target/, mask/ PNGs and inputs/ (cut-out PNGs, 16-bit WAVs). Deterministic for "
        "(split, seed, types, size); splits never share scenes.",
    )
    ew.add_argument("--split", required=True, choices=SPLITS, help="train, val or test")
    ew.add_argument("--count", required=True, type=int, metavar="N", help="number of samples")
    ew.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    ew.add_argument("--types", default="all", metavar="TYPES", help=f"{TYPE_CHOICES_HELP} (default: all)")
    ew.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    ew.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty)")
    ew.add_argument("--overwrite", action="store_true",
                    help="write into a non-empty DIR, replacing the EditWorld dataset there")
    ew.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    if getattr(args, "data_command", None) != "editworld":
        raise InvalidInputError("choose a dataset: 'editkit data editworld --help'")
    if args.count < 1:
        raise InvalidInputError(f"--count must be at least 1, got {args.count}")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be non-negative, got {args.seed}")
    types_arg = [t.strip() for t in args.types.split(",") if t.strip()]

    from ..editworld import iter_samples, resolve_types
    from ..editworld.dataset import prepare_dir, write_dataset
    from ..editworld.render import MAX_SIZE, MIN_SIZE

    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise InvalidInputError(f"--size must be in [{MIN_SIZE}, {MAX_SIZE}], got {args.size}")
    types = resolve_types(types_arg)
    prepare_dir(args.out, overwrite=args.overwrite)  # fail before generating anything
    t0 = time.perf_counter()
    stream = iter_samples(args.split, args.seed, types, args.size)
    samples = (next(stream) for _ in range(args.count))
    meta = {"split": args.split, "seed": args.seed, "types": list(types), "types_arg": args.types, "size": args.size}
    out = write_dataset(samples, args.out, overwrite=args.overwrite, meta=meta,
                        progress=not args.no_progress, total=args.count)
    print(f"wrote {args.count} EditWorld {args.split} samples to {out} ({time.perf_counter() - t0:.1f} s)",
          file=sys.stderr)
    return 0
