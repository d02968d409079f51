"""``editkit convert mgie --ckpt _ckpt --out DIR``: convert released checkpoints to the editkit layout.

``mgie``: the official apple/ml-mgie release (merged ``LLaVA-7B-v1/`` + ``mgie_7b/mllm.pt`` +
``mgie_7b/unet.pt``) -> transformers ``LlavaForConditionalGeneration`` safetensors + edit head + the
UNet in the diffusers layout, loadable with ``--guide mgie --set model=DIR``. The key mapping is
documented in docs/guides/mgie.md. The mgie plugin is reached through its entry point (editkit
modules never import a guide plugin by name).
"""
from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="convert released checkpoints to the editkit layout",
        description="Convert released checkpoints to safetensors in the editkit layout.",
    )
    sub = p.add_subparsers(dest="convert_what", metavar="WHAT")
    m = sub.add_parser(
        "mgie", help="the official MGIE release (LLaVA-7B-v1 + mgie_7b)",
        description="Convert the official MGIE release: the merged LLaVA-7B-v1 folder (LLaVA-v1 key names) and "
        "mgie_7b/{mllm.pt,unet.pt} -> DIR with llm/ (transformers Llava, safetensors), edit_head.safetensors, "
        "unet/ and mgie_config.json. Needs the CLIP vision tower and the InstructPix2Pix shell (hub ids or folders).",
    )
    m.add_argument("--ckpt", metavar="DIR", help="release folder holding LLaVA-7B-v1/ and mgie_7b/ (the '_ckpt' folder)")
    m.add_argument("--llava", metavar="DIR", help="merged LLaVA-7B-v1 folder (instead of --ckpt)")
    m.add_argument("--mgie", metavar="DIR", help="mgie_7b folder with mllm.pt and unet.pt (instead of --ckpt)")
    m.add_argument("--vision-tower", default="openai/clip-vit-large-patch14", metavar="ID",
                   help="CLIP vision tower, hub id or folder (default: openai/clip-vit-large-patch14)")
    m.add_argument("--pipeline", default="timbrooks/instruct-pix2pix", metavar="ID",
                   help="InstructPix2Pix shell for the VAE, scheduler and UNet config (default: timbrooks/instruct-pix2pix)")
    m.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="dtype of the written weights (default: float16, as released)")
    m.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty)")
    m.add_argument("--overwrite", action="store_true", help="write into a non-empty DIR")
    return p


def _mgie_plugin():
    from ..registry import load_guide_class

    return importlib.import_module(load_guide_class("mgie").__module__.rsplit(".", 1)[0])


def run(args: argparse.Namespace) -> int:
    if getattr(args, "convert_what", None) != "mgie":
        raise InvalidInputError("say what to convert: 'editkit convert mgie ...'")
    if args.ckpt:
        if args.llava or args.mgie:
            raise InvalidInputError("give --ckpt, or --llava and --mgie, not both")
        args.llava, args.mgie = str(Path(args.ckpt) / "LLaVA-7B-v1"), str(Path(args.ckpt) / "mgie_7b")
    if not (args.llava and args.mgie):
        raise InvalidInputError("give --ckpt DIR, or --llava DIR and --mgie DIR")
    for flag, folder in (("--llava", args.llava), ("--mgie", args.mgie)):
        if not Path(folder).is_dir():
            raise InvalidInputError(f"{flag} '{folder}': no such folder")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise InvalidInputError(f"--out '{out}' is not empty (use --overwrite)")
    import torch

    plugin = _mgie_plugin()
    convert = importlib.import_module(f"{plugin.__name__}.convert")
    converted = convert.convert_official(args.llava, args.mgie, vision_tower=args.vision_tower,
                                         pipeline=args.pipeline, dtype=getattr(torch, args.dtype))
    converted.write(out)
    print(json.dumps({"out": str(out), **converted.report}, indent=2))
    return 0
