"""Guide discovery through the ``editkit.guides`` entry-point group."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from editkit import registry
from editkit.errors import EditkitError, GuideLoadError, UnknownGuideError
from editkit.guide import Guide
from editkit.testing import DummyGuide, DummyMaskGuide, register_guide

FIXTURES = Path(__file__).parent / "fixtures"
PLUGINS = FIXTURES / "plugins"
DUPLICATES = FIXTURES / "duplicates"


@pytest.fixture
def plugin_path(monkeypatch):
    """Point EDITKIT_PLUGIN_PATH at fixture folders; sys.path and the registry are restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))

    def use(*folders: Path) -> None:
        monkeypatch.setenv(registry.PLUGIN_PATH_ENV, os.pathsep.join(str(f) for f in folders))
        registry.refresh()

    yield use
    monkeypatch.undo()
    registry.refresh()


def test_canonical_distribution_names():
    assert registry.canonical_distribution("editkit_example_guide") == "editkit-example-guide"
    assert registry.canonical_distribution("Editkit.Twin_B") == "editkit-twin-b"
    assert registry.canonical_distribution("editkit--x__y") == "editkit-x-y"
    assert registry.canonical_distribution(None) == "<unknown>"


def test_example_plugin_is_discovered_from_its_own_distribution():
    entry = registry.get_entry("tonal")
    assert entry.distribution == "editkit-example-guide"
    assert entry.value == "editkit_example_guide:TonalGuide"
    cls = registry.load_guide_class("tonal")
    assert issubclass(cls, Guide) and cls.name == "tonal"


def test_listing_imports_no_plugin_and_no_torch():
    code = (
        "import sys, editkit.registry as r; names = r.names(); "
        "assert 'tonal' in names and 'ip2p' in names, names; "
        "bad = [m for m in sys.modules if m.startswith(('editkit_', 'torch', 'diffusers')) or m == 'editkit.guide']; "
        "assert not bad, bad; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGIN_PATH_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_unknown_guide_suggests_close_names():
    with pytest.raises(UnknownGuideError) as info:
        registry.load_guide_class("tonl")
    message = str(info.value)
    assert "Unknown guide 'tonl'" in message and "Did you mean: tonal?" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, EditkitError)


def test_broken_plugin_is_reported_and_others_keep_working(plugin_path):
    plugin_path(PLUGINS)
    names = registry.names()
    assert {"broken", "notaguide", "fixture-ok", "tonal"} <= set(names)
    with pytest.raises(GuideLoadError) as info:
        registry.load_guide_class("broken")
    message = str(info.value)
    assert "ImportError" in message and "nonexistent-dependency" in message
    assert "editkit-broken-fixture" in message and "\n" not in message
    # The other guides, including one from the same folder, still load.
    assert registry.load_guide_class("fixture-ok").__name__ == "OkGuide"
    assert registry.load_guide_class("tonal").name == "tonal"
    failures = {f.name: f for f in registry.failures()}
    assert set(failures) == {"broken"}
    assert failures["broken"].distribution == "editkit-broken-fixture"


def test_object_that_is_not_a_guide_is_an_error(plugin_path):
    plugin_path(PLUGINS)
    with pytest.raises(GuideLoadError, match="not a subclass of editkit.Guide"):
        registry.load_guide_class("notaguide")
    failures = {f.name for f in registry.check_all()}
    assert failures == {"broken", "notaguide"}


def test_same_distribution_seen_twice_is_not_a_clash(plugin_path):
    plugin_path(PLUGINS, PLUGINS)
    assert len(registry.entries()["fixture-ok"]) == 1
    assert registry.load_guide_class("fixture-ok").name == "fixture-ok"


def test_two_distributions_with_one_name_is_an_error_naming_both(plugin_path):
    plugin_path(DUPLICATES)
    assert "twin" in registry.names()
    with pytest.raises(registry.DuplicateGuideError) as info:
        registry.load_guide_class("twin")
    message = str(info.value)
    assert "'editkit-twin-a'" in message and "'editkit-twin-b'" in message
    assert isinstance(info.value, EditkitError)
    assert "twin" in {f.name for f in registry.failures()}
    assert registry.load_guide_class("tonal").name == "tonal"  # unaffected


def test_in_process_registration_is_temporary_and_shadows():
    original = registry.load_guide_class("tonal")
    with register_guide("dummy", DummyGuide) as cls:
        assert cls is DummyGuide
        assert "dummy" in registry.names()
        assert registry.get_entry("dummy").distribution == registry.IN_PROCESS
        with register_guide("tonal", DummyGuide) as shadow:
            assert registry.load_guide_class("tonal") is shadow
            assert shadow.name == "tonal" and issubclass(shadow, DummyGuide)
    assert "dummy" not in registry.names()
    assert registry.load_guide_class("tonal") is original


def test_register_refuses_non_guides():
    with pytest.raises(TypeError, match="not a Guide subclass"):
        registry.register("x", dict)  # type: ignore[arg-type]
    assert "x" not in registry.names()


def test_class_name_must_match_entry_point_name():
    entry = registry.GuideEntry("other", "some-dist", None, "mod:Cls")
    with pytest.raises(GuideLoadError, match="declares name 'dummy-mask', not 'other'"):
        registry._check_class(entry, DummyMaskGuide)
    assert registry._check_class(registry.GuideEntry("dummy", "d", None, "m:C"), DummyGuide) is DummyGuide
