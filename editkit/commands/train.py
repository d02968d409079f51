"""``editkit train RECIPE [--option value ...]``: run a committed training recipe."""
from __future__ import annotations

import argparse
import importlib
import json

from ..training import RECIPES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train tiny EditWorld weights with a committed recipe",
        description="Train tiny EditWorld weights. Recipes: " + ", ".join(RECIPES)
        + ". Options are the recipe's fields (see docs/training.md), e.g. --steps 100 --out DIR.",
    )
    p.add_argument("recipe", choices=sorted(RECIPES), help="recipe name")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("options", nargs=argparse.REMAINDER, help="--field value pairs of the recipe")


def _parse_options(tokens: list[str], recipe: str) -> dict:
    from ..errors import GuideConfigError

    options: dict = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or i + 1 >= len(tokens):
            raise GuideConfigError(f"train {recipe}", tok, "expected '--field value'")
        key, value = tok[2:].replace("-", "_"), tokens[i + 1]
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
        i += 2
    return options


def _recipe_help(name: str, model) -> str:
    lines = [f"usage: editkit train {name} [--field value ...]", "", "options:"]
    for field, info in model.model_fields.items():
        default = "required" if info.is_required() else f"default {info.default!r}"
        lines.append(f"  --{field.replace('_', '-'):<16} {info.description or ''} ({default})")
    return "\n".join(lines)


def run(args) -> int:
    from ..config import validate_config

    module, model_name, fn_name = RECIPES[args.recipe]
    mod = importlib.import_module(module)
    if any(tok in ("-h", "--help") for tok in args.options):
        print(_recipe_help(args.recipe, getattr(mod, model_name)))
        return 0
    # argparse hands everything after the recipe name to REMAINDER, so the flag may sit among the options too
    hide_progress = args.no_progress or "--no-progress" in args.options
    options = [tok for tok in args.options if tok != "--no-progress"]
    recipe = validate_config(f"train {args.recipe}", getattr(mod, model_name), _parse_options(options, args.recipe))
    results = getattr(mod, fn_name)(recipe, progress=not hide_progress)
    print(json.dumps(results, indent=2))
    return 0
