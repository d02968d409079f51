"""Shared latent-diffusion backend: guidance, modes, hooks, inversion, batching, sizes, loading."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from editkit.backend import LatentDiffusionBackend, load_components
from editkit.backend.denoiser import Denoiser
from editkit.backend.tiny import save_components, tiny_components, tiny_sdxl_components
from editkit.guide import Guide
from editkit.types import Conditioning, EditRequest


@pytest.fixture(scope="module")
def backend() -> LatentDiffusionBackend:
    return LatentDiffusionBackend(tiny_components(0))


@pytest.fixture(scope="module")
def backend4() -> LatentDiffusionBackend:
    return LatentDiffusionBackend(tiny_components(1, in_channels=4))


def image(seed: int = 0, size=(32, 32)) -> Image.Image:
    arr = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr)


def ip2p_cond(backend, prompts, **kw) -> Conditioning:
    return Conditioning(cond=backend.encode_text(prompts), null=backend.encode_text([""]), mode="ip2p", **kw)


class CountingUNet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.inner = unet
        self.calls: list[tuple[int, bool]] = []
        self.added: list[dict | None] = []  # the added_cond_kwargs of each call
        self.config = unet.config

    def forward(self, x, t, **kw):
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        self.added.append(kw.get("added_cond_kwargs"))
        return self.inner(x, t, **kw)


def test_dual_guidance_matches_three_separate_calls(backend):
    torch.manual_seed(0)
    lat = torch.randn(2, 4, 4, 4)
    src = torch.randn(2, 4, 4, 4)
    cond = ip2p_cond(backend, ["make the red circle blue", "remove the star"], text_scale=6.0, image_scale=1.7)
    den = Denoiser(backend.unet, cond, src, 2, backend.device, backend.dtype)
    t = torch.tensor(500)
    with torch.inference_mode():
        got = den(lat, t)
        unet = backend.unet
        n = cond.null.expand(2, -1, -1)
        e_c = unet(torch.cat([lat, src], 1), t, encoder_hidden_states=cond.cond).sample
        e_i = unet(torch.cat([lat, src], 1), t, encoder_hidden_states=n).sample
        e_u = unet(torch.cat([lat, torch.zeros_like(src)], 1), t, encoder_hidden_states=n).sample
    want = e_u + 6.0 * (e_c - e_i) + 1.7 * (e_i - e_u)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_one_batched_unet_call_per_step_and_no_autograd(backend):
    counting = CountingUNet(backend.unet)
    original = backend.unet
    backend.unet = counting
    try:
        req = EditRequest(images=[image(1), image(2)], instructions=["make it blue"], seed=0)
        backend.generate(ip2p_cond(backend, req.instructions), req, steps=7, progress=False)
    finally:
        backend.unet = original
    assert len(counting.calls) == 7
    assert all(b == 6 for b, _ in counting.calls)  # 3 branches x 2 images in one call
    assert not any(grad for _, grad in counting.calls)


def test_guide_null_is_used_not_the_empty_prompt(backend):
    req = EditRequest(images=[image(3)], instructions=["make it blue"], seed=5)
    a = backend.generate(ip2p_cond(backend, req.instructions), req, steps=4, progress=False)[0]
    other = Conditioning(cond=backend.encode_text(req.instructions), null=torch.randn(1, 16, 32), mode="ip2p")
    b = backend.generate(other, req, steps=4, progress=False)[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "euler_ancestral", "dpmpp_2m"])
def test_same_seed_byte_identical_and_size_kept(backend, scheduler):
    src = image(4, size=(37, 29))  # not a multiple of the VAE factor
    req = EditRequest(images=[src], instructions=["make the star red"], seed=11)
    cond = ip2p_cond(backend, req.instructions)
    a = backend.generate(cond, req, steps=5, scheduler=scheduler, progress=False)[0]
    b = backend.generate(cond, req, steps=5, scheduler=scheduler, progress=False)[0]
    assert a.size == (37, 29)
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    c = backend.generate(cond, EditRequest(images=[src], instructions=req.instructions, seed=12), steps=5,
                         scheduler=scheduler, progress=False)[0]
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_per_sample_seeds_do_not_depend_on_batching(backend):
    imgs = [image(5), image(6)]
    req = EditRequest(images=imgs, instructions=["make it red", "remove the star"], seed=20)
    both = backend.generate(ip2p_cond(backend, req.instructions), req, steps=4, progress=False)
    single = EditRequest(images=[imgs[1]], instructions=["remove the star"], seed=21)
    alone = backend.generate(ip2p_cond(backend, single.instructions), single, steps=4, progress=False)[0]
    diff = np.abs(np.asarray(both[1], dtype=int) - np.asarray(alone, dtype=int)).max()
    assert diff <= 1


def test_sdedit_starts_part_way_from_the_noised_source(backend4):
    counting = CountingUNet(backend4.unet)
    original = backend4.unet
    backend4.unet = counting
    src = image(7)
    try:
        cond = Conditioning(cond=backend4.encode_text(["a red circle"]), null=backend4.encode_text([""]),
                            mode="sdedit", strength=0.3, text_scale=3.0)
        req = EditRequest(images=[src], instructions=["a red circle"], seed=1)
        out = backend4.generate(cond, req, steps=10, progress=False)[0]
    finally:
        backend4.unet = original
    assert len(counting.calls) == 3  # 30% of 10 steps
    assert all(b == 2 for b, _ in counting.calls)  # two-branch CFG in one call
    # Low strength keeps the image close to the VAE reconstruction of the source.
    recon = backend4.decode(backend4.encode(backend4.images_to_tensor([src])[0], scaled=True))
    from editkit.backend.images import tensor_to_pil

    ref = np.asarray(tensor_to_pil(recon)[0], dtype=float)
    far = np.asarray(backend4.generate(
        Conditioning(cond=cond.cond, null=cond.null, mode="noise", text_scale=3.0), req, steps=10, progress=False
    )[0], dtype=float)
    assert np.abs(np.asarray(out, dtype=float) - ref).mean() < np.abs(far - ref).mean()


class BlendHook(Guide):
    name = "blend-test"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def prepare(self, request):  # pragma: no cover - not used
        raise NotImplementedError

    def on_step(self, state):
        self.calls += 1
        return torch.zeros_like(state.latents)


class GradHook(Guide):
    name = "grad-test"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def prepare(self, request):  # pragma: no cover - not used
        raise NotImplementedError

    def guidance_loss(self, pred_x0, state):
        self.calls += 1
        return 100.0 * pred_x0.pow(2).mean()


def test_step_hook_replaces_latents_and_callback_sees_every_step(backend4):
    hook = BlendHook()
    seen = []
    cond = Conditioning(cond=backend4.encode_text(["a star"]), mode="noise")
    req = EditRequest(images=[image(8)], instructions=["a star"], seed=0)
    lat = backend4.sample(cond, [0], height=32, width=32, hooks=hook, steps=6, progress=False,
                          callback=lambda s: seen.append(s.step))
    assert hook.calls == 6 and seen == list(range(6))
    assert torch.count_nonzero(lat) == 0


def test_gradient_guidance_changes_the_result_only_when_asked(backend4):
    cond = Conditioning(cond=backend4.encode_text(["a star"]), mode="noise")
    plain = backend4.sample(cond, [3], height=32, width=32, steps=5, progress=False)
    hook = GradHook()
    guided = backend4.sample(cond, [3], height=32, width=32, steps=5, progress=False, hooks=hook)
    assert hook.calls == 5
    # The loss pulls x0 towards zero: the guided latents have a smaller norm.
    assert guided.norm() < plain.norm()
    with pytest.raises(ValueError, match="ddim or ddpm"):
        backend4.sample(cond, [3], height=32, width=32, steps=2, progress=False, hooks=hook,
                        scheduler="euler_ancestral")


def test_ddim_inversion_round_trip():
    # A random UNet's noise prediction is not smooth in x (inversion of an untrained model diverges);
    # shrinking its output layer gives a smooth, still input-dependent predictor.
    comps = tiny_components(1, in_channels=4)
    with torch.no_grad():
        comps.unet.conv_out.weight.mul_(0.1)
        comps.unet.conv_out.bias.mul_(0.1)
    backend4 = LatentDiffusionBackend(comps)
    torch.manual_seed(0)
    x0 = backend4.encode(backend4.images_to_tensor([image(9)])[0], scaled=True)
    x0 = x0 / x0.std()  # unit-variance latents, as a trained VAE's scaling factor gives
    text = backend4.encode_text(["a red circle"])
    noise = backend4.invert(x0, text, steps=50)
    # It really travelled to the noise end of the schedule: far from the clean latents.
    assert (noise - x0).abs().mean() > 0.3 * x0.abs().mean()
    cond = Conditioning(cond=text, mode="noise", init_latents=noise)
    back = backend4.sample(cond, [0], height=32, width=32, steps=50, scheduler="ddim", progress=False)
    err = (back - x0).abs().mean() / x0.abs().mean()
    assert err < 0.05, err


def test_precomputed_embeddings_of_any_length(backend):
    req = EditRequest(images=[image(10)], instructions=["x"], seed=0)
    cond = Conditioning(cond=torch.randn(1, 77, 32), null=torch.zeros(1, 77, 32), mode="ip2p")
    out = backend.generate(cond, req, steps=3, progress=False)
    assert out[0].size == (32, 32)


def test_candidates_in_one_batch(backend):
    req = EditRequest(images=[image(11)], instructions=["make it red"], seed=2)
    outs = backend.generate(ip2p_cond(backend, req.instructions), req, steps=3, progress=False, num_candidates=3)
    assert len(outs) == 3
    assert len({np.asarray(o).tobytes() for o in outs}) == 3


def test_folder_round_trip_is_bit_identical(tmp_path, backend):
    save_components(tiny_components(0), tmp_path / "w")
    loaded = LatentDiffusionBackend(load_components(tmp_path / "w"))
    req = EditRequest(images=[image(12)], instructions=["make it red"], seed=4)
    a = backend.generate(ip2p_cond(backend, req.instructions), req, steps=3, progress=False)[0]
    b = loaded.generate(ip2p_cond(loaded, req.instructions), req, steps=3, progress=False)[0]
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert (tmp_path / "w" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_missing_weights_are_a_clear_error(tmp_path):
    from editkit.errors import GuideLoadError

    with pytest.raises(GuideLoadError, match="no 'unet/' folder"):
        load_components(tmp_path)


def test_v_prediction_zero_snr_schedule_samples_and_guides():
    from editkit.backend.tiny import EDITWORLD_SCHEDULER_CONFIG

    comps = tiny_components(2, in_channels=4)
    comps.scheduler_config = dict(EDITWORLD_SCHEDULER_CONFIG, _class_name="DDIMScheduler")
    b = LatentDiffusionBackend(comps)
    cond = Conditioning(cond=b.encode_text(["a star"]), mode="noise")
    plain = b.sample(cond, [3], height=32, width=32, steps=5, scheduler="auto", progress=False)
    assert torch.isfinite(plain).all()
    hook = GradHook()
    guided = b.sample(cond, [3], height=32, width=32, steps=5, progress=False, hooks=hook)
    assert hook.calls == 5 and guided.norm() < plain.norm()


def test_dpm_solver_converges_faster_than_ddim_on_the_zero_snr_v_schedule():
    """DPM-Solver++(2M) is second order: at 8 steps it lands far nearer the 200-step DDIM solution of the same ODE
    than 8 DDIM steps do (the EditWorld schedule: v-prediction, zero terminal SNR, trailing timesteps)."""
    from editkit.backend.schedulers import make_scheduler
    from editkit.backend.tiny import EDITWORLD_SCHEDULER_CONFIG

    sched = make_scheduler("dpmpp_2m", EDITWORLD_SCHEDULER_CONFIG)
    assert type(sched).__name__ == "DPMSolverMultistepScheduler"
    assert (sched.config.algorithm_type, sched.config.solver_order, sched.config.prediction_type) == \
        ("dpmsolver++", 2, "v_prediction")
    comps = tiny_components(2, in_channels=4)
    comps.scheduler_config = dict(EDITWORLD_SCHEDULER_CONFIG, _class_name="DDIMScheduler")
    b = LatentDiffusionBackend(comps)
    cond = Conditioning(cond=b.encode_text(["a star"]), mode="noise")

    def run(scheduler, steps):
        return b.sample(cond, [3], height=32, width=32, steps=steps, scheduler=scheduler, progress=False)

    exact = run("ddim", 200)
    err_ddim, err_dpm = (float((run(s, 8) - exact).norm() / exact.norm()) for s in ("ddim", "dpmpp_2m"))
    assert err_dpm < 0.7 * err_ddim, (err_dpm, err_ddim)  # measured 0.078 against 0.149


def test_auto_scheduler_follows_the_checkpoint():
    from editkit.backend.schedulers import make_scheduler

    assert type(make_scheduler("auto", {"_class_name": "EulerAncestralDiscreteScheduler"})).__name__ == \
        "EulerAncestralDiscreteScheduler"
    assert type(make_scheduler("auto", {})).__name__ == "DDIMScheduler"


def test_candidates_keep_a_shared_start_latent(backend4):
    # One start latent shared by K candidates is kept (not dropped): deterministic DDIM from the same
    # start gives the same image for every candidate.
    cond = Conditioning(cond=backend4.encode_text(["a star"]), mode="noise", init_latents=torch.randn(1, 4, 16, 16))
    req = EditRequest(images=[image(13)], instructions=["a star"], seed=5)
    outs = backend4.generate(cond, req, steps=3, scheduler="ddim", progress=False, num_candidates=2)
    assert np.asarray(outs[0]).tobytes() == np.asarray(outs[1]).tobytes()


# ------------------------------------------------------------------ SDXL-shaped UNets (two text encoders, text_time)
@pytest.fixture(scope="module")
def sdxl() -> LatentDiffusionBackend:
    return LatentDiffusionBackend(tiny_sdxl_components(0))


def sdxl_cond(backend, prompts, negative="", **kw) -> Conditioning:
    (text, pooled), (null, null_pooled) = backend.encode_prompts(prompts), backend.encode_prompts([negative])
    kw.setdefault("mode", "noise")
    return Conditioning(cond=text, null=null, extra={"text_embeds": pooled, "null_text_embeds": null_pooled}, **kw)


def counted(backend, run):
    """Run ``run()`` with the backend's UNet wrapped in a call counter; return (the counter, run's result)."""
    counting = CountingUNet(backend.unet)
    original, backend.unet = backend.unet, counting
    try:
        return counting, run()
    finally:
        backend.unet = original


def test_sdxl_folder_round_trips_with_both_text_encoders(tmp_path, sdxl):
    save_components(tiny_sdxl_components(0), tmp_path / "w")
    assert (tmp_path / "w" / "text_encoder_2" / "model.safetensors").is_file()
    comps = load_components(tmp_path / "w")
    assert type(comps.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert comps.tokenizer_2 is not None
    loaded = LatentDiffusionBackend(comps)
    assert loaded.is_sdxl and not LatentDiffusionBackend(tiny_components(0)).is_sdxl
    a, b = sdxl.encode_prompts(["make it red"]), loaded.encode_prompts(["make it red"])
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)  # the loaded projection's matmul may round differently
    req = EditRequest(images=[image(20)], instructions=["make it red"], seed=1)
    out_a = sdxl.generate(sdxl_cond(sdxl, req.instructions), req, steps=2, progress=False)[0]
    out_b = loaded.generate(sdxl_cond(loaded, req.instructions), req, steps=2, progress=False)[0]
    assert np.abs(np.asarray(out_a, dtype=int) - np.asarray(out_b, dtype=int)).max() <= 1
    # a plain folder loads no second encoder
    save_components(tiny_components(0), tmp_path / "plain")
    assert load_components(tmp_path / "plain").text_encoder_2 is None


def test_sdxl_prompts_are_both_penultimate_layers_and_the_pooled_projection(sdxl, backend4):
    prompts = ["make the red circle blue", "a star"]
    text, pooled = sdxl.encode_prompts(prompts)
    assert text.shape == (2, 16, 32 + 48) and pooled.shape == (2, 16)
    with torch.inference_mode():
        ids = [tok(prompts, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
               for tok in (sdxl.tokenizer, sdxl.tokenizer_2)]
        first = sdxl.text_encoder(ids[0], output_hidden_states=True)
        second = sdxl.text_encoder_2(ids[1], output_hidden_states=True)
    torch.testing.assert_close(text, torch.cat([first.hidden_states[-2], second.hidden_states[-2]], -1), rtol=0, atol=0)
    torch.testing.assert_close(pooled, second.text_embeds, rtol=0, atol=0)
    assert not torch.allclose(text[..., :32], first.last_hidden_state, atol=1e-3)  # not the last layer
    assert torch.equal(sdxl.encode_text(prompts), text)
    # other UNets: the last layer of the one encoder, no pooled embedding (what encode_text always returned)
    plain, none = backend4.encode_prompts(prompts)
    with torch.inference_mode():
        last = backend4.text_encoder(backend4.tokenizer(prompts, padding="max_length", max_length=16, truncation=True,
                                                        return_tensors="pt").input_ids)[0]
    assert none is None and torch.equal(plain, last)


def test_sdxl_guidance_matches_separate_calls_with_pooled_and_time_ids(sdxl):
    torch.manual_seed(0)
    lat = torch.randn(2, 4, 8, 12)
    cond = sdxl_cond(sdxl, ["a red circle", "a blue star"], negative="a square", text_scale=4.0)
    den = Denoiser(sdxl.unet, cond, None, 2, sdxl.device, sdxl.dtype, pixel_size=(16, 24))
    t = torch.tensor(500)
    ids = torch.tensor([[16.0, 24.0, 0.0, 0.0, 16.0, 24.0]] * 2)
    assert torch.equal(sdxl.sdxl_added_cond(cond.extra["null_text_embeds"], 16, 24, 2)["time_ids"], ids)
    with torch.inference_mode():
        got = den(lat, t)
        e_c = sdxl.unet(lat, t, encoder_hidden_states=cond.cond,
                        added_cond_kwargs={"text_embeds": cond.extra["text_embeds"], "time_ids": ids}).sample
        e_u = sdxl.unet(lat, t, encoder_hidden_states=cond.null.expand(2, -1, -1),
                        added_cond_kwargs=sdxl.sdxl_added_cond(cond.extra["null_text_embeds"], 16, 24, 2)).sample
    torch.testing.assert_close(got, e_u + 4.0 * (e_c - e_u), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp_2m"])  # ddim: the fused loop; dpmpp_2m: the scheduler loop
def test_sdxl_sampling_sends_pooled_embeddings_and_sizes_in_one_call(sdxl, scheduler):
    req = EditRequest(images=[image(21, size=(37, 29)), image(22, size=(37, 29))], instructions=["a red circle"],
                      seed=3)
    cond = sdxl_cond(sdxl, ["a red circle", "a blue star"], text_scale=3.0)
    counter, out = counted(sdxl, lambda: sdxl.generate(cond, req, steps=3, scheduler=scheduler, progress=False))
    assert out[0].size == (37, 29)
    assert [b for b, _ in counter.calls] == [4, 4, 4]  # 2 branches x 2 images, one call per step
    added = counter.added[-1]
    want = torch.cat([cond.extra["text_embeds"], cond.extra["null_text_embeds"].expand(2, -1)])
    torch.testing.assert_close(added["text_embeds"], want, rtol=0, atol=0)
    # padded to the VAE factor: 30 x 38 pixels, (original size, crop top-left, target size) as (H, W)
    assert added["time_ids"].tolist() == [[30.0, 38.0, 0.0, 0.0, 30.0, 38.0]] * 4
    # the pooled embedding reaches the UNet: another one (same token states) gives another image
    other = Conditioning(**{**cond.__dict__, "extra": {**cond.extra, "text_embeds": sdxl.encode_prompts(
        ["a square", "a green triangle"])[1]}})
    changed = sdxl.generate(other, req, steps=3, scheduler=scheduler, progress=False)
    assert not np.array_equal(np.asarray(out[0]), np.asarray(changed[0]))


def test_sdxl_ip2p_three_branches_and_candidates():
    b = LatentDiffusionBackend(tiny_sdxl_components(1, in_channels=8))
    req = EditRequest(images=[image(23), image(24)], instructions=["make it red", "remove the star"], seed=0)
    cond = sdxl_cond(b, req.instructions, mode="ip2p")
    counter, outs = counted(b, lambda: b.generate(cond, req, steps=2, progress=False, num_candidates=2))
    assert len(outs) == 4 and len({np.asarray(o).tobytes() for o in outs}) == 4
    assert [n for n, _ in counter.calls] == [12, 12]  # 3 branches x 2 images x 2 candidates
    p, n = cond.extra["text_embeds"], cond.extra["null_text_embeds"]
    want = torch.cat([p.repeat_interleave(2, 0), n.expand(4, -1), n.expand(4, -1)])  # candidates adjacent
    torch.testing.assert_close(counter.added[0]["text_embeds"], want, rtol=0, atol=0)
    assert counter.added[0]["time_ids"].shape == (12, 6)


def test_sdxl_without_pooled_embeddings_is_a_clear_error(sdxl):
    text, _ = sdxl.encode_prompts(["a star"])
    null, null_pooled = sdxl.encode_prompts([""])
    with pytest.raises(ValueError, match=r"SDXL-shaped.*needs extra\['text_embeds'\]"):
        sdxl.sample(Conditioning(cond=text, null=null, mode="noise"), [0], height=16, width=16, steps=1,
                    progress=False)
    with pytest.raises(ValueError, match=r"extra\['null_text_embeds'\]"):
        sdxl.sample(Conditioning(cond=text, null=null, mode="noise", extra={"text_embeds": null_pooled}), [0],
                    height=16, width=16, steps=1, progress=False)


def test_sdxl_inversion_takes_the_added_conditioning(sdxl):
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    null, pooled = sdxl.encode_prompts([""])
    other = sdxl.encode_prompts(["a star"])[1]
    a, b = (sdxl.invert(x0, null, steps=3, unet_kwargs={"added_cond_kwargs": sdxl.sdxl_added_cond(p, 16, 16, 1)})
            for p in (pooled, other))
    assert torch.isfinite(a).all() and not torch.allclose(a, b)



def test_sdxl_hub_ids_are_detected_from_their_model_index(monkeypatch):
    from diffusers import DiffusionPipeline

    from editkit.backend.components import _has_second_text_encoder

    index = {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer_2": ["transformers", "X"]}
    monkeypatch.setattr(DiffusionPipeline, "load_config", classmethod(lambda cls, src: index))
    assert _has_second_text_encoder("org/sdxl")
    index["text_encoder_2"] = [None, None]  # listed but absent (e.g. a refiner's first encoder)
    assert not _has_second_text_encoder("org/sdxl")

    def unreadable(cls, src):
        raise OSError("offline")

    monkeypatch.setattr(DiffusionPipeline, "load_config", classmethod(unreadable))
    assert not _has_second_text_encoder("org/sdxl")


def test_word_tokenizers_drop_punctuation_their_vocabulary_lacks():
    """A trailing period (MGIE's cleaned expressive instruction ends with one) must not become an unknown token
    the tiny text encoder never saw; punctuation the vocabulary has, and reference tokens, stay."""
    from transformers import AutoTokenizer

    from editkit.backend.components import resolve_source
    from editkit.backend.tiny import word_tokenizer

    tok = word_tokenizer(["make", "it", "brighter", ",", "[image1]"])
    assert tok("Make it brighter.").input_ids == tok("make it brighter").input_ids
    assert tok.tokenize("make it, [image1]!") == ["make", "it", ",", "[image1]"]
    assert tok.tokenize("make it ?x") == ["make", "it", "<unk>"]  # unknown words still show
    committed = AutoTokenizer.from_pretrained(Path(resolve_source("editworld")) / "tokenizer")
    text = "replace the large red square at the top left with a large red circle"
    assert committed(text + ".").input_ids == committed(text).input_ids
    assert committed.unk_token_id not in committed(text).input_ids
