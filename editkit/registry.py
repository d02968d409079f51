"""Guide discovery through the ``editkit.guides`` entry-point group.

Listing reads ``entry_points.txt`` files only (via the ``entrypoints`` package), so it costs
milliseconds and imports no plugin. A guide's module is imported by :func:`load_guide_class`, i.e.
when the guide is used. A plugin that fails to import is recorded in :func:`failures` and reported
by ``editkit guides`` while every other guide keeps working. Two entry points with the same name from
different distributions make that name unusable (:class:`DuplicateGuideError` names both).

``EDITKIT_PLUGIN_PATH`` (``os.pathsep``-separated folders) adds folders that are searched for
``*.dist-info`` / ``*.egg-info`` before ``sys.path``; a guide found there is imported with its folder
put on ``sys.path``. Tests use it for fixture plugins, and :func:`register` / :func:`unregister`
for throwaway in-process guides.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import EditkitError, GuideLoadError, UnknownGuideError

if TYPE_CHECKING:  # pragma: no cover
    from .guide import Guide

GROUP = "editkit.guides"
PLUGIN_PATH_ENV = "EDITKIT_PLUGIN_PATH"
IN_PROCESS = "<in-process>"


class DuplicateGuideError(EditkitError):
    """Two distributions register a guide under the same name."""


def canonical_distribution(name: str | None) -> str:
    """``Editkit_Example_Guide`` -> ``editkit-example-guide`` (PEP 503 style, as pip shows it)."""
    if not name:
        return "<unknown>"
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class GuideEntry:
    """One registered guide, known without importing it."""

    name: str
    distribution: str
    version: str | None
    value: str  # "module:object", or the class's qualified name for in-process registrations
    entry_point: Any = None  # entrypoints.EntryPoint, None for in-process registrations
    folder: str | None = None  # EDITKIT_PLUGIN_PATH folder the entry was found in
    cls: Any = None  # set for in-process registrations


@dataclass(frozen=True)
class PluginFailure:
    """A guide that could not be made usable: import error, wrong object, or a name clash."""

    name: str
    distribution: str
    error: str


_lock = threading.RLock()
_registered: dict[str, GuideEntry] = {}
_classes: dict[tuple[str, str], type] = {}  # (name, value) -> loaded class
_failures: dict[str, PluginFailure] = {}
_discovery_cache: tuple[Any, dict[str, list[GuideEntry]]] | None = None


def plugin_path() -> list[str]:
    raw = os.environ.get(PLUGIN_PATH_ENV, "")
    return [p for p in raw.split(os.pathsep) if p.strip()]


def _scan() -> dict[str, list[GuideEntry]]:
    """All entry points of the group, grouped by name; same-distribution repeats are merged."""
    import entrypoints

    found: dict[str, list[GuideEntry]] = {}
    sources: list[tuple[list[str], str | None]] = [([folder], folder) for folder in plugin_path()]
    sources.append((list(sys.path), None))
    for path, folder in sources:
        for ep in entrypoints.get_group_all(GROUP, path=path):
            distro = getattr(ep, "distro", None)
            entry = GuideEntry(
                name=ep.name,
                distribution=canonical_distribution(getattr(distro, "name", None)),
                version=getattr(distro, "version", None),
                value=f"{ep.module_name}:{ep.object_name}" if ep.object_name else ep.module_name,
                entry_point=ep,
                folder=folder,
            )
            same = found.setdefault(ep.name, [])
            if any(e.distribution == entry.distribution and e.value == entry.value for e in same):
                continue  # e.g. an editable install seen through both egg-info and dist-info
            same.append(entry)
    return found


def _discover() -> dict[str, list[GuideEntry]]:
    global _discovery_cache
    key = (tuple(sys.path), os.environ.get(PLUGIN_PATH_ENV, ""))
    with _lock:
        if _discovery_cache is None or _discovery_cache[0] != key:
            _discovery_cache = (key, _scan())
        return _discovery_cache[1]


def refresh() -> None:
    """Forget discovered entry points and loaded classes (after installing a plugin at run time)."""
    global _discovery_cache
    with _lock:
        _discovery_cache = None
        _classes.clear()
        _failures.clear()


def entries() -> dict[str, list[GuideEntry]]:
    """Every guide name with the entries providing it (more than one entry means a name clash).

    In-process registrations shadow entry points of the same name.
    """
    with _lock:
        merged = {name: list(found) for name, found in _discover().items()}
        for name, entry in _registered.items():
            merged[name] = [entry]
        return dict(sorted(merged.items()))


def names() -> list[str]:
    """Sorted guide names; imports no plugin."""
    return list(entries())


def get_entry(name: str) -> GuideEntry:
    """The single entry of ``name``; :class:`UnknownGuideError` or :class:`DuplicateGuideError`."""
    all_entries = entries()
    found = all_entries.get(name)
    if not found:
        raise UnknownGuideError(name, list(all_entries))
    if len(found) > 1:
        dists = " and ".join(f"'{e.distribution}' ({e.value})" for e in found)
        error = f"guide '{name}' is registered by more than one distribution: {dists}; uninstall one of them"
        with _lock:
            _failures[name] = PluginFailure(name, ", ".join(e.distribution for e in found), error)
        raise DuplicateGuideError(error)
    return found[0]


def _check_class(entry: GuideEntry, obj: Any) -> type:
    from .guide import Guide

    where = f"guide '{entry.name}' ({entry.value} from '{entry.distribution}')"
    if not (isinstance(obj, type) and issubclass(obj, Guide)):
        raise GuideLoadError(f"{where} is not a subclass of editkit.Guide (got {type(obj).__name__})")
    if obj.name != entry.name:
        raise GuideLoadError(f"{where} declares name '{obj.name}', not '{entry.name}'")
    if not isinstance(obj.needs, (set, frozenset)) or not isinstance(obj.accepts, (set, frozenset)):
        raise GuideLoadError(f"{where}: 'needs' and 'accepts' must be frozensets of input names")
    return obj


def load_guide_class(name: str) -> "type[Guide]":
    """Import the plugin of ``name`` (only now) and return its :class:`~editkit.guide.Guide` subclass.

    Raises :class:`UnknownGuideError`, :class:`DuplicateGuideError` or :class:`GuideLoadError`; the
    failure is also recorded for :func:`failures`.
    """
    entry = get_entry(name)
    if entry.cls is not None:
        return entry.cls
    key = (entry.name, entry.value)
    with _lock:
        if key in _classes:
            return _classes[key]  # type: ignore[return-value]
        try:
            if entry.folder and entry.folder not in sys.path:
                sys.path.append(entry.folder)  # appended: a plugin folder never shadows installed modules
            obj = entry.entry_point.load()
            cls = _check_class(entry, obj)
        except GuideLoadError as exc:
            _failures[name] = PluginFailure(name, entry.distribution, str(exc))
            raise
        except Exception as exc:  # ImportError, SyntaxError, AttributeError, errors raised by plugin code
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            error = f"guide '{name}' ({entry.value} from '{entry.distribution}') failed to import: {detail}"
            _failures[name] = PluginFailure(name, entry.distribution, error)
            raise GuideLoadError(error) from exc
        _failures.pop(name, None)
        _classes[key] = cls
        return cls


def failures() -> list[PluginFailure]:
    """Guides whose loading failed so far in this process (see :func:`check_all`)."""
    with _lock:
        return sorted(_failures.values(), key=lambda f: f.name)


def check_all() -> list[PluginFailure]:
    """Try to import every registered guide (no weights); return the failures, keep the rest usable."""
    for name in names():
        try:
            load_guide_class(name)
        except EditkitError:
            pass
    return failures()


def register(name: str, cls: "type[Guide]") -> None:
    """Register a guide class in this process only (tests). Shadows an entry point of the same name."""
    from .guide import Guide

    if not (isinstance(cls, type) and issubclass(cls, Guide)):
        raise TypeError(f"register({name!r}, ...): {cls!r} is not a Guide subclass")
    if cls.name != name:
        cls = type(cls.__name__, (cls,), {"name": name, "__module__": cls.__module__, "__doc__": cls.__doc__})
    with _lock:
        _registered[name] = GuideEntry(name, IN_PROCESS, None, f"{cls.__module__}:{cls.__qualname__}", cls=cls)
        _failures.pop(name, None)


def unregister(name: str) -> None:
    with _lock:
        _registered.pop(name, None)
        _failures.pop(name, None)
