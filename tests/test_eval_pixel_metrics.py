"""Pixel metrics against hand-computed values: L1, MSE, PSNR, SSIM, masked and PIE-Bench-compatible."""
from __future__ import annotations

import math

import numpy as np
import pytest

from editkit import editworld as ew
from editkit.eval import editworld_metrics as EW
from editkit.eval.datasets.piebench import force_border
from editkit.eval.metrics import MetricBatch, MetricsConfig, metric_class
from editkit.eval.metrics import pixel as P
from editkit.eval.samples import EvalDataset, EvalSample
from editkit.eval.suite import MetricSuite


def flat(value: int, shape=(16, 16)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def test_l1_mse_psnr_hand_computed():
    a, b = flat(0, (4, 4)), flat(51, (4, 4))
    assert P.l1(a, b) == pytest.approx(0.2)
    assert P.mse(a, b) == pytest.approx(0.04)  # MagicBrush's "L2" is this MSE, no square root
    assert P.psnr_from_mse(P.mse(a, b)) == pytest.approx(10 * math.log10(1 / 0.04))
    assert P.psnr_from_mse(0.0) == P.PSNR_MAX
    # masked: means over the selected pixels only
    c = a.copy()
    c[0, 0] = 255
    region = np.zeros((4, 4), bool)
    region[0, :2] = True  # one pixel differs by 1.0 in every channel, one does not
    assert P.l1(a, c, region) == pytest.approx(0.5)
    assert P.mse(a, c, region) == pytest.approx(0.5)
    assert P.l1(a, c) == pytest.approx(1 / 16)
    assert P.l1(a, c, np.zeros((4, 4), bool)) is None


def test_gaussian_window_matches_the_formula():
    g = P.gaussian_window(11, 1.5)
    x = np.arange(-5, 6)
    expected = np.exp(-(x**2) / (2 * 1.5**2))
    assert g == pytest.approx(expected / expected.sum())
    assert g.sum() == pytest.approx(1.0)


def test_ssim_of_constant_images_is_the_luminance_term():
    # mu_a = 0.5, mu_b = 0.6, no variance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) * C2 / C2
    a = np.full((20, 20, 3), 0.5)
    b = np.full((20, 20, 3), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1)
    smap = P.ssim_map(a, b)
    assert smap.shape == (10, 10, 3)
    assert smap == pytest.approx(np.full_like(smap, expected))
    assert P.ssim(flat(100), flat(100)) == pytest.approx(1.0)
    assert P.ssim_map(np.zeros((10, 30, 3)), np.zeros((10, 30, 3))) is None  # smaller than the window


def _ssim_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out window by window with explicit Gaussian weights (Wang et al. 2004, eq. 13-14)."""
    g = P.gaussian_window()
    w = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for c in range(a.shape[2]):
        for y in range(a.shape[0] - 10):
            for x in range(a.shape[1] - 10):
                pa, pb = a[y:y + 11, x:x + 11, c], b[y:y + 11, x:x + 11, c]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_a_window_by_window_computation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (14, 15, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert P.ssim(a, b) == pytest.approx(_ssim_brute_force(a / 255.0, b / 255.0), rel=1e-10)


def test_masked_ssim_uses_windows_wholly_inside_the_region():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    b = a.copy()
    b[:, 20:] = 255 - b[:, 20:]  # differences only in the right part
    left = np.zeros((30, 30), bool)
    left[:, :20] = True
    assert P.ssim(a, b, left) == pytest.approx(1.0)  # no window inside the left part sees the change
    assert P.ssim(a, b) < 0.9
    tiny = np.zeros((30, 30), bool)
    tiny[:5, :5] = True
    assert P.ssim(a, b, tiny) is None  # no 11x11 window fits in the region


def _batch(outputs, sources, targets=None, masks=None):
    n = len(outputs)
    samples = [EvalSample(id=str(i), instruction="x", source=sources[i]) for i in range(n)]
    return MetricBatch(samples, outputs, sources, targets or [None] * n, masks or [None] * n)


def test_background_and_in_mask_metrics():
    src = flat(100)
    out = src.copy()
    out[4:8, 4:8] = 200   # the edit, inside the mask
    out[0, 0] = 151       # one leaked pixel outside the mask (diff 51 = 0.2)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    target = src.copy()
    target[4:8, 4:8] = 200
    batch = _batch([out], [src], [target], [mask])
    cfg = MetricsConfig()

    def value(name: str) -> float:
        return metric_class(name)(cfg).compute(batch, [0])[0]

    n_bg = 256 - 16
    assert value("l1_background") == pytest.approx(0.2 / n_bg)
    assert value("mse_background") == pytest.approx(0.04 / n_bg)
    assert value("psnr_background") == pytest.approx(10 * math.log10(n_bg / 0.04))
    assert value("l1_in_mask") == 0.0 and value("psnr_in_mask") == P.PSNR_MAX
    assert value("l1_source") == pytest.approx((16 * 100 / 255 + 0.2) / 256)
    assert value("l1") == pytest.approx(0.2 / 256)


def test_piebench_mode_zero_fills_and_forces_the_border():
    src = flat(100)
    out = src.copy()
    out[0, 5] = 200   # on the border: PIE-Bench counts it as edit region, so it is ignored
    out[8, 8] = 151   # unedited pixel with diff 0.2
    mask = np.zeros((16, 16), bool)
    mask[2:4, 2:4] = True
    batch = _batch([out], [src], masks=[mask])
    cfg = MetricsConfig()
    mse = metric_class("piebench_mse_unedited")(cfg).compute(batch, [0])[0]
    assert mse == pytest.approx(0.04 / 256)  # over the whole image (zeroed pixels count as equal)
    psnr = metric_class("piebench_psnr_unedited")(cfg).compute(batch, [0])[0]
    assert psnr == pytest.approx(10 * math.log10(256 / 0.04))
    editkit_psnr = metric_class("psnr_background")(cfg).compute(batch, [0])[0]
    assert editkit_psnr < psnr  # the editkit convention does not inflate PSNR by the background fraction
    assert force_border(mask)[0].all() and force_border(mask)[:, -1].all() and not force_border(mask)[5, 5]
    ssim = metric_class("piebench_ssim_unedited")(cfg).compute(_batch([src], [src], masks=[mask]), [0])[0]
    assert ssim == pytest.approx(1.0)


def test_generic_metrics_agree_with_the_editworld_metrics():
    samples = ew.generate("test", 40, seed=3)
    rng = np.random.default_rng(2)
    outputs = [np.clip(s.target.astype(int) + rng.integers(-20, 21, s.target.shape), 0, 255).astype(np.uint8)
               for s in samples]
    batch = MetricBatch([None] * 40, outputs, [s.source for s in samples], [s.target for s in samples],
                        [s.mask for s in samples])
    cfg = MetricsConfig()
    for name, reference in (("l1", lambda o, s: EW.l1(o, s.target)), ("psnr", lambda o, s: EW.psnr(o, s.target)),
                            ("psnr_background", EW.psnr_background), ("l1_source", lambda o, s: EW.l1(o, s.source))):
        values = metric_class(name)(cfg).compute(batch, list(range(40)))
        for value, out, s in zip(values, outputs, samples):
            expected = reference(out, s)
            assert (value is None) == (expected is None), name
            if expected is not None:
                assert value == pytest.approx(expected, rel=1e-9), name


def test_suite_skips_what_the_dataset_cannot_support():
    ds = EvalDataset([EvalSample(id="a", instruction="x", source=flat(10))], "jsonl")
    suite = MetricSuite(MetricsConfig(), ds)
    assert "l1_source" in suite.names and "l1" not in suite.names
    assert suite.skipped["l1"] == "the dataset has no target"
    assert suite.skipped["psnr_background"] == "the dataset has no mask"
    assert suite.skipped["edit_success"] == "the dataset has no editworld"
    assert suite.skipped["clip_i"] == "the dataset has no target"
    assert suite.skipped["clip_image"].startswith("CLIP backbone: needs local open_clip weights")
    assert not any(n.startswith("piebench_") for n in suite.names)
    with_mask = EvalDataset([EvalSample(id="a", instruction="x", source=flat(10), mask=np.ones((16, 16), bool))],
                            "piebench")
    assert "piebench_psnr_unedited" in MetricSuite(MetricsConfig(), with_mask).names  # on by default there
    chosen = MetricSuite(MetricsConfig(select=["L2", "l1_source"], exclude=["l1_source"]), ds)
    assert chosen.names == [] and chosen.skipped == {"mse": "the dataset has no target"}


def test_unknown_metric_names_suggest_close_ones():
    from editkit.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="Did you mean: psnr"):
        MetricSuite(MetricsConfig(select=["psnrr"]), EvalDataset([], "jsonl"))
