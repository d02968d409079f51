"""``editkit guides [--json]`` and ``editkit guides show NAME [--json]``.

Listing imports each plugin module to tell whether it is usable ("loadable"), but loads no weights.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "guides",
        help="list installed guides, or show one guide's options",
        description="List the guides registered in the 'editkit.guides' entry-point group.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="guides_command", metavar="{show}")
    show = sub.add_parser("show", help="show a guide's options (type, default, range, description)")
    show.add_argument("name", help="guide name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    return p


# ------------------------------------------------------------------------------------ listing
def guide_rows() -> list[dict[str, Any]]:
    from .. import registry
    from ..errors import EditkitError

    rows = []
    for name, found in registry.entries().items():
        row: dict[str, Any] = {
            "name": name,
            "distribution": ", ".join(e.distribution for e in found),
            "version": found[0].version if len(found) == 1 else None,
            "object": ", ".join(e.value for e in found),
            "needs": [],
            "accepts": [],
            "loadable": False,
            "error": None,
            "summary": "",
        }
        try:
            cls = registry.load_guide_class(name)
        except EditkitError as exc:
            row["error"] = str(exc)
        else:
            row.update(needs=sorted(cls.needs), accepts=sorted(cls.accepts), loadable=True,
                       summary=_first_line(cls.__doc__))
        rows.append(row)
    return rows


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no guides installed (entry-point group 'editkit.guides' is empty)")
        return
    table = [("NAME", "DISTRIBUTION", "NEEDS", "STATUS")]
    for r in rows:
        status = "ok" if r["loadable"] else f"error: {r['error']}"
        table.append((r["name"], r["distribution"], ",".join(r["needs"]) or "-", status))
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])


# --------------------------------------------------------------------------------------- show
def _type_name(annotation: Any) -> str:
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("none" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _range(field: Any) -> str:
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi, hi_open = m.lt, True
        if getattr(m, "min_length", None) is not None:
            return f"length >= {m.min_length}"
    if lo is None and hi is None:
        return ""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def option_rows(config_cls: Any) -> list[dict[str, Any]]:
    from pydantic_core import PydanticUndefined

    rows = []
    for name, field in config_cls.model_fields.items():
        default = None if field.default is PydanticUndefined else field.default
        if isinstance(default, float) and not math.isfinite(default):
            default = str(default)
        rows.append({
            "option": name,
            "type": _type_name(field.annotation),
            "default": default,
            "required": field.is_required(),
            "range": _range(field),
            "description": field.description or "",
        })
    return rows


def show(name: str, as_json: bool) -> int:
    from .. import registry

    cls = registry.load_guide_class(name)
    entry = registry.get_entry(name)
    options = option_rows(cls.Config)
    if as_json:
        print(json.dumps({
            "name": name,
            "distribution": entry.distribution,
            "object": entry.value,
            "summary": _first_line(cls.__doc__),
            "needs": sorted(cls.needs),
            "accepts": sorted(cls.accepts),
            "options": options,
            "schema": cls.Config.model_json_schema(),
        }, indent=2, default=str))
        return 0
    print(f"{name}  ({entry.value}, distribution {entry.distribution})")
    if _first_line(cls.__doc__):
        print(f"  {_first_line(cls.__doc__)}")
    print(f"  needs: {', '.join(sorted(cls.needs)) or '-'}    accepts: {', '.join(sorted(cls.accepts)) or '-'}")
    print()
    table = [("OPTION", "TYPE", "DEFAULT", "RANGE", "DESCRIPTION")]
    for o in options:
        default = "(required)" if o["required"] else json.dumps(o["default"], default=str)
        table.append((o["option"], o["type"], default, o["range"] or "-", o["description"]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    print(f"\nset options with: editkit edit IN \"...\" --guide {name} --set OPTION=VALUE -o OUT")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "guides_command", None) == "show":
        return show(args.name, args.json)
    rows = guide_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0
