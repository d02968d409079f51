"""The EditWorld sample generator: scenes, edits, instructions, rewrites, targets and masks.

See the package docstring (``editkit.editworld``) for the public API and ``docs/editworld.md``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from .audio import object_sound
from .edit_types import FAMILY_OF, GLOBAL_ACTIONS, REFERRING_ACTIONS, resolve_types, selection_tag
from .language import (
    CAPTION_PREFIX,
    T_ADD,
    T_BACKGROUND,
    T_GLOBAL,
    T_GROW,
    T_MM_ADD,
    T_MM_REMOVE,
    T_MM_REPLACE,
    T_MM_REPLACE_PAIR,
    T_MOVE,
    T_ODD,
    T_RECOLOUR,
    T_REMOVE,
    T_REPLACE,
    T_SHRINK,
    T_SPATIAL,
    T_SUPERLATIVE,
    T_UNIQUE,
    rewrite_for,
)
from .render import (
    adjust,
    check_size,
    obj_masks,
    objects_alpha,
    render_cutout,
    render_float,
    to_uint8,
)
from .world import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    BACKGROUND_STYLES,
    BACKGROUND_VARIANTS,
    KINDS,
    POSITION_PHRASE,
    POSITIONS,
    SIZES,
    SPLITS,
    Background,
    Obj,
    Scene,
    describe,
    split_of,
)

MIN_REGION_CHANGE = 24.0
"""Background and global edits are only generated when the source differs from the target by at least
this mean absolute error (0-255 levels) over the edited region, i.e. twice the success tolerance
``REGION_MAE_TOLERANCE`` of :mod:`editkit.eval.editworld_metrics`, so the unedited input always fails."""


# --------------------------------------------------------------------------- samples
@dataclass(eq=False)
class Sample:
    """One EditWorld sample. Images are numpy arrays: ``source``/``target`` (H, W, 3) uint8, ``mask`` (H, W) bool.

    ``id`` is ``"<split>-<seed>-<selection>[-<size>px]-<index>"`` (e.g. ``test-0-explicit-000012``), unique
    across splits, seeds, type selections and sizes.

    ``mask`` marks the pixels the edit is meant to change: for object edits the union of the old and new
    object footprints (any coverage, dilated by 1 px); for ``background`` every pixel where the
    background shows (not fully covered by an object); for ``brightness``/``contrast`` the whole image.
    ``edit`` is the structured spec: ``action``, ``object`` (the source object acted on, or None),
    ``result`` (the resulting object, or None), ``reference`` (the phrase of the instruction that
    names ``object``), and ``background``/``direction`` where they apply.
    ``inputs`` holds the multimodal extra inputs: ``image1`` (H, W, 3) uint8 cut-out or ``audio1``
    float32 16 kHz mono.
    """

    id: str
    split: str
    source: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    instruction: str
    rewrite: str
    edit_type: str
    family: str
    source_caption: str
    target_caption: str
    scene: Scene
    target_scene: Scene
    edit: dict[str, Any]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return self.edit["action"]

    @property
    def size(self) -> int:
        return int(self.source.shape[0])

    @property
    def captions(self) -> dict[str, str]:
        return {"source": self.source_caption, "target": self.target_caption}


@dataclass
class _Edit:
    scene: Scene
    target_scene: Scene
    action: str
    instruction: str
    rewrite: str
    obj: Obj | None = None
    result: Obj | None = None
    extra: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    target: np.ndarray | None = None  # set by global/background builders that rendered it already
    mask: np.ndarray | None = None


class _Retry(Exception):
    """The sampled scene does not support the requested edit; sample another."""


class _Generator:
    def __init__(self, split: str, seed: int, types: tuple[str, ...], size: int):
        self.split, self.seed, self.types, self.size = split, seed, types, size
        # the type selection is part of the seed so that e.g. the explicit and referring test sets of
        # one seed do not start from the same scenes
        self.rng = random.Random(f"editworld/{split}/{seed}/{'+'.join(types)}/{size}")
        self.builders: dict[str, Callable[[], _Edit]] = {t: getattr(self, f"_b_{t}") for t in types}
        self.id_prefix = f"{split}-{seed}-{selection_tag(types)}" + ("" if size == 64 else f"-{size}px")

    # ------------------------------------------------------------------ scenes
    def random_scene(self, nmin: int, nmax: int) -> Scene:
        rng = self.rng
        n = rng.randint(nmin, nmax)
        objs = [Obj(rng.choice(KINDS), rng.choice(COLOUR_NAMES), rng.choice(SIZES), p)
                for p in rng.sample(POSITIONS, n)]
        bg = Background(rng.choice(BACKGROUND_NAMES), rng.choice(BACKGROUND_STYLES), rng.randrange(BACKGROUND_VARIANTS))
        return Scene.make(objs, bg)

    def in_split(self, scene: Scene) -> Scene:
        if split_of(scene) != self.split:
            raise _Retry
        return scene

    def scene(self, nmin: int = 1, nmax: int = 4) -> Scene:
        return self.in_split(self.random_scene(nmin, nmax))

    def explicit_ref(self, scene: Scene, obj: Obj) -> str:
        """A short name that is unique in the scene, always with colour and kind."""
        c, k, s, where = obj.colour, obj.kind, obj.size, POSITION_PHRASE[obj.position]
        same_ck = [o for o in scene.objects if o.colour == c and o.kind == k]
        options = []
        if len(same_ck) == 1:
            options.append(f"the {c} {k}")
        if sum(1 for o in same_ck if o.size == s) == 1:
            options.append(f"the {s} {c} {k}")
        options += [f"the {c} {k} {where}", f"the {s} {c} {k} {where}"]
        if self.rng.random() < 0.75:
            return options[0]
        return self.rng.choice(options)

    def other(self, values: Sequence[str], current: str) -> str:
        return self.rng.choice([v for v in values if v != current])

    # ------------------------------------------------------------------ actions
    def act(self, scene: Scene, obj: Obj, action: str, ref: str) -> _Edit:
        """Apply one of REFERRING_ACTIONS (+ resize) to ``obj`` with a given reference phrase."""
        rng = self.rng
        others = [o for o in scene.objects if o != obj]
        if action == "recolour":
            result = obj.replace(colour=self.other(COLOUR_NAMES, obj.colour))
            instr = rng.choice(T_RECOLOUR).format(ref=ref, colour=result.colour)
        elif action == "remove":
            result = None
            instr = rng.choice(T_REMOVE).format(ref=ref)
        elif action == "replace":
            result = obj.replace(kind=self.other(KINDS, obj.kind))
            instr = rng.choice(T_REPLACE).format(ref=ref, kind=result.kind)
        elif action == "resize":
            result = obj.replace(size=self.other(SIZES, obj.size))
            instr = rng.choice(T_GROW if result.size == "large" else T_SHRINK).format(ref=ref)
        elif action == "move":
            result = obj.replace(position=rng.choice(scene.free_positions()))
            instr = rng.choice(T_MOVE).format(ref=ref, pos=result.position, where=POSITION_PHRASE[result.position])
        else:  # pragma: no cover - internal
            raise ValueError(action)
        target = Scene.make(others + ([result] if result else []), scene.background)
        return _Edit(scene, target, action, instr, rewrite_for(action, obj, result), obj=obj, result=result,
                     extra={"reference": ref})

    # ------------------------------------------------------------------ explicit
    def _explicit_object_edit(self, action: str) -> _Edit:
        scene = self.scene(1, 4)
        obj = self.rng.choice(scene.objects)
        return self.act(scene, obj, action, self.explicit_ref(scene, obj))

    def _b_recolour(self) -> _Edit:
        return self._explicit_object_edit("recolour")

    def _b_remove(self) -> _Edit:
        return self._explicit_object_edit("remove")

    def _b_replace(self) -> _Edit:
        return self._explicit_object_edit("replace")

    def _b_resize(self) -> _Edit:
        return self._explicit_object_edit("resize")

    def _b_move(self) -> _Edit:
        return self._explicit_object_edit("move")

    def _new_object(self, scene: Scene) -> Obj:
        rng = self.rng
        return Obj(rng.choice(KINDS), rng.choice(COLOUR_NAMES), rng.choice(SIZES), rng.choice(scene.free_positions()))

    def _b_add(self) -> _Edit:
        scene = self.scene(1, 3)
        new = self._new_object(scene)
        where = POSITION_PHRASE[new.position]
        instr = self.rng.choice(T_ADD).format(noun=new.noun(), where=where)
        target = Scene.make(scene.objects + (new,), scene.background)
        return _Edit(scene, target, "add", instr, rewrite_for("add", None, new), result=new)

    def _b_background(self) -> _Edit:
        scene = self.scene(1, 4)
        bg = self.other(BACKGROUND_NAMES, scene.background.colour)
        target_scene = Scene(scene.objects, Background(bg, scene.background.style, scene.background.variant))
        src = render_float(scene, self.size)
        tgt = render_float(target_scene, self.size)
        coverage = objects_alpha(scene, self.size)
        visible, region = coverage < 1.0, coverage == 0
        if np.abs(src[region] - tgt[region]).mean() < MIN_REGION_CHANGE:
            raise _Retry
        instr = self.rng.choice(T_BACKGROUND).format(bg=bg)
        return _Edit(scene, target_scene, "background", instr, rewrite_for("background", None, None, background=bg),
                     extra={"background": bg}, target=to_uint8(tgt), mask=visible)

    def _global(self, action: str) -> _Edit:
        scene = self.scene(1, 4)
        directions = ("brighter", "darker") if action == "brightness" else ("increase", "decrease")
        first = self.rng.choice(directions)
        source = to_uint8(render_float(scene, self.size))
        for direction in (first, directions[1 - directions.index(first)]):
            target = adjust(source, action, direction)
            if np.abs(target.astype(np.float32) - source).mean() >= MIN_REGION_CHANGE:
                break
        else:
            raise _Retry
        instr = self.rng.choice(T_GLOBAL[(action, direction)])
        return _Edit(scene, scene, action, instr, rewrite_for(action, None, None, direction=direction),
                     extra={"direction": direction}, target=target,
                     mask=np.ones((self.size, self.size), bool))

    def _b_brightness(self) -> _Edit:
        return self._global("brightness")

    def _b_contrast(self) -> _Edit:
        return self._global("contrast")

    # ------------------------------------------------------------------ referring
    def _referring_action(self) -> str:
        return self.rng.choice(REFERRING_ACTIONS)

    def _b_unique_attribute(self) -> _Edit:
        scene = self.scene(2, 4)
        options = []
        for obj in scene.objects:
            for attr in ("kind", "colour", "size"):
                value = getattr(obj, attr)
                if sum(1 for o in scene.objects if getattr(o, attr) == value) == 1:
                    options.append((obj, attr))
        if not options:
            raise _Retry
        obj, attr = self.rng.choice(options)
        ref = self.rng.choice(T_UNIQUE[attr]).format(kind=obj.kind, colour=obj.colour, size=obj.size)
        return self.act(scene, obj, self._referring_action(), ref)

    def _b_superlative(self) -> _Edit:
        rng = self.rng
        scene = self.random_scene(2, 4)
        # make the sizes a superlative can resolve: one object of one size among >= 2 candidates
        if rng.random() < 0.5:  # within all shapes
            group, members = "shape", list(scene.objects)
        else:  # within one kind, e.g. "the largest circle": give >= 2 objects the same kind
            kind = rng.choice(KINDS)
            members = rng.sample(list(scene.objects), rng.randint(2, len(scene.objects)))
            scene = Scene.make([o.replace(kind=kind) if o in members else o for o in scene.objects], scene.background)
            members = [o for o in scene.objects if o.kind == kind]
            group = kind
        extreme = rng.choice(SIZES)
        chosen = rng.choice(members)
        other_size = "small" if extreme == "large" else "large"
        resized = {o: (o.replace(size=extreme) if o == chosen else o.replace(size=other_size)) for o in members}
        scene = self.in_split(Scene.make([resized.get(o, o) for o in scene.objects], scene.background))
        obj = resized[chosen]
        ref = rng.choice(T_SUPERLATIVE[extreme]).format(group=group)
        return self.act(scene, obj, self._referring_action(), ref)

    def _b_spatial(self) -> _Edit:
        scene = self.scene(2, 4)
        options = []
        for side, key in (("left", lambda o: o.col), ("right", lambda o: -o.col),
                          ("top", lambda o: o.row), ("bottom", lambda o: -o.row)):
            best = min(key(o) for o in scene.objects)
            winners = [o for o in scene.objects if key(o) == best]
            if len(winners) == 1:
                options.append((side, winners[0]))
        if not options:
            raise _Retry
        side, obj = self.rng.choice(options)
        ref = self.rng.choice(T_SPATIAL[side])
        return self.act(scene, obj, self._referring_action(), ref)

    def _b_odd_one_out(self) -> _Edit:
        rng = self.rng
        n = rng.randint(3, 4)
        positions = rng.sample(POSITIONS, n)
        base = Obj(rng.choice(KINDS), rng.choice(COLOUR_NAMES), rng.choice(SIZES), positions[0])
        attr = rng.choice(("kind", "colour", "size"))
        values = {"kind": KINDS, "colour": COLOUR_NAMES, "size": SIZES}[attr]
        odd_value = self.other(values, getattr(base, attr))
        objs = [base.replace(position=p) for p in positions]
        objs[-1] = objs[-1].replace(**{attr: odd_value})
        bg = Background(rng.choice(BACKGROUND_NAMES), rng.choice(BACKGROUND_STYLES), rng.randrange(BACKGROUND_VARIANTS))
        scene = self.in_split(Scene.make(objs, bg))
        obj = objs[-1]
        return self.act(scene, obj, self._referring_action(), rng.choice(T_ODD))

    # ------------------------------------------------------------------ multimodal
    def _reference(self, obj: Obj, modality: str) -> tuple[str, dict[str, np.ndarray]]:
        if modality == "image":
            return "[image1]", {"image1": render_cutout(obj, self.size)}
        return "[audio1]", {"audio1": object_sound(obj.kind, obj.colour, obj.size)}

    def _mm_add(self, modality: str) -> _Edit:
        scene = self.scene(1, 3)
        new = self._new_object(scene)
        marker, inputs = self._reference(new, modality)
        instr = self.rng.choice(T_MM_ADD).format(m=marker, where=POSITION_PHRASE[new.position])
        target = Scene.make(scene.objects + (new,), scene.background)
        return _Edit(scene, target, "add", instr, rewrite_for("add", None, new), result=new, inputs=inputs)

    def _replacement(self, obj: Obj) -> Obj:
        """A random object at ``obj``'s position that differs from it in kind, colour or size."""
        rng = self.rng
        while True:
            new = Obj(rng.choice(KINDS), rng.choice(COLOUR_NAMES), rng.choice(SIZES), obj.position)
            if new != obj:
                return new

    def _distinct_object(self, scene: Scene) -> Obj:
        """A random object of ``scene`` whose kind, colour and size no other object shares (else retry), so a
        cut-out or a sound of it names exactly one object."""
        obj = self.rng.choice(scene.objects)
        if sum(1 for o in scene.objects if (o.kind, o.colour, o.size) == (obj.kind, obj.colour, obj.size)) != 1:
            raise _Retry
        return obj

    def _mm_replace(self, modality: str) -> _Edit:
        rng = self.rng
        scene = self.scene(1, 4)
        obj = rng.choice(scene.objects)
        new = self._replacement(obj)
        marker, inputs = self._reference(new, modality)
        ref = self.explicit_ref(scene, obj)
        instr = rng.choice(T_MM_REPLACE).format(ref=ref, m=marker)
        target = Scene.make([o for o in scene.objects if o != obj] + [new], scene.background)
        return _Edit(scene, target, "replace", instr, rewrite_for("replace", obj, new), obj=obj, result=new,
                     inputs=inputs, extra={"reference": ref})

    def _mm_remove(self, modality: str) -> _Edit:
        scene = self.scene(1, 4)
        obj = self._distinct_object(scene)
        marker, inputs = self._reference(obj, modality)
        instr = self.rng.choice(T_MM_REMOVE).format(m=marker)
        target = Scene.make([o for o in scene.objects if o != obj], scene.background)
        return _Edit(scene, target, "remove", instr, rewrite_for("remove", obj, None), obj=obj, inputs=inputs,
                     extra={"reference": f"the {marker}"})

    def _b_replace_image_pair(self) -> _Edit:
        """"replace the [image1] with the [image2]": the object to replace and its replacement both as cut-outs."""
        scene = self.scene(1, 4)
        obj = self._distinct_object(scene)
        new = self._replacement(obj)
        inputs = {"image1": render_cutout(obj, self.size), "image2": render_cutout(new, self.size)}
        instr = self.rng.choice(T_MM_REPLACE_PAIR).format(a="[image1]", b="[image2]")
        target = Scene.make([o for o in scene.objects if o != obj] + [new], scene.background)
        return _Edit(scene, target, "replace", instr, rewrite_for("replace", obj, new), obj=obj, result=new,
                     inputs=inputs, extra={"reference": "the [image1]"})

    def _b_add_image(self) -> _Edit:
        return self._mm_add("image")

    def _b_add_audio(self) -> _Edit:
        return self._mm_add("audio")

    def _b_replace_image(self) -> _Edit:
        return self._mm_replace("image")

    def _b_replace_audio(self) -> _Edit:
        return self._mm_replace("audio")

    def _b_remove_image(self) -> _Edit:
        return self._mm_remove("image")

    def _b_remove_audio(self) -> _Edit:
        return self._mm_remove("audio")

    # ------------------------------------------------------------------ assembly
    def sample(self, index: int) -> Sample:
        edit_type = self.rng.choice(self.types)
        builder = self.builders[edit_type]
        for _ in range(100_000):
            try:
                e = builder()
                break
            except _Retry:
                continue
        else:  # pragma: no cover - the acceptance rates are far from zero
            raise RuntimeError(f"EditWorld could not sample a {edit_type!r} edit for split {self.split!r}")
        scene, size = e.scene, self.size
        source = to_uint8(render_float(scene, size))
        target = e.target if e.target is not None else to_uint8(render_float(e.target_scene, size))
        if e.mask is not None:
            mask = e.mask
        else:
            mask = np.zeros((size, size), bool)
            for o in (e.obj, e.result):
                if o is not None:
                    mask |= obj_masks(o, size)[0]
        spec: dict[str, Any] = {
            "action": e.action,
            "object": e.obj.to_dict() if e.obj else None,
            "result": e.result.to_dict() if e.result else None,
            **e.extra,
        }
        source_caption = describe(scene)
        if e.action in GLOBAL_ACTIONS:
            target_caption = CAPTION_PREFIX[(e.action, e.extra["direction"])] + source_caption
        else:
            target_caption = describe(e.target_scene)
        return Sample(
            id=f"{self.id_prefix}-{index:06d}",
            split=self.split,
            source=source,
            target=target,
            mask=mask,
            instruction=e.instruction,
            rewrite=e.rewrite,
            edit_type=edit_type,
            family=FAMILY_OF[edit_type],
            source_caption=source_caption,
            target_caption=target_caption,
            scene=scene,
            target_scene=e.target_scene,
            edit=spec,
            inputs=e.inputs,
        )



def _check_args(split: str, seed: int, size: int) -> None:
    if split not in SPLITS:
        raise InvalidInputError(f"unknown EditWorld split {split!r}; use one of: {', '.join(SPLITS)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InvalidInputError(f"EditWorld seed must be an integer, got {seed!r}")
    try:
        check_size(size)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def iter_samples(split: str, seed: int = 0, types: str | Sequence[str] = "all", size: int = 64) -> Iterator[Sample]:
    """An endless, deterministic stream of samples; ``generate`` returns its first ``count`` items."""
    _check_args(split, seed, size)
    gen = _Generator(split, int(seed), resolve_types(types), int(size))
    index = 0
    while True:
        yield gen.sample(index)
        index += 1


def generate(split: str, count: int, seed: int = 0, types: str | Sequence[str] = "all", size: int = 64) -> list[Sample]:
    """``count`` samples of ``split`` ("train", "val" or "test"), deterministic for (split, seed, types, size).

    ``types``: "all", a family ("explicit", "referring", "multimodal"), an edit type, or a list of
    these; each sample draws its edit type uniformly from the selection. A prefix of a longer run
    equals a shorter run: ``generate(s, 10, k)[:5] == generate(s, 5, k)``.
    """
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise InvalidInputError(f"EditWorld count must be a non-negative integer, got {count!r}")
    stream = iter_samples(split, seed, types, size)
    return [next(stream) for _ in range(int(count))]
