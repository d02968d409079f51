"""``editkit bench``: time end-to-end edits of a guide (per stage), optionally beside diffusers' pipeline."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidInputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="time end-to-end edits (per stage, peak memory), optionally beside diffusers' pipeline",
        description="Warm up, then time repeated end-to-end edits of a guide and report the median, the per-stage "
        "medians (llm, edit_head, prepare, encode, denoise, decode) and peak memory. --size tiny uses the "
        "committed EditWorld weights; --size full builds the released architectures with random weights "
        "(SD1.5 8-channel InstructPix2Pix UNet + SD VAE + CLIP-L text; MGIE: LLaVA-7B with a ViT-L/14 tower "
        "and the 77x768 edit head): latency does not depend on weight values. See docs/benchmarks.md.",
    )
    p.add_argument("--guide", default="ip2p", help="guide to time (default: ip2p)")
    p.add_argument("--size", default="tiny", help="tiny (committed weights), full (random, released shapes), "
                   "test (random, tiny shapes)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the guide's own recommendation; 50 for --size full)")
    p.add_argument("--batch", default="1", metavar="B[,B...]", help="batch sizes, comma-separated (default: 1)")
    p.add_argument("--resolution", type=int, help="square input size (default: 64 tiny, 512 full, 32 test)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, else "
                   "float32)")
    p.add_argument("--compile", default="off", help="torch.compile the UNet: off, default, reduce-overhead, "
                   "max-autotune (compilation shows in the warm-up times)")
    fast = p.add_mutually_exclusive_group()
    fast.add_argument("--fast", dest="fast", action="store_true", default=None,
                      help="channels-last and fused QKV on (default on CUDA; on CPU they measured no faster, so the "
                      "default there times the guide's own defaults, what editkit edit runs)")
    fast.add_argument("--no-fast", dest="fast", action="store_false", help="leave channels-last and fused QKV off")
    p.add_argument("--scheduler", default="ddim", help="ddim (default), euler_ancestral, ddpm or dpmpp_2m, on both sides")
    p.add_argument("--new-tokens", type=int, default=40, help="mgie with random weights: tokens to decode "
                   "(default 40: a 32-token expressive instruction + 8 [IMG])")
    p.add_argument("--repeats", type=int, default=5, help="timed runs, median reported (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    p.add_argument("--compare", default="none", help="'diffusers': also time StableDiffusionInstructPix2PixPipeline "
                   "on the same modules")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="extra guide option, e.g. --set llm_cache=static (repeatable)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the full results as JSON")
    return p


def _batches(text: str) -> list[int]:
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise InvalidInputError(f"--batch expects integers separated by commas, got '{text}'") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pydantic import ValidationError

    from .edit import parse_pairs

    if args.json_out and not Path(args.json_out).expanduser().resolve().parent.is_dir():
        raise InvalidInputError(f"output folder '{Path(args.json_out).parent}' does not exist")
    cuda = args.device.startswith("cuda")
    fields = dict(guide=args.guide, size=args.size, batch_sizes=_batches(args.batch), device=args.device,
                  dtype=args.dtype or ("float16" if cuda else "float32"), fast=args.fast, compile=args.compile,
                  scheduler=args.scheduler, new_tokens=args.new_tokens, repeats=args.repeats, warmup=args.warmup,
                  compare=args.compare, options=parse_pairs(args.options, "--set", as_json=True),
                  steps=args.steps or (50 if args.size == "full" else None))
    if args.resolution is not None:
        fields["resolution"] = args.resolution
    from ..bench.runner import BenchSpec

    try:
        spec = BenchSpec(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err.get("loc", ())) or "spec"
        raise InvalidInputError(f"bench: {name}: {err.get('msg')} (got {err.get('input')!r})") from None

    from ..bench.runner import run_bench, table

    result = run_bench(spec, log=lambda line: print(line, file=sys.stderr))
    print(table(result))
    if args.json_out:
        from ..eval.results import write_json

        write_json(Path(args.json_out), result)
        print(f"wrote {args.json_out}", file=sys.stderr)
    return 0
