"""Exact EditWorld metrics: hand-computed values and the strict edit-success criterion."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from editkit import editworld as ew
from editkit.editworld.render import adjust, render_scene
from editkit.editworld.world import Background, Obj, Scene
from editkit.eval import editworld_metrics as M


@pytest.fixture(scope="module")
def samples() -> list[ew.Sample]:
    # every edit type, many scenes, the split the numbers are reported on
    return ew.generate("test", 900, seed=21)


# ------------------------------------------------------------------ plain metrics
def test_l1_and_psnr_hand_computed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 51, np.uint8)
    assert M.l1(a, b) == pytest.approx(0.2)
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 51**2))
    assert M.psnr(a, a) == M.PSNR_MAX
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    c = a.copy()
    c[1:, :] = 200  # differences only outside the mask
    assert M.psnr(a, c, mask) == M.PSNR_MAX
    assert M.psnr(a, c, np.zeros((4, 4), bool)) is None
    assert M.l1(Image.fromarray(a), b) == pytest.approx(0.2)  # PIL images are accepted


def test_psnr_background_uses_pixels_outside_the_mask(samples):
    s = next(x for x in samples if x.action == "recolour")
    out = s.target.copy()
    assert M.psnr_background(out, s) == M.PSNR_MAX
    out[~s.mask] = np.clip(out[~s.mask].astype(int) + 10, 0, 255)
    assert M.psnr_background(out, s) == pytest.approx(10 * math.log10(255**2 / 100), abs=0.3)
    glob = next(x for x in samples if x.action == "brightness")
    assert M.psnr_background(glob.target, glob) is None  # whole-image edit: nothing outside the mask


def test_output_size_is_checked(samples):
    with pytest.raises(ValueError, match="expected 64x64"):
        M.edit_success(np.zeros((32, 32, 3), np.uint8), samples[0])


# ------------------------------------------------------------------ the strict criterion
def test_unedited_input_fails_and_target_passes_on_every_type(samples):
    assert {s.edit_type for s in samples} == set(ew.EDIT_TYPES)
    for s in samples:
        assert M.edit_success(s.source, s) == 0, (s.edit_type, s.instruction)
        assert M.edit_success(s.target, s) == 1, (s.edit_type, s.instruction, M.edit_checks(s.target, s))


def test_target_with_mild_noise_still_passes(samples):
    rng = np.random.default_rng(0)
    for s in samples[:300]:
        noisy = np.clip(s.target + rng.normal(0, 6, s.target.shape), 0, 255).astype(np.uint8)
        assert M.edit_success(noisy, s) == 1, (s.edit_type, M.edit_checks(noisy, s)["failed"])


def _render(scene: Scene) -> np.ndarray:
    return render_scene(scene, 64)


def _apply(scene: Scene, old: Obj, new: Obj | None) -> Scene:
    objs = [o for o in scene.objects if o != old] + ([new] if new else [])
    return Scene.make(objs, scene.background)


def _wrong_object_output(s: ew.Sample) -> np.ndarray | None:
    """The same edit applied to another object of the scene (None when the scene has no other object)."""
    obj = Obj.from_dict(s.edit["object"]) if s.edit["object"] else None
    res = Obj.from_dict(s.edit["result"]) if s.edit["result"] else None
    if s.action == "add":
        free = [p for p in s.scene.free_positions() if p != res.position]
        return _render(_apply(s.scene, res, res.replace(position=free[0])))
    others = [o for o in s.scene.objects if o != obj]
    if not others or obj is None:
        return None
    other = others[0]
    if s.action == "remove":
        new = None
    elif s.action == "move":
        new = other.replace(position=res.position)
    else:  # recolour / replace / resize and multimodal replace: give the other object the result's attributes
        new = other.replace(kind=res.kind, colour=res.colour, size=res.size)
        if new == other:
            new = other.replace(colour=next(c for c in ew.COLOURS if c != other.colour))
    return _render(_apply(s.scene, other, new))


def test_edit_on_the_wrong_object_fails(samples):
    tested = 0
    for s in samples:
        if s.action in ("background", "brightness", "contrast"):
            continue
        out = _wrong_object_output(s)
        if out is None:
            continue
        tested += 1
        assert M.edit_success(out, s) == 0, (s.edit_type, s.instruction, s.source_caption)
    assert tested > 400


def test_right_object_with_the_wrong_colour_fails(samples):
    tested = 0
    for s in samples:
        res = Obj.from_dict(s.edit["result"]) if s.edit["result"] else None
        if s.action == "background":
            wrong = next(b for b in ew.BACKGROUNDS if b not in (s.edit["background"], s.scene.background.colour))
            out = _render(Scene(s.scene.objects, Background(wrong, s.scene.background.style, s.scene.background.variant)))
        elif res is not None:
            old = Obj.from_dict(s.edit["object"]) if s.edit["object"] else None
            bad = [c for c in ew.COLOURS if c != res.colour and (old is None or c != old.colour)]
            out = _render(_apply(s.target_scene, res, res.replace(colour=bad[tested % len(bad)])))
        else:
            continue
        tested += 1
        assert M.edit_success(out, s) == 0, (s.edit_type, s.instruction)
    assert tested > 500


def test_right_object_with_the_wrong_shape_size_or_place_fails(samples):
    tested = 0
    for s in samples:
        res = Obj.from_dict(s.edit["result"]) if s.edit["result"] else None
        if res is None:
            continue
        wrong = [res.replace(kind=k) for k in ew.KINDS if k != res.kind]
        wrong.append(res.replace(size="small" if res.size == "large" else "large"))
        free = [p for p in s.target_scene.free_positions()]
        wrong.append(res.replace(position=free[0]))
        for w in wrong:
            tested += 1
            out = _render(_apply(s.target_scene, res, w))
            assert M.edit_success(out, s) == 0, (s.edit_type, s.instruction, w)
    assert tested > 1000


def test_over_editing_and_spurious_objects_fail(samples):
    for s in samples[:400]:
        if s.action in ("brightness", "contrast"):
            continue
        untouched = [o for o in s.target_scene.objects if o in s.scene.objects]
        if untouched:  # the edit is right, but another object was recoloured too
            o = untouched[0]
            new = o.replace(colour=next(c for c in ew.COLOURS if c != o.colour))
            assert M.edit_success(_render(_apply(s.target_scene, o, new)), s) == 0
        free = [p for p in s.target_scene.free_positions() if p not in s.scene.occupied()]
        if free and s.action != "background":  # the edit is right, plus an extra large object elsewhere
            extra = Obj("square", "red", "large", free[-1])
            out = _render(Scene.make(list(s.target_scene.objects) + [extra], s.target_scene.background))
            verdict = M.edit_checks(out, s)
            assert not verdict["success"] and "keep_background" in verdict["failed"], (s.edit_type, s.instruction)


def test_global_edits_in_the_wrong_direction_fail(samples):
    for s in samples:
        if s.action == "brightness":
            flip = "darker" if s.edit["direction"] == "brighter" else "brighter"
        elif s.action == "contrast":
            flip = "decrease" if s.edit["direction"] == "increase" else "increase"
        else:
            continue
        assert M.edit_success(adjust(s.source, s.action, flip), s) == 0
        # half of the edit is not enough either
        half = ((s.source.astype(float) + s.target) / 2).round().astype(np.uint8)
        assert M.edit_checks(half, s)["checks"]["region"]["value"] >= M.REGION_MAE_TOLERANCE - 0.5


def test_checks_report_values_and_failures(samples):
    s = next(x for x in samples if x.action == "recolour")
    verdict = M.edit_checks(s.source, s)
    assert not verdict["success"] and "changed" in verdict["failed"] and "nearest" in verdict["failed"]
    assert verdict["checks"]["changed"]["value"] == 0.0
    metrics = M.sample_metrics(s.target, s)
    assert metrics["edit_success"] == 1 and metrics["l1"] == 0 and metrics["psnr"] == M.PSNR_MAX
    assert metrics["failed_checks"] == []


def test_constants_are_documented():
    assert M.COLOUR_TOLERANCE == 48 and 0.5 < M.EDIT_FRACTION < 1 and M.KEEP_BACKGROUND_FRACTION >= 0.95
    assert M.CONSTANTS["MIN_REGION_CHANGE"] >= 2 * M.REGION_MAE_TOLERANCE
    for name in ("edit_success", "edit_checks"):
        assert getattr(M, name).__doc__
    assert "unedited input scores 0" in M.__doc__


def test_correct_but_blurry_edits_pass(samples):
    """A VAE-like 2x down-and-up resampling of the target (about 35 dB) must not turn into failures."""
    def down_up(a: np.ndarray) -> np.ndarray:
        small = Image.fromarray(a).resize((32, 32), Image.Resampling.BILINEAR)
        return np.asarray(small.resize((64, 64), Image.Resampling.BICUBIC))

    passed = [M.edit_success(down_up(s.target), s) for s in samples[:400]]
    assert np.mean(passed) >= 0.98
    assert all(M.edit_success(down_up(s.source), s) == 0 for s in samples[:400])
