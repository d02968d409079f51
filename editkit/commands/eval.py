"""``editkit eval --guide NAME --dataset SPEC --out OUT``: run a guide over a dataset and score it.

Resumable: running the same command again skips the samples already finished in OUT.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import InvalidInputError

FORMATS_HELP = "editworld, magicbrush, magicbrush-multi, piebench, jsonl"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a guide on a dataset (EditWorld, MagicBrush, PIE-Bench, JSONL)",
        description="Load a guide once, edit every sample of a dataset, and write OUT/run.json (config, "
        "versions, git commit, seed, device, timings), OUT/metrics.jsonl (one row per sample), "
        "OUT/outputs/<id>.png, OUT/summary.json and OUT/summary.csv. Re-running the same command resumes: "
        "finished samples are not recomputed. Metrics a dataset cannot support are skipped with a note. "
        "See docs/evaluation.md.",
    )
    p.add_argument("--guide", required=True, help="guide name (see 'editkit guides')")
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help=f"dataset folder (format detected) or FORMAT:PATH, FORMAT one of {FORMATS_HELP}")
    p.add_argument("--out", required=True, metavar="OUT", help="results folder (created, or resumed)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="guide option, value parsed as JSON when possible, e.g. --set steps=20 (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed SEED + i (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B",
                   help="samples per guide call (default: 8; samples with extra inputs run alone)")
    p.add_argument("--device", help="torch device (sets the guide's 'device' option)")
    m = p.add_argument_group("metrics")
    m.add_argument("--metrics", metavar="NAMES", help="comma-separated metric names (default: every metric the "
                   "dataset supports; e.g. l1,mse,psnr,ssim,clip_i,clip_t,clip_direction,dino,edit_success)")
    m.add_argument("--exclude-metrics", metavar="NAMES", help="comma-separated metric names to leave out")
    m.add_argument("--piebench-metrics", action="store_true",
                   help="also compute the PIE-Bench-compatible background metrics (default: on PIE-Bench only)")
    m.add_argument("--metric-device", metavar="DEV", help="torch device of CLIP/DINO/LPIPS (default: cpu)")
    m.add_argument("--clip-model", metavar="NAME", help="open_clip model name or model-config JSON (default: ViT-B-32)")
    m.add_argument("--clip-checkpoint", metavar="PATH", help="local open_clip weights (CLIP metrics are skipped without)")
    m.add_argument("--clip-preprocess", choices=("crop", "squash"), help="'crop' (CLIP, default) or 'squash' (IP2P)")
    m.add_argument("--dino-model", metavar="NAME", help="timm model name (default: vit_small_patch16_224)")
    m.add_argument("--dino-checkpoint", metavar="PATH", help="local timm weights (DINO metrics are skipped without)")
    m.add_argument("--lpips-net", choices=("alex", "vgg", "squeeze"), help="LPIPS backbone (default: alex)")
    m.add_argument("--lpips-checkpoint", metavar="PATH", help="local torchvision weights of the LPIPS backbone")
    p.add_argument("--overwrite", action="store_true", help="discard the results already in OUT and start again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_options(pairs: list[str]) -> dict[str, Any]:
    from .edit import parse_pairs

    return parse_pairs(pairs, "--set", as_json=True)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InvalidInputError("--metrics expects names separated by commas")
    return names


def metrics_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The MetricsConfig fields given on the command line (validated by the runner)."""
    settings: dict[str, Any] = {}
    if args.metrics is not None:
        settings["select"] = _names(args.metrics)
    if args.exclude_metrics is not None:
        settings["exclude"] = _names(args.exclude_metrics)
    if args.piebench_metrics:
        settings["piebench"] = True
    if args.metric_device:
        settings["device"] = args.metric_device
    for group, fields in (("clip", ("model", "checkpoint", "preprocess")), ("dino", ("model", "checkpoint")),
                          ("lpips", ("net", "checkpoint"))):
        values = {f: getattr(args, f"{group}_{f}") for f in fields if getattr(args, f"{group}_{f}") is not None}
        if values:
            settings[group] = values
    return settings


def guide_config(name: str, options: dict[str, Any]) -> tuple[type, Any]:
    """The guide class (imported, no weights) and its validated config; ``progress`` off by default."""
    from .. import registry

    cls = registry.load_guide_class(name)
    if "progress" in getattr(cls.Config, "model_fields", {}):
        options.setdefault("progress", False)  # one eval progress bar, not one per denoising loop
    return cls, cls.validate(options)


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

    from .. import api
    from ..eval.datasets import load
    from ..eval.metrics import MetricsConfig
    from ..eval.results import prepare_out
    from ..eval.runner import fingerprint, run_eval
    from ..eval.suite import MetricSuite

    settings = MetricsConfig.model_validate(metrics_settings(args))
    dataset = load(args.dataset, limit=args.limit)  # bad folders fail before loading weights
    cls, config = guide_config(args.guide, options)  # unknown guide / option fail before loading weights
    MetricSuite(settings, dataset, extra=tuple(getattr(cls, "eval_metrics", ()) or ()))  # metric backbones too
    prepare_out(args.out, fingerprint(args.guide, config.model_dump(mode="json"), dataset, args.seed, settings),
                overwrite=args.overwrite, resume=True, create=False)
    t0 = time.perf_counter()
    guide = api.load_guide(args.guide, **config.model_dump())
    load_seconds = time.perf_counter() - t0
    summary = run_eval(guide, dataset, args.out, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                       progress=not args.no_progress, resume=True, overwrite=args.overwrite, metrics=settings,
                       extra_summary={"load_seconds": load_seconds, "dataset": str(args.dataset), "options": options},
                       run_info={"cli": {k: v for k, v in vars(args).items() if not k.startswith("_")}})
    print(format_summary(summary))
    print(f"wrote {args.out}/summary.json", file=sys.stderr)
    return 0


def _fmt(value: Any, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def format_summary(summary: dict[str, Any]) -> str:
    """One line: edit success (with per-type values) when known, then the main pixel metrics and speed."""
    parts = []
    if summary.get("edit_success") is not None:
        by_type = ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in (summary.get("edit_success_by_type") or {}).items())
        parts.append(f"edit_success {_fmt(summary['edit_success'], '.3f')} over {summary['count']} samples ({by_type})")
    else:
        parts.append(f"{summary['count']} samples")
    shown = [f"{k} {_fmt(summary.get(k), '.2f', ' dB')}" for k in ("psnr", "psnr_background") if k in summary]
    keys = ("clip_i", "clip_t", "clip_direction", "dino") if "edit_success" in summary else \
        ("l1", "ssim", "clip_i", "clip_t", "clip_direction", "dino")
    shown += [f"{k} {_fmt(summary.get(k), '.4f')}" for k in keys if k in summary]
    if shown:
        parts.append(", ".join(shown))
    parts.append(_fmt(summary.get("seconds_per_edit"), ".3f", " s/edit"))
    errors = f"; {summary['errors']} refused" if summary.get("errors") else ""
    return f"{summary['guide']}: " + "; ".join(parts) + errors
