"""``editkit eval --guide NAME --dataset DIR --out OUT``: run a guide over an EditWorld dataset folder."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import InvalidInputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a guide on an EditWorld dataset",
        description="Load a guide once, edit every sample of an EditWorld dataset folder (written by "
        "'editkit data editworld'), and write OUT/summary.json (edit_success, edit_success_by_type, psnr, "
        "psnr_background, seconds_per_edit, ...), OUT/metrics.jsonl and OUT/outputs/<id>.png.",
    )
    p.add_argument("--guide", required=True, help="guide name (see 'editkit guides')")
    p.add_argument("--dataset", required=True, metavar="DIR", help="EditWorld dataset folder")
    p.add_argument("--out", required=True, metavar="OUT", help="results folder (created; must be empty)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="guide option, value parsed as JSON when possible, e.g. --set steps=20 (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed SEED + i (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="samples per guide call (default: 8; samples with extra inputs run alone)")
    p.add_argument("--device", help="torch device (sets the guide's 'device' option)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_options(pairs: list[str]) -> dict[str, Any]:
    from .edit import parse_pairs

    return parse_pairs(pairs, "--set", as_json=True)


def _load_guide(name: str, options: dict[str, Any]) -> Any:
    """Load through the public API (the registry, validated config, shared backend cache)."""
    from .. import api, registry

    config_cls = getattr(registry.load_guide_class(name), "Config", None)
    fields = getattr(config_cls, "model_fields", {})
    if "progress" in fields:
        options.setdefault("progress", False)  # one eval progress bar, not one per denoising loop
    return api.load_guide(name, **options)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be non-negative, got {args.seed}")
    options = parse_options(args.options)
    if args.device is not None:
        options["device"] = args.device

    from ..editworld.dataset import load_dataset
    from ..eval.runner import check_out_dir, run_eval

    dataset = load_dataset(args.dataset, limit=args.limit)  # bad folders fail before loading weights
    check_out_dir(args.out, overwrite=args.overwrite)
    t0 = time.perf_counter()
    guide = _load_guide(args.guide, options)
    load_seconds = time.perf_counter() - t0
    summary = run_eval(guide, dataset, args.out, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                       progress=not args.no_progress, overwrite=True,
                       extra_summary={"load_seconds": load_seconds, "dataset": str(args.dataset),
                                      "options": options})
    def fmt(value: Any, spec: str, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:{spec}}{unit}"

    by_type = ", ".join(f"{k} {fmt(v, '.2f')}" for k, v in summary["edit_success_by_type"].items())
    errors = f"; {summary['errors']} refused" if summary.get("errors") else ""
    print(f"{summary['guide']}: edit_success {fmt(summary['edit_success'], '.3f')} over {summary['count']} samples "
          f"({by_type}); psnr {fmt(summary['psnr'], '.2f', ' dB')}, psnr_background "
          f"{fmt(summary['psnr_background'], '.2f', ' dB')}; {fmt(summary['seconds_per_edit'], '.3f', ' s/edit')}{errors}")
    print(f"wrote {args.out}/summary.json", file=sys.stderr)
    return 0
