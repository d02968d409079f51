"""``editkit ablate SPEC.yaml --out DIR``: run a grid of guide variants on one dataset and compare them."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidInputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ablate",
        help="run an ablation grid of guides/options and write a comparison report",
        description="Validate SPEC.yaml (a base run and a grid of overrides over guides and options; every "
        "variant is validated by its guide's config before anything runs), evaluate each variant into "
        "OUT/runs/<variant>-<hash>/ (resumable: re-running skips finished work), and write OUT/comparison.csv, "
        "OUT/comparison.md, OUT/report.md, OUT/report.html (image grids, opens from disk) and OUT/plots/*.png. "
        "Variants whose guide is not installed are skipped with a note. See docs/evaluation.md.",
    )
    p.add_argument("spec", metavar="SPEC.yaml", help="ablation spec (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation folder (created, or resumed)")
    p.add_argument("--limit", type=int, metavar="N", help="override the spec's limit (e.g. a quick trial)")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and list the variants; run nothing")
    p.add_argument("--export", metavar="DIR", help="also copy the report (tables, report.md, plots, report.html "
                   "with the images it shows, no run folders) into DIR, e.g. docs/ablations/NAME")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be at least 1, got {args.limit}")
    from ..eval.ablation import expand, load_spec, run_ablation

    spec = load_spec(args.spec)
    if args.dry_run:
        from ..eval.datasets import load as load_dataset

        load_dataset(spec.dataset, limit=1)  # a wrong dataset spec fails here, not after the first variant
        for v in expand(spec):
            where = f"runs/{v.run_id}" if v.run_id else "-"
            note = f"  ({v.note})" if v.note else ""
            print(f"{v.status:9} {v.name:40} {where}{note}")
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    variants = run_ablation(spec, args.out, limit=args.limit, progress=not args.no_progress, log=log)
    if args.export:
        from ..eval.report import export

        export(args.out, args.export)
        print(f"copied the report to {args.export}", file=sys.stderr)
    ran = [v for v in variants if v.status == "ok"]
    failed = [v for v in variants if v.status == "failed"]
    skipped = [v for v in variants if v.status in ("skipped", "duplicate")]
    print(f"{spec.name}: {len(ran)} variant(s) evaluated, {len(failed)} failed, {len(skipped)} skipped; "
          f"report: {args.out}/report.html, {args.out}/report.md")
    return 1 if failed and not ran else 0
