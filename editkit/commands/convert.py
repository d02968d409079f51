"""``editkit convert {mgie,any2pix} --ckpt DIR --out DIR``: convert released checkpoints to the editkit layout.

``mgie``: the official apple/ml-mgie release (merged ``LLaVA-7B-v1/`` + ``mgie_7b/mllm.pt`` +
``mgie_7b/unet.pt``) -> transformers ``LlavaForConditionalGeneration`` safetensors + edit head + the
UNet in the diffusers layout, loadable with ``--guide mgie --set model=DIR``. The key mapping is
documented in docs/guides/mgie.md.

``any2pix``: the official InstructAny2Pix release (``ckpts/``: ``imagebind_huge.pth``, the LLM folder,
``prior/model.bin``, ``sdxl/ip_adapter_global_local_2_view.bin``) -> an editkit any2pix folder, loadable
with ``--guide any2pix --set model=DIR``; the mapping is documented in docs/guides/any2pix.md.

Each plugin's ``convert`` module is reached through the guide's entry point (editkit modules never
import a guide plugin by name).
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
    _output_arguments(m)
    a = sub.add_parser(
        "any2pix", help="the official InstructAny2Pix release (ckpts/)",
        description="Convert the official InstructAny2Pix release: ckpts/ with imagebind_huge.pth, the LLM folder "
        "(llm-retrained/ with tokenizer/), prior/model.bin and sdxl/ip_adapter_global_local_2_view.bin -> DIR with "
        "imagebind.safetensors, llm/ (transformers Llama, safetensors), projectors.safetensors, prior.safetensors, "
        "ip_adapter.safetensors and any2pix_config.json. The prior's empty-prompt text states are computed once "
        "with the CLIP text encoder named by --prior-text-encoder (its tokenizer and config; its weights only when "
        "prior/model.bin lacks its own copy).",
    )
    a.add_argument("--ckpt", required=True, metavar="DIR", help="release folder (the 'ckpts' folder)")
    a.add_argument("--llm", default="llm-retrained", metavar="DIR",
                   help="LLM folder, relative to --ckpt or absolute (default: llm-retrained; also released: llm-instance)")
    a.add_argument("--prior-text-encoder", default="laion/CLIP-ViT-H-14-laion2B-s32B-b79K", metavar="ID",
                   help="CLIP text encoder of the prior, hub id or folder (default: laion/CLIP-ViT-H-14-laion2B-s32B-b79K)")
    a.add_argument("--pipeline", default="stabilityai/stable-diffusion-xl-base-1.0", metavar="ID",
                   help="diffusion pipeline recorded in the folder, hub id or folder "
                   "(default: stabilityai/stable-diffusion-xl-base-1.0)")
    _output_arguments(a)
    return p


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                        help="dtype of the written weights (default: float16, as released)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty DIR")


def _converter(guide: str):
    """The ``convert`` module of the plugin that provides ``guide``, found through its entry point."""
    from ..registry import load_guide_class

    plugin = load_guide_class(guide).__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{plugin}.convert")


def _check_out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise InvalidInputError(f"--out '{out}' is not empty (use --overwrite)")
    return out


def run(args: argparse.Namespace) -> int:
    what = getattr(args, "convert_what", None)
    if what == "mgie":
        return _run_mgie(args)
    if what == "any2pix":
        return _run_any2pix(args)
    raise InvalidInputError("say what to convert: 'editkit convert mgie ...' or 'editkit convert any2pix ...'")


def _run_any2pix(args: argparse.Namespace) -> int:
    if not Path(args.ckpt).is_dir():
        raise InvalidInputError(f"--ckpt '{args.ckpt}': no such folder")
    out = _check_out(args)
    import torch

    report = _converter("any2pix").convert_official(args.ckpt, out, llm=args.llm, pipeline=args.pipeline,
                                                    prior_text_encoder=args.prior_text_encoder,
                                                    dtype=getattr(torch, args.dtype))
    print(json.dumps({"out": str(out), **report}, indent=2))
    return 0


def _run_mgie(args: argparse.Namespace) -> int:
    if args.ckpt:
        if args.llava or args.mgie:
            raise InvalidInputError("give --ckpt, or --llava and --mgie, not both")
        args.llava, args.mgie = str(Path(args.ckpt) / "LLaVA-7B-v1"), str(Path(args.ckpt) / "mgie_7b")
    if not (args.llava and args.mgie):
        raise InvalidInputError("give --ckpt DIR, or --llava DIR and --mgie DIR")
    for flag, folder in (("--llava", args.llava), ("--mgie", args.mgie)):
        if not Path(folder).is_dir():
            raise InvalidInputError(f"{flag} '{folder}': no such folder")
    out = _check_out(args)
    import torch

    converted = _converter("mgie").convert_official(args.llava, args.mgie, vision_tower=args.vision_tower,
                                                    pipeline=args.pipeline, dtype=getattr(torch, args.dtype))
    converted.write(out)
    print(json.dumps({"out": str(out), **converted.report}, indent=2))
    return 0
