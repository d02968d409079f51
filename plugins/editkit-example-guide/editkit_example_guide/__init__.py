"""``tonal``: an example third-party editkit guide doing classical global tone and colour edits.

It understands instructions about brightness, contrast, colour temperature and saturation
("make it brighter", "increase the contrast", "make it warmer", "black and white") and refuses
everything else with a clear :class:`~editkit.errors.GuideError`. No diffusion model and no weights
are involved, so it overrides :meth:`Guide.edit`; its output does not depend on the seed.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from editkit.config import GuideConfig
from editkit.errors import GuideError
from editkit.guide import Guide
from editkit.types import EditRequest, EditResult

__all__ = ["TonalGuide", "TonalConfig", "Adjustment", "parse_instruction"]

# (kind, direction, pattern). Word boundaries keep "desaturate" from matching "saturate".
_RULES: list[tuple[str, int, str]] = [
    ("brightness", +1, r"\b(brighter|brighten\w*|lighter|lighten\w*|more light|(increase|raise|boost|more)( the)? (brightness|exposure)|overexpose\w*)\b"),
    ("brightness", -1, r"\b(darker|darken\w*|dimmer|dim it|less bright|(decrease|reduce|lower|less)( the)? (brightness|exposure)|underexpose\w*)\b"),
    ("contrast", +1, r"\b((increase|increased|raise|boost|more|higher|stronger|add)( the)? contrast|punchier|contrastier)\b"),
    ("contrast", -1, r"\b((decrease|decreased|reduce|lower|less|softer|weaker)( the)? contrast|flatter)\b"),
    ("warmth", +1, r"\b(warmer|warm (it )?up|more warm\w*|warm tones?|(more|add) (orange|yellow) tint)\b"),
    ("warmth", -1, r"\b(cooler|colder|cool (it )?down|cool tones?|(more|add) blue tint)\b"),
    ("saturation", +1, r"\b(more saturat\w*|saturate|more colou?rful|vivid|vibrant|(increase|boost|raise)( the)? saturation)\b"),
    ("saturation", -1, r"\b(desaturat\w*|less saturat\w*|less colou?rful|muted|washed out|(decrease|reduce|lower)( the)? saturation)\b"),
    ("monochrome", -1, r"(\bblack (and|&) white\b|\bb&w\b|\bgr[ae]yscale\b|\bmonochrome\b|\bgr[ae]y ?tones?\b)"),
]
_NEGATION = re.compile(r"\b(not|don'?t|do not|never|no longer)\b")


class TonalConfig(GuideConfig):
    strength: float = Field(0.3, ge=0.0, le=1.0, description="How strong each adjustment is: 0 = no change, 1 = maximal.")
    preserve_luminance: bool = Field(
        True, description="Keep each pixel's luminance when changing warmth (only the colour balance moves)."
    )


@dataclass(frozen=True)
class Adjustment:
    kind: str  # brightness | contrast | warmth | saturation | monochrome
    direction: int  # +1 or -1

    def describe(self, strength: float) -> str:
        if self.kind == "monochrome":
            return "black and white"
        return f"{self.kind} {'+' if self.direction > 0 else '-'}{strength:.2f}"


def parse_instruction(instruction: str) -> list[Adjustment]:
    """The adjustments named by ``instruction``; :class:`GuideError` when there are none or they clash."""
    text = " ".join(instruction.lower().replace("’", "'").split())
    if _NEGATION.search(text):
        raise GuideError(f"guide 'tonal' cannot follow negated instructions such as {instruction!r}; say what to do")
    found: dict[str, Adjustment] = {}
    for kind, direction, pattern in _RULES:
        if re.search(pattern, text):
            if kind in found and found[kind].direction != direction:
                raise GuideError(f"guide 'tonal': {instruction!r} asks for both more and less {kind}")
            found[kind] = Adjustment(kind, direction)
    if "monochrome" in found:
        found.pop("saturation", None)
    if not found:
        raise GuideError(
            f"guide 'tonal' does not understand {instruction!r}: it only makes global brightness, contrast, "
            "warmth and saturation changes (e.g. 'make it brighter', 'increase contrast', 'make it warmer', "
            "'black and white')"
        )
    return list(found.values())


def _apply(arr: Any, adjustments: list[Adjustment], cfg: TonalConfig) -> Any:
    import numpy as np

    s = cfg.strength
    weights = np.array([0.299, 0.587, 0.114])
    for adj in adjustments:
        d = adj.direction
        if adj.kind == "brightness":  # gamma: black and white stay, mid-tones move
            arr = arr ** (2.0 ** (-d * s * 1.5))
        elif adj.kind == "contrast":  # stretch around the mean luminance
            mean = float((arr @ weights).mean())
            arr = mean + (arr - mean) * (1.0 + 1.5 * s) ** d
        elif adj.kind == "warmth":
            lum = arr @ weights
            arr = arr * np.array([1.0 + 0.25 * s * d, 1.0, 1.0 - 0.25 * s * d])
            if cfg.preserve_luminance:
                new_lum = arr @ weights
                arr = arr * (lum / np.maximum(new_lum, 1e-6))[..., None]
        elif adj.kind in ("saturation", "monochrome"):
            factor = 0.0 if adj.kind == "monochrome" else (1.0 + 1.5 * s) ** d
            lum = (arr @ weights)[..., None]
            arr = lum + (arr - lum) * factor
        arr = np.clip(arr, 0.0, 1.0)
    return arr


class TonalGuide(Guide):
    """Classical global brightness / contrast / warmth / saturation edits parsed from the instruction."""

    name = "tonal"
    Config = TonalConfig
    accepts = frozenset({"mask"})  # with a mask, only the masked region changes

    def load(self, backends: Any) -> None:
        """Nothing to load: this guide uses no model."""

    @property
    def loaded(self) -> bool:
        return True

    def prepare(self, request: EditRequest) -> list[list[Adjustment]]:  # type: ignore[override]
        return [parse_instruction(text) for text in request.instructions]

    def edit(self, request: EditRequest) -> EditResult:
        import numpy as np
        from PIL import Image

        self.check_inputs(request)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        plans = self.prepare(request)
        timings["prepare"] = time.perf_counter() - t0
        outputs = []
        for i, (img, plan) in enumerate(zip(request.images, plans)):
            src = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
            out = _apply(src, plan, self.config)  # type: ignore[arg-type]
            if request.masks is not None:
                m = np.asarray(request.masks[i], dtype=np.float64)[..., None] / 255.0
                out = m * out + (1.0 - m) * src
            outputs.append(Image.fromarray(np.rint(out * 255.0).astype(np.uint8)))
        timings["edit"] = time.perf_counter() - t0 - timings["prepare"]
        strength = self.config.strength  # type: ignore[attr-defined]
        return EditResult(
            images=outputs,
            guide=self.name,
            config=self.config.model_dump(),
            seed=request.seed,
            text=[", ".join(a.describe(strength) for a in plan) for plan in plans],
            timings=timings,
        )
