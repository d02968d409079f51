"""The blended guide: exact background, blending noise level, skipped schedule, CLIP guidance and ranking,
and SDXL-shaped pipelines (pooled text embeddings and size ids in every UNet call).

Plumbing on tiny random weights (a random CLIP only checks the mechanics, never quality); the quality
figures on the committed weights are in docs/guides/blended.md.
"""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from editkit.backend import BackendCache
from editkit.backend.clip import CONFIG_NAME, WEIGHTS_NAME, load_clip
from editkit.backend.tiny import save_components, tiny_components, tiny_sdxl_components
from editkit.errors import GuideConfigError, InvalidInputError
from editkit.testing import contract_image
from editkit.types import EditRequest, StepState
from editkit_blended import BlendedGuide
from editkit_blended import clip_guidance, masks

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("blended")
    return {
        "ip2p": str(save_components(tiny_components(0), root / "ip2p")),
        "t2i": str(save_components(tiny_components(1, in_channels=4), root / "t2i")),
        "sdxl": str(save_components(tiny_sdxl_components(2), root / "sdxl")),
    }


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP)
    (root / CONFIG_NAME).write_text(json.dumps({"model_cfg": TINY_CLIP}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / WEIGHTS_NAME))
    return {"clip": str(root / CONFIG_NAME), "clip_checkpoint": str(root / WEIGHTS_NAME)}


def box_mask(size, box):
    m = Image.new("L", size, 0)
    m.paste(255, box)
    return m


def request(size=(37, 29), box=(8, 6, 24, 20), seed=3, n=1):
    imgs = [contract_image(size) for _ in range(n)]
    return EditRequest(images=imgs, instructions=["make the square blue"], masks=[box_mask(size, box)] * n, seed=seed)


def make(weights, which="ip2p", **options):
    opts = {"model": weights[which], "steps": 8, "candidates": 1, "rank": False, "progress": False, **options}
    guide = BlendedGuide(**opts)
    guide.load(BackendCache())
    return guide


@pytest.mark.parametrize("which", ["ip2p", "t2i"])
@pytest.mark.parametrize("feather", [0.0, 3.0])
def test_pixels_outside_the_mask_are_bit_identical(weights, which, feather):
    guide = make(weights, which, feather=feather)
    req = request()
    out = np.asarray(guide.edit(req).image, dtype=int)
    src = np.asarray(req.images[0], dtype=int)
    inside = np.asarray(req.masks[0]) > 0
    assert out.shape == src.shape
    assert np.abs(out - src)[~inside].max() == 0
    assert np.abs(out - src)[inside].mean() > 1.0  # the region was regenerated


def test_without_paste_back_the_vae_round_trip_leaks(weights):
    req = request()
    out = np.asarray(make(weights, paste_back=False).edit(req).image, dtype=int)
    inside = np.asarray(req.masks[0]) > 0
    assert np.abs(out - np.asarray(req.images[0], dtype=int))[~inside].max() > 0


def test_feather_softens_only_inside():
    src = Image.new("RGB", (40, 40), (0, 0, 0))
    out = Image.new("RGB", (40, 40), (200, 200, 200))
    m = box_mask((40, 40), (5, 5, 35, 35))
    hard = np.asarray(masks.paste_back(out, src, m))
    soft = np.asarray(masks.paste_back(out, src, m, feather=2.0))
    assert hard[10, 10, 0] == 200 and hard[5, 5, 0] == 200 and hard[4, 4, 0] == 0
    assert soft[10, 10, 0] == 200 and 0 < soft[5, 10, 0] < 200  # edge of the region fades in
    assert (soft[np.asarray(m) == 0] == 0).all()


@pytest.mark.parametrize("mode", ["matched", "reference"])
def test_blend_noise_level(weights, mode):
    """Outside the mask the latents after step i are the source noised to timesteps[i+1] ('matched', clean after
    the last step) or to timesteps[i] (the reference scripts' off-by-one)."""
    guide = make(weights, blend_noise=mode)
    req = request()
    guide.prepare(req)
    backend = guide.backend
    from editkit.backend.schedulers import make_scheduler

    sched = make_scheduler("ddim", backend.scheduler_config)
    sched.set_timesteps(8)
    ts = sched.timesteps[2:]
    mask = guide._latent_masks[-1]
    source = torch.randn(1, 4, *mask.shape[-2:])
    noise = torch.randn_like(source)
    latents = torch.randn_like(source)
    ctx = {"scheduler": sched, "timesteps": ts, "noise": noise, "source_latents": source}
    for i in (0, len(ts) - 1):
        out = guide.on_step(StepState(step=i, timestep=ts[i], latents=latents, extra=ctx))
        if mode == "matched":
            expect = source if i == len(ts) - 1 else sched.add_noise(source, noise, ts[i + 1 : i + 2])
        else:
            expect = sched.add_noise(source, noise, ts[i : i + 1])
        outside = mask.expand_as(out) == 0
        torch.testing.assert_close(out[outside], expect[outside])
        torch.testing.assert_close(out[~outside], latents[~outside])


def test_matched_blending_ends_on_the_exact_source_latents(weights):
    guide = make(weights)
    captured = {}
    decode = guide.backend.decode
    guide.backend.decode = lambda z: (captured.setdefault("z", z.clone()), decode(z))[1]
    req = request(size=(32, 32))
    guide.edit(req)
    pixels, _ = guide.backend.images_to_tensor(req.images)
    source = guide.backend.encode(pixels, scaled=True)
    outside = guide._latent_masks[-1].expand_as(source) == 0
    torch.testing.assert_close(captured["z"][outside], source[outside])


@pytest.mark.parametrize("which,branches", [("ip2p", 3), ("t2i", 2)])
def test_sampling_skips_the_first_fraction_of_the_schedule(weights, which, branches):
    guide = make(weights, which, steps=20, skip=0.25, candidates=2)
    calls = []
    unet = guide.backend.unet
    hook = unet.register_forward_hook(lambda m, a, k: calls.append(a[0].shape[0]))
    try:
        guide.edit(request())
    finally:
        hook.remove()
    assert calls == [2 * branches] * 15  # 25% of 20 steps skipped; all branches and candidates in one call


def test_candidates_are_ranked_best_first_by_clip(weights, clip_files):
    guide = make(weights, candidates=3, rank=True, **clip_files)
    req = request(n=2)
    result = guide.edit(req)
    assert len(result.candidates) == 2 and all(len(c) == 3 for c in result.candidates)
    clip = load_clip(clip_files["clip"], clip_files["clip_checkpoint"])
    text = clip.encode_texts(["make the square blue"])
    for group, image in zip(result.candidates, result.images):
        scores = [c.score for c in group]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
        assert image is group[0].image
        for cand in group:  # the score is the CLIP cosine of the masked region
            x = torch.from_numpy(np.array(cand.image)).permute(2, 0, 1)[None].float() / 127.5 - 1
            m = masks.pixel_masks(req.masks[:1], *x.shape[-2:])
            emb = clip.encode_pixels(x * m)
            assert math.isclose(float((emb * text).sum()), cand.score, abs_tol=1e-4)


def test_clip_guidance_uses_the_gradient_of_the_masked_x0(weights, clip_files):
    base = make(weights, **clip_files)
    guided = make(weights, clip_guidance_scale=2000.0, augmentations=3, **clip_files)
    assert guided.hooks_used()["guidance_loss"] and not base.hooks_used()["guidance_loss"]
    losses = []
    original = guided.guidance_loss
    guided.guidance_loss = lambda x0, st: (losses.append(1), original(x0, st))[1]
    req = request(size=(32, 32))
    a = np.asarray(base.edit(req).image, dtype=int)
    b = np.asarray(guided.edit(req).image, dtype=int)
    assert len(losses) == 6  # every sampled step (8 steps, 25% skipped)
    inside = np.asarray(req.masks[0]) > 0
    assert np.abs(a - b)[inside].mean() > 0.5 and np.abs(a - b)[~inside].max() == 0


def test_extending_augmentations():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    views = clip_guidance.extending_augmentations(x, 4, torch.Generator().manual_seed(1))
    assert views.shape == (8, 3, 16, 16)
    torch.testing.assert_close(views[0], x[0])
    torch.testing.assert_close(views[4], x[1])  # view 0 of every sample is the unaugmented image
    assert (views[1] - x[0]).abs().mean() > 1e-3
    views.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = clip_guidance.extending_augmentations(x.detach(), 4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, views.detach())  # seeded


def test_spherical_distance_and_range_loss():
    e = torch.tensor([[1.0, 0.0]])
    assert float(clip_guidance.spherical_distance(e, e)) == 0.0
    assert math.isclose(float(clip_guidance.spherical_distance(e, -e)), 2 * (math.pi / 2) ** 2, rel_tol=1e-6)
    assert math.isclose(float(clip_guidance.spherical_distance(e, torch.tensor([[0.0, 3.0]]))),
                        2 * (math.pi / 4) ** 2, rel_tol=1e-6)
    px = torch.tensor([[[[0.5, 1.5], [-2.0, 0.0]]]])
    assert math.isclose(float(clip_guidance.range_loss(px)), (0.25 + 1.0) / 4)


def test_latent_masks_keep_thin_strokes_and_dilate_progressively():
    m = torch.zeros(1, 1, 16, 16)
    m[..., 7, :] = 1  # a one-pixel line
    lat = masks.latent_masks(m, 4)
    assert lat.shape == (1, 1, 4, 4) and lat[0, 0, 1].sum() == 4  # nearest-0.5 resizing would lose it
    sched = masks.dilation_schedule(lat, 2)
    assert len(sched) == 3 and torch.equal(sched[-1], lat)
    areas = [float(x.sum()) for x in sched]
    assert areas[0] >= areas[1] >= areas[2]
    assert [masks.stage(i, 9, 3) for i in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_options_and_inputs_are_validated(weights):
    with pytest.raises(GuideConfigError, match="guide 'blended': option 'skip'"):
        BlendedGuide(skip=1.0)
    with pytest.raises(GuideConfigError, match="option 'blend_noise'"):
        BlendedGuide(blend_noise="late")
    with pytest.raises(InvalidInputError, match="needs local weights"):
        make(weights, rank=True, candidates=2, clip="ViT-B-16")


def test_x0_gradient_mode_keeps_the_unet_out_of_autograd(weights, clip_files):
    guided = make(weights, clip_guidance_scale=2000.0, augmentations=2, guidance_gradient="x0", **clip_files)
    base = make(weights, **clip_files)
    grads = []
    hook = guided.backend.unet.register_forward_hook(lambda m, a, out: grads.append(torch.is_grad_enabled()))
    req = request(size=(32, 32))
    try:
        b = np.asarray(guided.edit(req).image, dtype=int)
    finally:
        hook.remove()
    assert grads and not any(grads)  # the UNet never runs with autograd on
    a = np.asarray(base.edit(req).image, dtype=int)
    inside = np.asarray(req.masks[0]) > 0
    assert np.abs(a - b)[inside].mean() > 0.5 and np.abs(a - b)[~inside].max() == 0


# ------------------------------------------------------------------ SDXL-shaped pipelines
class RecordingUNet(torch.nn.Module):
    """Wraps a UNet and records every call's batch, encoder hidden states and ``added_cond_kwargs``."""

    def __init__(self, unet):
        super().__init__()
        self.inner = unet
        self.config = unet.config
        self.calls: list[dict] = []

    def forward(self, x, t, **kw):
        self.calls.append({"batch": x.shape[0], "context": kw["encoder_hidden_states"].detach().clone(),
                           **{k: v.detach().clone() for k, v in kw.get("added_cond_kwargs", {}).items()}})
        return self.inner(x, t, **kw)


def recorded_edit(guide, req):
    """The guide's result on ``req`` and every UNet call it made."""
    recorder = RecordingUNet(guide.backend.unet)
    original, guide.backend.unet = guide.backend.unet, recorder
    try:
        return guide.edit(req), recorder.calls
    finally:
        guide.backend.unet = original


def sdxl_request(seed=3):
    return request(size=(64, 64), box=(16, 12, 48, 44), seed=seed)


def check_sdxl_calls(guide, calls, k: int, steps: int) -> None:
    """Every UNet call: one batch of cond rows then null rows (K candidates each), the prompt's and the empty
    prompt's pooled embeddings in the same order, and SDXL's size ids for the 64x64 image."""
    text, pooled = guide.backend.encode_prompts(["make the square blue"])
    null, null_pooled = guide.backend.encode_prompts([""])
    assert not torch.equal(pooled, null_pooled)  # so the row order below is checked
    want_context = torch.cat([text.expand(k, -1, -1), null.expand(k, -1, -1)])
    want_pooled = torch.cat([pooled.expand(k, -1), null_pooled.expand(k, -1)])
    assert len(calls) == steps
    for call in calls:
        assert call["batch"] == 2 * k
        torch.testing.assert_close(call["context"], want_context, rtol=0, atol=0)
        torch.testing.assert_close(call["text_embeds"], want_pooled, rtol=0, atol=0)
        assert call["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * (2 * k)


def test_sdxl_edit_sends_pooled_embeddings_and_size_ids_and_keeps_the_background(weights):
    guide = make(weights, "sdxl")
    assert guide.backend.is_sdxl and not guide.image_conditioned
    req = sdxl_request()
    result, calls = recorded_edit(guide, req)
    check_sdxl_calls(guide, calls, k=1, steps=6)  # 8 steps, 25% skipped
    out = np.asarray(result.image, dtype=int)
    src = np.asarray(req.images[0], dtype=int)
    inside = np.asarray(req.masks[0]) > 0
    assert out.shape == src.shape == (64, 64, 3)
    assert np.abs(out - src)[~inside].max() == 0
    assert np.abs(out - src)[inside].mean() > 1.0  # the region was regenerated


def test_sdxl_candidates_with_clip_guidance_and_ranking(weights, clip_files):
    guide = make(weights, "sdxl", candidates=2, rank=True, clip_guidance_scale=2000.0, augmentations=2,
                 **clip_files)
    losses = []
    original = guide.guidance_loss
    guide.guidance_loss = lambda x0, st: (losses.append(1), original(x0, st))[1]
    req = sdxl_request()
    result, calls = recorded_edit(guide, req)
    assert len(losses) == 6  # CLIP guidance at every sampled step, through the SDXL UNet
    check_sdxl_calls(guide, calls[:1], k=2, steps=1)
    assert len(calls) == 6 and all(c["batch"] == 4 for c in calls)
    (group,) = result.candidates
    scores = [c.score for c in group]
    assert len(group) == 2 and scores == sorted(scores, reverse=True) and len(set(scores)) == 2
    assert result.image is group[0].image
    src = np.asarray(req.images[0], dtype=int)
    inside = np.asarray(req.masks[0]) > 0
    a, b = (np.asarray(c.image, dtype=int) for c in group)
    assert np.abs(a - src)[~inside].max() == 0 and np.abs(b - src)[~inside].max() == 0
    assert np.abs(a - b)[inside].mean() > 0.5  # two different samples


def test_unset_text_scale_is_the_reference_of_the_pipeline(weights, tmp_path):
    req = sdxl_request()
    assert make(weights, "sdxl").prepare(req).text_scale == 5.0  # Blended Latent Diffusion's SDXL script
    assert make(weights, "t2i").prepare(req).text_scale == 7.5  # its SD2 script
    assert make(weights, "sdxl", text_scale=6.0).prepare(req).text_scale == 6.0
    recommended = shutil.copytree(weights["sdxl"], tmp_path / "sdxl")
    (recommended / "editkit_sampling.json").write_text(json.dumps({"text_scale": 3.0}))
    assert make({"sdxl": str(recommended)}, "sdxl").prepare(req).text_scale == 3.0  # the weights' recommendation


def test_shared_weights_can_recommend_blended_its_own_scales(weights, tmp_path):
    """editkit_sampling.json's "guides" entry: blended takes its own image scale and steps from the ip2p folder it
    shares, ip2p keeps the folder's; a malformed entry is a one-line load error."""
    from editkit.errors import GuideLoadError
    from editkit_ip2p import InstructPix2PixGuide

    folder = shutil.copytree(weights["ip2p"], tmp_path / "shared")
    (folder / "editkit_sampling.json").write_text(json.dumps(
        {"text_scale": 1.5, "image_scale": 2.0, "steps": 10,
         "guides": {"blended": {"image_scale": 1.25, "steps": 6, "_measured": "x"}}}))
    req = request()
    blended = BlendedGuide(model=str(folder), candidates=1, rank=False, progress=False)
    blended.load(BackendCache())
    cond = blended.prepare(req)
    assert (cond.text_scale, cond.image_scale) == (1.5, 1.25)
    assert blended.sampling_options()["steps"] == 6
    assert make({"x": str(folder)}, "x", image_scale=3.0).prepare(req).image_scale == 3.0  # a set option wins
    ip2p = InstructPix2PixGuide(model=str(folder), progress=False)
    ip2p.load(BackendCache())
    cond = ip2p.prepare(req)
    assert (cond.text_scale, cond.image_scale) == (1.5, 2.0) and ip2p.sampling_options()["steps"] == 10
    for bad in ({"guides": ["blended"]}, {"guides": {"blended": {"steps": 0}}}):
        (folder / "editkit_sampling.json").write_text(json.dumps(bad))
        with pytest.raises(GuideLoadError, match="editkit_sampling.json") as info:
            BlendedGuide(model=str(folder)).load(BackendCache())
        assert "\n" not in str(info.value)
