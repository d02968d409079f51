"""The Guide contract: what a plugin implements to turn an edit request into backend conditioning."""
from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Any, ClassVar

from .config import GuideConfig, validate_config
from .errors import InvalidInputError, MissingInputError
from .types import Candidate, Conditioning, EditRequest, EditResult, StepState

#: Sampling steps of a diffusion guide whose config and weights name none.
DEFAULT_STEPS = 20
#: The options of :meth:`Guide.sampling_options` that a weights folder may recommend and a result records.
SAMPLING_KEYS = ("steps", "scheduler")

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .backend import BackendCache, LatentDiffusionBackend


class Guide(abc.ABC):
    """Base class of every guide.

    Life cycle: ``Guide(config)`` (cheap, validated) -> ``load(backends)`` (weights, heavy imports)
    -> ``edit(request)`` any number of times. ``edit`` checks the declared inputs, calls
    ``prepare`` for the conditioning (including the guide's own null conditioning), runs the shared
    backend with this guide's hooks, and packs an :class:`EditResult`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[GuideConfig]] = GuideConfig
    #: Inputs the guide cannot work without: "mask" or names of extra inputs such as "audio1".
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Extra inputs the guide understands but does not require (shown by ``editkit guides``).
    accepts: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: GuideConfig | None = None, **options: Any) -> None:
        if config is None:
            config = self.validate(options)
        elif options:
            config = self.validate({**config.model_dump(), **options})
        self.config = config
        self.backend: "LatentDiffusionBackend | None" = None

    # ----------------------------------------------------------------- configuration
    @classmethod
    def validate(cls, options: dict[str, Any]) -> GuideConfig:
        return validate_config(cls.name, cls.Config, options)  # type: ignore[return-value]

    # ----------------------------------------------------------------- life cycle
    def load(self, backends: "BackendCache") -> None:
        """Load weights. Guides sharing the same diffusion weights get the same backend object."""

    #: Architecture sizes :meth:`load_random` can build (e.g. "test", "sd15"); empty: not supported.
    random_sizes: ClassVar[tuple[str, ...]] = ()

    def load_random(self, backends: "BackendCache", size: str) -> None:
        """Load random weights of a named architecture instead of a checkpoint: for benchmarks (latency does
        not depend on weight values) and plumbing tests, never for an edit anyone looks at."""
        raise NotImplementedError(f"guide '{self.name}' cannot build random-weight architectures")

    @property
    def loaded(self) -> bool:
        return self.backend is not None

    def check_inputs(self, request: EditRequest) -> None:
        """Enforce ``needs``: raise :class:`MissingInputError` naming what is missing."""
        for need in sorted(self.needs):
            if need == "mask":
                if request.masks is None:
                    raise MissingInputError(f"guide '{self.name}' needs a mask (--mask FILE or x0,y0,x1,y1)")
                for mask in request.masks:
                    if mask.getbbox() is None:
                        raise InvalidInputError(f"guide '{self.name}': the mask is empty (no editable pixel)")
            elif need not in request.inputs:
                raise MissingInputError(f"guide '{self.name}' needs input '{need}' (--input {need}=PATH)")
        for instruction in request.instructions:
            if not instruction or not instruction.strip():
                raise InvalidInputError(f"guide '{self.name}': the instruction is empty")

    @abc.abstractmethod
    def prepare(self, request: EditRequest) -> Conditioning:
        """Return the conditioning for the backend, including the null branch."""

    # ----------------------------------------------------------------- optional hooks
    def on_step(self, state: StepState) -> "torch.Tensor | None":
        """Called after every scheduler step when a guide overrides it; may return replacement latents."""
        return None

    def guidance_loss(self, pred_x0: "torch.Tensor", state: StepState) -> "torch.Tensor | None":
        """Optional loss on the predicted x0 latents whose gradient steers sampling (e.g. CLIP guidance)."""
        return None

    def num_candidates(self) -> int:
        """Samples per request image (the config's ``candidates`` option when it has one)."""
        return int(getattr(self.config, "candidates", 1) or 1)

    def postprocess(self, images: list[Any], request: EditRequest) -> list[Any]:
        """Change the decoded images before ranking (e.g. paste the unedited pixels back). ``request`` is
        aligned with ``images`` (each sample repeated once per candidate)."""
        return images

    def rank(self, images: list[Any], request: EditRequest) -> list[float] | None:
        """Optional candidate scores, higher is better; ``request`` is aligned with ``images`` as in
        :meth:`postprocess`. ``None`` keeps the sampling order."""
        return None

    def text_output(self, request: EditRequest) -> list[str | None]:
        """The guide's text output (e.g. MGIE's expressive instruction)."""
        return [None] * request.batch_size

    def hooks_used(self) -> dict[str, bool]:
        cls = type(self)
        return {
            "on_step": cls.on_step is not Guide.on_step,
            "guidance_loss": cls.guidance_loss is not Guide.guidance_loss,
        }

    # ----------------------------------------------------------------- the edit
    def speed_options(self):
        """The backend fast paths the config asks for (``DiffusionGuideConfig``), or None (backend as it is)."""
        get = getattr(self.config, "speed_options", None)
        return get() if callable(get) else None

    def guidance_scale(self, name: str, reference: float) -> float:
        """The config's guidance scale ``name``, or when it is None the weights' recommendation
        (``editkit_sampling.json``), else the method's ``reference`` value."""
        value = getattr(self.config, name, None)
        if value is not None:
            return float(value)
        return float(self.recommended(name, reference))

    def recommended(self, name: str, default: Any) -> Any:
        """The loaded weights' recommended sampling setting ``name`` for this guide (its own entry first), else
        ``default``."""
        return self.backend.recommended(name, default, self.name) if self.backend is not None else default

    def dual_guidance_scales(self) -> dict[str, float]:
        """``text_scale`` and ``image_scale`` for a :class:`Conditioning` of a config with
        :class:`editkit.config.DualGuidanceConfig`: each set, recommended by the weights, or the reference."""
        from .config import DualGuidanceConfig

        return {name: self.guidance_scale(name, ref) for name, ref in DualGuidanceConfig.REFERENCE.items()}

    def sampling_options(self) -> dict[str, Any]:
        """Backend sampling options taken from the config (steps, scheduler); guides may override.

        ``steps`` None and ``scheduler`` 'auto' take the weights' recommendation (``editkit_sampling.json``)
        when it names one; otherwise 20 steps and the checkpoint's own scheduler."""
        cfg = self.config
        steps = getattr(cfg, "steps", None)
        scheduler = getattr(cfg, "scheduler", "ddim")
        if steps is None:
            steps = int(self.recommended("steps", DEFAULT_STEPS))
        if scheduler == "auto":
            scheduler = self.recommended("scheduler", "auto")
        return {"steps": steps, "scheduler": scheduler, "progress": cfg.progress}

    def effective_config(self, sampling: dict[str, Any]) -> dict[str, Any]:
        """The config as it ran: unset steps and an 'auto' sampler replaced by what the weights recommended."""
        config = self.config.model_dump()
        config.update({k: v for k, v in sampling.items() if k in SAMPLING_KEYS and k in config})
        return config

    def edit(self, request: EditRequest) -> EditResult:
        if self.backend is None:
            raise RuntimeError(f"guide '{self.name}' is not loaded; call load() first")
        self.check_inputs(request)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cond = self.prepare(request)
        timings["prepare"] = time.perf_counter() - t0
        k = self.num_candidates()
        sampling = self.sampling_options()
        images = self.backend.generate(cond, request, hooks=self, timings=timings, num_candidates=k,
                                       speed=self.speed_options(), **sampling)
        aligned = request.repeat(k)
        t0 = time.perf_counter()
        images = self.postprocess(images, aligned)
        scores = self.rank(images, aligned)
        candidates = None
        if k > 1 or scores is not None:
            candidates = _group_candidates(images, scores, k)
            images = [group[0].image for group in candidates]
        timings["rank"] = time.perf_counter() - t0
        return EditResult(
            images=images,
            guide=self.name,
            config=self.effective_config(sampling),
            seed=request.seed,
            text=self.text_output(request),
            timings=timings,
            candidates=candidates,
        )


def _group_candidates(images: list[Any], scores: list[float] | None, k: int) -> list[list[Candidate]]:
    """K candidates per request image, best first (stable: equal scores keep the sampling order)."""
    if scores is not None and len(scores) != len(images):
        raise RuntimeError(f"rank() returned {len(scores)} scores for {len(images)} images")
    values = [float("nan")] * len(images) if scores is None else [float(v) for v in scores]
    groups = []
    for i in range(0, len(images), k):
        group = [Candidate(img, v) for img, v in zip(images[i:i + k], values[i:i + k])]
        if scores is not None:
            group.sort(key=lambda c: -c.score)
        groups.append(group)
    return groups
