"""The ``editkit`` command line: parser assembly, ``guides``, ``edit``, speed of --help."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editkit import cli, registry
from editkit.testing import DummyGuide, contract_image, register_guide

PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
HEAVY = ("torch", "diffusers", "transformers", "open_clip")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(*argv, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGIN_PATH_ENV}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "editkit.cli", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture
def src(tmp_path) -> Path:
    contract_image((37, 29)).save(tmp_path / "src.png")
    return tmp_path / "src.png"


# -------------------------------------------------------------------------------- speed, imports
def _modules_after(code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGIN_PATH_ENV}
    probe = code + "; import sys; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_numpy():
    modules = _modules_after("import editkit, editkit.cli as c; c.build_parser().format_help()")
    bad = [m for m in modules if m.split(".")[0] in HEAVY + ("numpy", "PIL")]
    assert not bad, f"editkit --help imports {bad[:8]}"


def test_guides_listing_imports_no_torch():
    modules = _modules_after("from editkit.commands import guides; assert len(guides.guide_rows()) >= 2")
    bad = [m for m in modules if m.split(".")[0] in HEAVY]
    assert not bad, f"editkit guides imports {bad[:8]} (a plugin imports heavy modules at module level?)"


def test_help_is_fast():
    run_subprocess("--help")  # warm the file cache
    t0 = time.perf_counter()
    out = run_subprocess("--help")
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0 and "guides" in out.stdout and "edit" in out.stdout
    assert elapsed < 3.0, f"editkit --help took {elapsed:.2f} s (target 0.5 s on an idle machine)"


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("editkit")
    assert script.exists(), "the 'editkit' console script is missing; reinstall with pip install -e ."


# ----------------------------------------------------------------------------- parser assembly
def test_missing_command_modules_are_skipped_and_real_import_errors_raise(monkeypatch):
    assert cli._load_command("no_such_command_xyz") is None
    assert cli._load_command("edit").__name__ == "editkit.commands.edit"
    real = cli.importlib.import_module

    def fake(name):
        if name == "editkit.commands.guides":
            raise ModuleNotFoundError("No module named 'torchaudio'", name="torchaudio")
        return real(name)

    monkeypatch.setattr(cli.importlib, "import_module", fake)
    with pytest.raises(ModuleNotFoundError, match="torchaudio"):
        cli.build_parser()


def test_usage_errors_are_one_line(capsys):
    rc, out, err = run_cli(capsys, "edit", "in.png", "x")
    assert rc == 2 and err.count("\n") == 1
    assert "the following arguments are required: -o/--output" in err
    rc, _, err = run_cli(capsys, "frobnicate")
    assert rc == 2 and err.count("\n") == 1 and "invalid choice" in err


def test_no_command_prints_help(capsys):
    rc, out, _ = run_cli(capsys)
    assert rc == 2 and "usage: editkit" in out


def test_version(capsys):
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.startswith("editkit ")


# ------------------------------------------------------------------------------------ guides
def test_guides_json_lists_the_example_plugin(capsys):
    rc, out, _ = run_cli(capsys, "guides", "--json")
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)}
    tonal = rows["tonal"]
    assert tonal["distribution"] == "editkit-example-guide" and tonal["loadable"] is True
    assert tonal["accepts"] == ["mask"] and tonal["needs"] == [] and tonal["error"] is None


def test_guides_reports_a_broken_plugin_without_crashing():
    out = run_subprocess("guides", "--json", env_extra={registry.PLUGIN_PATH_ENV: str(PLUGINS)})
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["broken"]["loadable"] is False
    assert "ImportError" in rows["broken"]["error"] and "nonexistent-dependency" in rows["broken"]["error"]
    assert rows["broken"]["distribution"] == "editkit-broken-fixture"
    assert rows["notaguide"]["loadable"] is False and "not a subclass" in rows["notaguide"]["error"]
    assert rows["fixture-ok"]["loadable"] is True and rows["tonal"]["loadable"] is True
    assert rows["fixture-mask"]["needs"] == ["mask"]
    text = run_subprocess("guides", env_extra={registry.PLUGIN_PATH_ENV: str(PLUGINS)})
    assert text.returncode == 0 and "Traceback" not in text.stderr
    line = next(l for l in text.stdout.splitlines() if l.startswith("broken "))
    assert "error: guide 'broken'" in line and "editkit-broken-fixture" in line


def test_guides_show(capsys):
    rc, out, _ = run_cli(capsys, "guides", "show", "tonal")
    assert rc == 0
    line = next(l for l in out.splitlines() if l.startswith("strength"))
    assert "float" in line and "0.3" in line and "[0.0, 1.0]" in line and "How strong" in line
    assert "one of float32|float16|bfloat16" in out
    rc, out, _ = run_cli(capsys, "guides", "show", "tonal", "--json")
    data = json.loads(out)
    options = {o["option"]: o for o in data["options"]}
    assert options["strength"]["default"] == 0.3 and options["strength"]["range"] == "[0.0, 1.0]"
    assert data["schema"]["additionalProperties"] is False and data["accepts"] == ["mask"]


def test_guides_show_unknown(capsys):
    rc, out, err = run_cli(capsys, "guides", "show", "tonl")
    assert rc == 2 and out == ""
    assert err.startswith("editkit: error: Unknown guide 'tonl'. Did you mean: tonal?") and err.count("\n") == 1


# -------------------------------------------------------------------------------------- edit
def test_edit_with_the_example_guide(capsys, src, tmp_path):
    out_path = tmp_path / "out.png"
    rc, out, err = run_cli(capsys, "edit", src, "make it warmer", "--guide", "tonal", "--set", "strength=0.5",
                           "-o", out_path)
    assert rc == 0, err
    assert out.strip() == "warmth +0.50" and f"wrote {out_path}" in err
    result = np.asarray(Image.open(out_path)).astype(int)
    source = np.asarray(Image.open(src)).astype(int)
    assert result.shape == source.shape and result[..., 0].mean() > source[..., 0].mean()


def test_edit_set_values_are_json_or_strings(capsys, src, tmp_path):
    seen = {}

    class Spy(DummyGuide):
        def edit(self, request):
            seen.update(self.config.model_dump(), seed=request.seed, masks=request.masks)
            return super().edit(request)

    with register_guide("spy", Spy):
        rc, _, err = run_cli(capsys, "edit", src, "x", "--guide", "spy", "--set", "shift=-0.25",
                             "--set", "channel=red", "--set", 'noise=0', "--seed", "7", "--device", "cpu",
                             "--no-progress", "--mask", "1,1,5,5", "-o", tmp_path / "o.png")
    assert rc == 0, err
    assert seen["shift"] == -0.25 and seen["channel"] == "red" and seen["noise"] == 0
    assert seen["seed"] == 7 and seen["device"] == "cpu" and seen["progress"] is False
    assert seen["masks"][0].getbbox() == (1, 1, 5, 5)


def test_edit_overwrite_replaces_existing_output(capsys, src, tmp_path):
    out_path = tmp_path / "o.png"
    out_path.write_bytes(b"old")
    with register_guide("dummy", DummyGuide):
        rc, _, err = run_cli(capsys, "edit", src, "x", "--guide", "dummy", "--overwrite", "-o", out_path)
    assert rc == 0, err
    assert Image.open(out_path).size == (37, 29)


def test_edit_through_a_real_subprocess(src, tmp_path):
    out = run_subprocess("edit", src, "make it brighter", "--guide", "fixture-ok", "-o", tmp_path / "o.png",
                         env_extra={registry.PLUGIN_PATH_ENV: str(PLUGINS)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "dummy edit: make it brighter"
    assert Image.open(tmp_path / "o.png").size == (37, 29)
