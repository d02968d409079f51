"""Test helpers for editkit and for plugin authors.

* :class:`DummyGuide` / :class:`DummyMaskGuide`: seeded, deterministic, weight-free guides;
* :func:`register_guide`: register a guide class in this process for the duration of a ``with``;
* :class:`GuideContract`: a pytest mixin with the tests every guide must pass. A plugin's own test
  module uses it as ``class TestMyGuide(GuideContract): name_under_test = "mine"``; editkit's
  ``tests/test_guide_contract.py`` applies it to every discovered guide.

A guide class may define two classmethod hooks to keep its contract cheap and complete:
``contract_options() -> dict`` (e.g. tiny weights, 2 steps) and ``contract_request(image) -> dict``
(``EditRequest`` fields to override, e.g. ``{"inputs": {"audio1": ...}}``). A centred box mask
is supplied automatically to guides that declare ``needs = {"mask"}``.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, ClassVar, Iterator, Literal

import pytest
from pydantic import Field

from . import api, registry
from .config import GuideConfig
from .errors import EditkitError, GuideConfigError, InvalidInputError, MissingInputError
from .guide import Guide
from .types import EditRequest, EditResult

CONTRACT_SIZE = (37, 29)  # width, height: deliberately not a multiple of 8
CONTRACT_INSTRUCTION = "make it brighter"


# ------------------------------------------------------------------------------------ dummy guides
class DummyConfig(GuideConfig):
    shift: float = Field(0.2, ge=-1.0, le=1.0, description="Added to the chosen channel (image in [0, 1]).")
    noise: float = Field(0.05, ge=0.0, le=0.5, description="Std of seeded Gaussian noise added to every pixel.")
    channel: Literal["red", "green", "blue", "all"] = Field("blue", description="Channel the shift applies to.")


class DummyGuide(Guide):
    """Shifts one colour channel and adds seeded noise: deterministic per seed, no weights, no torch."""

    name = "dummy"
    Config = DummyConfig
    load_calls: ClassVar[int] = 0

    def load(self, backends: Any) -> None:
        type(self).load_calls += 1

    def prepare(self, request: EditRequest) -> dict[str, Any]:  # type: ignore[override]
        cfg = self.config
        channels = {"red": [0], "green": [1], "blue": [2], "all": [0, 1, 2]}[cfg.channel]  # type: ignore[attr-defined]
        return {"channels": channels, "shift": cfg.shift, "noise": cfg.noise}  # type: ignore[attr-defined]

    def edit(self, request: EditRequest) -> EditResult:
        import numpy as np
        from PIL import Image

        self.check_inputs(request)
        t0 = time.perf_counter()
        plan = self.prepare(request)
        outputs = []
        for i, (img, seed) in enumerate(zip(request.images, request.seeds())):
            arr = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
            new = arr.copy()
            new[..., plan["channels"]] += plan["shift"]
            new += np.random.default_rng(seed).standard_normal(arr.shape) * plan["noise"]
            if request.masks is not None:
                m = np.asarray(request.masks[i], dtype=np.float64)[..., None] / 255.0
                new = m * new + (1.0 - m) * arr
            outputs.append(Image.fromarray(np.rint(np.clip(new, 0.0, 1.0) * 255.0).astype(np.uint8)))
        return EditResult(
            images=outputs,
            guide=self.name,
            config=self.config.model_dump(),
            seed=request.seed,
            text=[f"dummy edit: {t}" for t in request.instructions],
            timings={"edit": time.perf_counter() - t0},
        )


class DummyMaskGuide(DummyGuide):
    """:class:`DummyGuide` that needs a mask and edits only inside it."""

    name = "dummy-mask"
    needs = frozenset({"mask"})


@contextlib.contextmanager
def register_guide(name: str, cls: type[Guide] = DummyGuide) -> Iterator[type[Guide]]:
    """Register ``cls`` as guide ``name`` in this process while the block runs (then restore)."""
    previous = registry._registered.get(name)
    registry.register(name, cls)
    api.clear_cache(name)
    try:
        yield registry.load_guide_class(name)
    finally:
        registry.unregister(name)
        api.clear_cache(name)
        if previous is not None:
            registry._registered[name] = previous


# --------------------------------------------------------------------------------------- contract
def contract_image(size: tuple[int, int] = CONTRACT_SIZE):
    """A deterministic colour gradient of ``size`` (width, height)."""
    import numpy as np
    from PIL import Image

    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(arr.astype(np.uint8))


def centre_mask(size: tuple[int, int]):
    from PIL import Image

    w, h = size
    mask = Image.new("L", size, 0)
    mask.paste(255, (w // 4, h // 4, max(w * 3 // 4, w // 4 + 1), max(h * 3 // 4, h // 4 + 1)))
    return mask


def contract_request(cls: type[Guide], *, seed: int = 0, size: tuple[int, int] = CONTRACT_SIZE) -> EditRequest:
    """A small request satisfying ``cls.needs``, adjusted by the class's ``contract_request`` hook."""
    image = contract_image(size)
    fields: dict[str, Any] = {"images": [image], "instructions": [CONTRACT_INSTRUCTION], "masks": None, "inputs": {}}
    if "mask" in cls.needs:
        fields["masks"] = [centre_mask(size)]
    hook = getattr(cls, "contract_request", None)
    if callable(hook):
        fields.update(hook(image))
    return EditRequest(seed=seed, **fields)


_TEMPORARY_WEIGHTS: dict[str, str] = {}


def temporary_weights(key: str, build: Any) -> str:
    """A weights folder made by ``build(folder)`` once per process under ``key`` and deleted at exit: for a
    guide's ``contract_options`` while its tiny weights are not committed (plumbing only, never a demo)."""
    if key not in _TEMPORARY_WEIGHTS:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix=f"editkit-{key}-")
        atexit.register(shutil.rmtree, folder, True)
        _TEMPORARY_WEIGHTS[key] = str(build(folder))
    return _TEMPORARY_WEIGHTS[key]


def contract_options(cls: type[Guide]) -> dict[str, Any]:
    hook = getattr(cls, "contract_options", None)
    return dict(hook()) if callable(hook) else {}


class GuideContract:
    """Tests every guide must pass. Set ``name_under_test`` or override the ``guide_name`` fixture."""

    name_under_test: ClassVar[str] = ""

    @pytest.fixture
    def guide_name(self) -> str:
        if not self.name_under_test:
            pytest.fail("set name_under_test or override the guide_name fixture", pytrace=False)
        return self.name_under_test

    @pytest.fixture
    def guide_cls(self, guide_name: str) -> type[Guide]:
        try:
            return registry.load_guide_class(guide_name)
        except EditkitError as exc:
            pytest.fail(f"guide '{guide_name}' cannot be loaded: {exc}", pytrace=False)

    @pytest.fixture
    def options(self, guide_cls: type[Guide]) -> dict[str, Any]:
        return contract_options(guide_cls)

    @pytest.fixture
    def guide(self, guide_name: str, options: dict[str, Any]) -> Guide:
        try:
            return api.load_guide(guide_name, **options)
        except EditkitError as exc:
            pytest.fail(f"guide '{guide_name}' cannot be loaded: {exc}", pytrace=False)

    # ---------------------------------------------------------------- configuration
    def test_config_is_strict_and_documented(self, guide_cls: type[Guide]) -> None:
        assert issubclass(guide_cls.Config, GuideConfig)
        assert guide_cls.Config.model_config.get("extra") == "forbid"
        undocumented = [n for n, f in guide_cls.Config.model_fields.items() if not f.description]
        assert not undocumented, f"options without a description: {undocumented}"

    def test_config_round_trip(self, guide_cls: type[Guide], options: dict[str, Any]) -> None:
        cfg = guide_cls.validate(options)
        assert guide_cls.Config.model_validate(cfg.model_dump()) == cfg
        assert guide_cls.Config.model_validate_json(cfg.model_dump_json()) == cfg
        assert guide_cls.validate(cfg.model_dump()) == cfg

    def test_unknown_option_rejected(self, guide_cls: type[Guide], options: dict[str, Any]) -> None:
        with pytest.raises(GuideConfigError) as info:
            guide_cls.validate({**options, "no_such_option_xyz": 1})
        assert guide_cls.name in str(info.value) and "no_such_option_xyz" in str(info.value)

    def test_nan_rejected(self, guide_cls: type[Guide], options: dict[str, Any]) -> None:
        floats = [n for n, f in guide_cls.Config.model_fields.items() if f.annotation is float]
        if not floats:
            pytest.skip("no float options")
        for name in floats:
            with pytest.raises(GuideConfigError, match=name):
                guide_cls.validate({**options, name: math.nan})

    # ---------------------------------------------------------------- behaviour
    def test_output_size_and_result(self, guide: Guide, guide_cls: type[Guide]) -> None:
        request = contract_request(guide_cls)
        result = guide.edit(request)
        assert isinstance(result, EditResult)
        assert len(result.images) == 1
        assert result.images[0].size == CONTRACT_SIZE
        assert result.images[0].mode == "RGB"
        assert result.guide == guide_cls.name
        # the config as it ran: unset steps / an 'auto' sampler resolved from the weights' recommendation
        assert result.config == guide.effective_config(guide.sampling_options())
        assert result.seed == 0

    def test_deterministic(self, guide: Guide, guide_cls: type[Guide]) -> None:
        first = guide.edit(contract_request(guide_cls, seed=3)).images[0].tobytes()
        second = guide.edit(contract_request(guide_cls, seed=3)).images[0].tobytes()
        assert first == second, "same seed, same request: outputs differ"

    def test_declared_needs_enforced(self, request: Any, guide_cls: type[Guide]) -> None:
        if not guide_cls.needs:
            pytest.skip("declares no needs")
        guide: Guide = request.getfixturevalue("guide")
        for need in sorted(guide_cls.needs):
            request = contract_request(guide_cls)
            if need == "mask":
                request.masks = None
            else:
                request.inputs.pop(need, None)
            with pytest.raises(MissingInputError, match=need):
                guide.edit(request)

    def test_blank_instruction_rejected(self, guide: Guide, guide_cls: type[Guide]) -> None:
        request = contract_request(guide_cls)
        request.instructions = ["   "]
        with pytest.raises(InvalidInputError):
            guide.edit(request)
