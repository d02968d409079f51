"""The ``editkit`` command line. Command modules live in ``editkit.commands``; each exposes
``add_parser(subparsers)`` and ``run(args) -> int`` and imports nothing heavy at module level, so
``editkit --help`` and ``editkit guides`` stay fast.

User errors (any :class:`~editkit.errors.EditkitError`, bad files, invalid options) print one line
``editkit: error: ...`` on stderr and exit with 2. ``EDITKIT_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

from . import __version__
from .errors import EditkitError

COMMANDS = ["edit", "guides", "data", "eval", "ablate", "train", "convert", "bench"]
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (and a pointer to --help)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _load_command(name: str):
    modname = f"{__package__}.commands.{name}"
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name == modname:  # not written yet: skip it, keep the others
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="editkit",
        description="Instruction-guided image editing with pluggable guides on one latent-diffusion backend.",
    )
    parser.add_argument("--version", action="version", version=f"editkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load_command(name)
        if module is None:
            continue
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        for added in set(subparsers.choices) - before:
            subparsers.choices[added].set_defaults(_run=module.run)
    return parser


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, (EditkitError, OSError)):
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def main(argv: Sequence[str] | None = None) -> int:
    # Library chatter (e.g. "install accelerate") would break the one-line error contract on stderr.
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("editkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `editkit guides --json | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not _is_user_error(exc) or os.environ.get("EDITKIT_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"editkit: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
