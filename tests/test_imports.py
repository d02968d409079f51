"""Dependency direction, checked on the source with ``ast``:

* core modules never import the backend, a guide plugin, or torch/diffusers/transformers at module level;
* no editkit module imports a guide plugin (``editkit_*``) at all: guides are reached only through
  entry points;
* ``import editkit`` imports no torch.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "editkit"
CORE = ["types", "errors", "config", "guide", "registry", "images", "api", "cli", "weights", "testing",
        "commands/__init__", "commands/edit", "commands/guides"]
HEAVY = {"torch", "torchvision", "diffusers", "transformers", "open_clip", "safetensors"}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(source: str, package: str) -> list[str]:
    """Absolute names imported when the module is imported (functions and TYPE_CHECKING excluded)."""
    found: list[str] = []

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                found.append(mod)
                found.extend(f"{mod}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, ast.With)):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
    visit(ast.parse(source).body)
    return found


def all_imports(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return names


def violations(source: str, package: str) -> list[str]:
    bad = []
    for name in module_level_imports(source, package):
        top = name.split(".")[0]
        if top in HEAVY or top.startswith("editkit_") or name == "editkit.backend" or name.startswith("editkit.backend."):
            bad.append(name)
    return bad


def test_checker_catches_violations():
    src = (
        "from typing import TYPE_CHECKING\nimport os\nfrom . import backend\nfrom .backend.cache import X\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "try:\n    import diffusers\nexcept ImportError:\n    pass\n"
        "def f():\n    import torch\n"
    )
    assert violations(src, "editkit") == ["editkit.backend", "editkit.backend.cache", "editkit.backend.cache.X", "diffusers"]
    assert violations("import editkit_ip2p\n", "editkit") == ["editkit_ip2p"]
    assert violations("from .. import backend\n", "editkit.commands") == ["editkit.backend"]


@pytest.mark.parametrize("name", CORE)
def test_core_module_import_direction(name):
    path = ROOT / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path.name} not written")
    package = "editkit.commands" if name.startswith("commands/") else "editkit"
    assert violations(path.read_text(), package) == [], f"{name}.py imports these at module level"


def test_no_editkit_module_imports_a_guide_plugin():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(ROOT.rglob("*.py"))
        for name in all_imports(path.read_text())
        if name.split(".")[0].startswith("editkit_")
    ]
    assert not offenders, offenders


def test_import_editkit_imports_no_torch():
    code = ("import sys, editkit, editkit.cli, editkit.api, editkit.images, editkit.registry, editkit.weights; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (sorted(HEAVY),))
    env = {k: v for k, v in os.environ.items() if k != "EDITKIT_PLUGIN_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
