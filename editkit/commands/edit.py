"""``editkit edit IN "instruction" --guide NAME -o OUT``: edit one image with one guide."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InvalidInputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "edit",
        help="edit an image following an instruction",
        description="Edit IN following INSTRUCTION with a guide and write the result to OUT "
        "(atomically; never over an input, nor over an existing file without --overwrite).",
    )
    p.add_argument("input", metavar="IN", help="source image (png, jpg, webp, ...)")
    p.add_argument("instruction", help='the edit, e.g. "make the sky red"')
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the edited image")
    p.add_argument("--guide", default="ip2p", help="guide name (see 'editkit guides'; default: ip2p)")
    p.add_argument("--mask", metavar="M", help="mask image (white = editable) or a box x0,y0,x1,y1")
    p.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=PATH",
                   help="extra input of the guide, e.g. --input audio1=clip.wav (repeatable)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="guide option, value parsed as JSON when possible, e.g. --set steps=30 (repeatable; "
                   "see 'editkit guides show NAME')")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1, auto (sets the 'device' option)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_pairs(pairs: list[str], flag: str, *, as_json: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"{flag} expects NAME=VALUE, got {pair!r}")
        if as_json:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..images import check_output_path, save_image_atomic

    options = parse_pairs(args.options, "--set", as_json=True)
    inputs = parse_pairs(args.inputs, "--input", as_json=False)
    if args.device is not None:
        options["device"] = args.device
    if args.no_progress:
        options["progress"] = False
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be non-negative, got {args.seed}")
    protect = [args.input, *inputs.values()] + ([args.mask] if args.mask else [])
    # Fail on the output path before loading any weights; checked again when writing.
    check_output_path(args.output, overwrite=args.overwrite, protect=protect)
    result = api.edit(args.input, args.instruction, args.guide, mask=args.mask, inputs=inputs,
                      seed=args.seed, **options)
    out = save_image_atomic(result.images[0], args.output, overwrite=args.overwrite, protect=protect)
    for text in result.text:
        if text:
            print(text)
    total = result.timings.get("total")
    print(f"wrote {out}" + (f" ({total:.1f} s)" if total is not None else ""), file=sys.stderr)
    return 0
