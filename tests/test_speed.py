"""Backend fast paths: each switch gives the same edit (within float tolerance) as the plain path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from editkit.backend import LatentDiffusionBackend
from editkit.backend.speed import FusedDDIM, SpeedOptions, apply
from editkit.backend.tiny import EDITWORLD_SCHEDULER_CONFIG, tiny_components
from editkit.types import Conditioning, EditRequest


def make_backend(seed: int = 0, scheduler_config: dict | None = None, **kw) -> LatentDiffusionBackend:
    comps = tiny_components(seed, **kw)
    if scheduler_config is not None:
        comps.scheduler_config = dict(scheduler_config)
    return LatentDiffusionBackend(comps)


def images(n: int = 2, size: int = 32) -> list[Image.Image]:
    rng = np.random.RandomState(0)
    return [Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def latents_of(backend, speed: SpeedOptions, *, mode: str = "ip2p", steps: int = 6, scheduler: str = "ddim",
               n: int = 2, size: int = 32) -> torch.Tensor:
    apply(backend, speed)
    req = EditRequest(images=images(n, size), instructions=["make the red circle blue", "remove the star"][:n], seed=3)
    cond = Conditioning(cond=backend.encode_text(req.instructions), null=backend.encode_text([""]), mode=mode,
                        text_scale=5.0, image_scale=1.5, strength=1.0 if mode == "ip2p" else 0.7)
    pixels, _ = backend.images_to_tensor(req.images)
    source = backend.encode(pixels, scaled=mode == "sdedit")
    return backend.sample(cond, req.seeds(), height=size, width=size, source_latents=source, steps=steps,
                          scheduler=scheduler, progress=False)


PLAIN = SpeedOptions(fused_sampler=False)


@pytest.mark.parametrize("schedule", ["epsilon", "zero-snr-v"])
def test_fused_ddim_matches_the_diffusers_scheduler(schedule):
    backend = make_backend(0, EDITWORLD_SCHEDULER_CONFIG if schedule == "zero-snr-v" else None)
    ref = latents_of(backend, PLAIN)
    got = latents_of(backend, SpeedOptions(fused_sampler=True))
    assert ref.abs().max() > 0.1  # a real sample, not zeros
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-5)


def test_fused_ddim_two_branch_cfg_and_sdedit_start():
    backend = make_backend(1, in_channels=4)
    ref = latents_of(backend, PLAIN, mode="sdedit")
    got = latents_of(backend, SpeedOptions(), mode="sdedit")
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-5)


def test_fused_ddim_coefficients_reproduce_one_scheduler_step():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(EDITWORLD_SCHEDULER_CONFIG)
    sched.set_timesteps(10)
    fused = FusedDDIM(sched, sched.timesteps)
    x, out = torch.randn(1, 4, 4, 4, dtype=torch.float64), torch.randn(1, 4, 4, 4, dtype=torch.float64)
    for (a, b), t in zip(fused.coefficients, sched.timesteps):
        ref = sched.step(out, t, x).prev_sample
        torch.testing.assert_close(a * x + b * out, ref, atol=1e-6, rtol=1e-6)  # scheduler tables are float32


def test_fused_sampler_is_not_used_where_the_scheduler_output_is_needed():
    backend = make_backend(0)
    apply(backend, SpeedOptions())
    seen = []
    req = EditRequest(images=images(1), instructions=["make it blue"], seed=0)
    cond = Conditioning(cond=backend.encode_text(req.instructions), null=backend.encode_text([""]), mode="ip2p")
    pixels, _ = backend.images_to_tensor(req.images)
    backend.sample(cond, req.seeds(), height=32, width=32, source_latents=backend.encode(pixels, scaled=False),
                   steps=4, progress=False, callback=lambda state: seen.append(state.pred_x0 is not None))
    assert seen == [True] * 4  # the callback got the scheduler's x0 estimate every step


@pytest.mark.parametrize("switch", ["channels_last", "fuse_qkv"])
def test_memory_format_and_fused_qkv_keep_the_result(switch):
    backend = make_backend(2)
    ref = latents_of(backend, SpeedOptions())
    got = latents_of(backend, SpeedOptions(**{switch: True}))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    back = latents_of(backend, SpeedOptions())  # switching off restores the plain models
    torch.testing.assert_close(back, ref, atol=1e-6, rtol=1e-6)


def test_fuse_qkv_really_fuses_and_unfuses():
    backend = make_backend(2)
    apply(backend, SpeedOptions(fuse_qkv=True))
    names = {type(p).__name__ for p in backend.unet.attn_processors.values()}
    assert names == {"FusedAttnProcessor2_0"}
    apply(backend, SpeedOptions())
    assert {type(p).__name__ for p in backend.unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_fuse_qkv_keeps_ip_adapter_cross_attention_and_its_result():
    """A UNet with IP-Adapter image tokens (any2pix): the plain attentions are fused, the adapter's decoupled
    cross-attention keeps its processor, and the UNet's output is the same."""
    from editkit_any2pix.layout import attach_adapter, random_adapter

    backend = make_backend(5, in_channels=4)
    unet = backend.unet
    attach_adapter(unet, random_adapter(unet, embed_dim=16, seed=1), scale=1.0)
    gen = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 1, 16, generator=gen)
    context = backend.encode_text(["make the red circle blue", "remove the star"])

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return unet(x, 500, encoder_hidden_states=context, added_cond_kwargs={"image_embeds": [emb]}).sample

    ref = run()
    apply(backend, SpeedOptions(fuse_qkv=True))
    kinds = [type(p).__name__ for p in unet.attn_processors.values()]
    assert set(kinds) == {"FusedAttnProcessor2_0", "IPAdapterAttnProcessor2_0"}
    assert kinds.count("IPAdapterAttnProcessor2_0") == sum(n.endswith("attn2.processor") for n in unet.attn_processors)
    torch.testing.assert_close(run(), ref, atol=1e-5, rtol=1e-5)
    apply(backend, SpeedOptions())
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0", "IPAdapterAttnProcessor2_0"}
    torch.testing.assert_close(run(), ref, atol=1e-6, rtol=1e-6)


def test_vae_tiling_runs_in_tiles_above_the_tile_size_only(monkeypatch):
    backend = make_backend(3)
    vae = backend.vae
    small = torch.rand(1, 3, 32, 32) * 2 - 1
    ref = backend.decode(backend.encode(small, scaled=True))
    apply(backend, SpeedOptions(vae_tiling=True))
    assert vae.use_tiling
    calls = []
    for name in ("_tiled_encode", "tiled_decode"):
        original = getattr(vae, name)
        monkeypatch.setattr(vae, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    # below the tile size (64 px): no tiling, the same numbers
    torch.testing.assert_close(backend.decode(backend.encode(small, scaled=True)), ref)
    assert calls == []
    big = torch.rand(1, 3, 160, 96) * 2 - 1
    out = backend.decode(backend.encode(big, scaled=True))
    assert calls == ["_tiled_encode", "tiled_decode"] and out.shape == big.shape and torch.isfinite(out).all()
    apply(backend, SpeedOptions())
    assert not vae.use_tiling


def test_guides_take_the_switches_from_their_options():
    from editkit_ip2p import InstructPix2PixGuide

    from editkit.errors import GuideConfigError

    guide = InstructPix2PixGuide(fuse_qkv=True, compile="off")
    assert guide.speed_options() == SpeedOptions(fuse_qkv=True)
    with pytest.raises(GuideConfigError, match="guide 'ip2p': option 'compile'"):
        InstructPix2PixGuide(compile="fast")


@pytest.mark.slow
def test_compiled_unet_matches_eager():
    backend = make_backend(4)
    ref = latents_of(backend, SpeedOptions(), steps=3)
    got = latents_of(backend, SpeedOptions(compile="default"), steps=3)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_mgie_static_kv_cache_gives_the_same_tokens_and_hidden_states():
    from editkit_mgie import MGIEGuide

    from editkit.backend import BackendCache

    guide = MGIEGuide(progress=False, steps=2, max_new_tokens=9)
    guide.load_random(BackendCache(), "test")
    rng = np.random.RandomState(1)
    imgs = [Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    texts = ["make it blue", "remove the red circle at the top left"]
    dynamic = guide.mllm.run(imgs, texts, max_new_tokens=9, cache="dynamic")
    static = guide.mllm.run(imgs, texts, max_new_tokens=9, cache="static")
    assert torch.equal(dynamic.sequences, static.sequences)
    torch.testing.assert_close(static.hidden, dynamic.hidden, atol=1e-5, rtol=1e-5)


def test_mgie_compiled_decode_needs_the_static_cache():
    from editkit_mgie import MGIEGuide

    from editkit.backend import BackendCache
    from editkit.errors import GuideConfigError

    with pytest.raises(GuideConfigError, match="guide 'mgie': option 'compile_llm': needs llm_cache='static'"):
        MGIEGuide(compile_llm=True).load_random(BackendCache(), "test")
