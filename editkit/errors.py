"""Error types of editkit. Every user-facing failure is one of these, with a one-line message."""
from __future__ import annotations

import difflib


class EditkitError(Exception):
    """Base class: a problem the user can fix. The CLI prints it as one line and exits with 2."""


class UnknownGuideError(EditkitError, KeyError):
    """No guide of that name is registered in the ``editkit.guides`` entry-point group."""

    def __init__(self, name: str, available: list[str]):
        self.name = name
        self.available = sorted(available)
        close = difflib.get_close_matches(name, self.available, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = ", ".join(self.available) or "none installed"
        super().__init__(f"Unknown guide '{name}'.{hint} Available: {listing}.")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class GuideConfigError(EditkitError, ValueError):
    """An option of a guide is unknown or invalid; the message names the guide and the option."""

    def __init__(self, guide: str, option: str, problem: str):
        self.guide, self.option, self.problem = guide, option, problem
        super().__init__(f"guide '{guide}': option '{option}': {problem}")


class GuideLoadError(EditkitError):
    """A guide's plugin could not be imported or its weights could not be loaded."""


class GuideError(EditkitError):
    """A guide failed while editing in a way the user should hear about (e.g. malformed model output)."""


class MissingInputError(EditkitError, ValueError):
    """A guide needs an input (mask, reference image, audio) that the request does not carry."""


class InvalidInputError(EditkitError, ValueError):
    """An input exists but cannot be used: unreadable image, wrong mask size, empty instruction..."""


class UnsafeCheckpointError(EditkitError):
    """A checkpoint would need unpickling arbitrary objects; editkit refuses to load it."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty): what a
    one-line error repeats from a library's multi-line one."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
