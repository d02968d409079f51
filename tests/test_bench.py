"""``editkit bench`` on the tiny random plumbing shapes, and editkit's ip2p against diffusers' own pipeline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from editkit import api
from editkit.bench.runner import BenchSpec, diffusers_pipeline, load_guide, run_bench, table
from editkit.cli import main


@pytest.fixture(autouse=True)
def fresh_cache():
    yield
    api.clear_cache()
    api.backend_cache().clear()


def test_bench_reports_medians_stages_memory_and_the_diffusers_ratio():
    spec = BenchSpec(guide="ip2p", size="test", steps=2, batch_sizes=[1, 2], repeats=2, warmup=1, compare="diffusers",
                     fast=True)
    result = run_bench(spec, log=lambda _line: None)
    assert [r["batch"] for r in result["results"]] == [1, 2]
    for row in result["results"]:
        e, d = row["editkit"], row["diffusers"]
        assert len(e["runs_s"]) == 2 and len(e["warmup_s"]) == 1 and e["median_s"] > 0
        assert {"prepare", "encode", "denoise", "decode"} <= set(e["stages_median_s"])
        assert e["stages_median_s"]["denoise"] <= e["median_s"]
        assert row["ratio_to_diffusers"] == pytest.approx(e["median_s"] / d["median_s"], abs=1e-3)
        assert e["peak_rss_gb"] > 0
    assert result["environment"]["parameters"]["unet"] > 0
    assert "| 2 |" in table(result)
    assert result["guide_options"]["fuse_qkv"] and result["guide_options"]["channels_last"]


def test_bench_gives_a_guide_that_needs_a_mask_the_samples_edit_masks():
    from editkit.bench.runner import inputs

    spec = BenchSpec(guide="blended", size="tiny", steps=2, repeats=1, warmup=0, options={"candidates": 2})
    images, _, masks = inputs(spec, 2)
    assert [m.size for m in masks] == [im.size for im in images] and all(np.asarray(m).any() for m in masks)
    result = run_bench(spec, log=lambda _line: None)  # blended refuses an edit without a mask
    assert {"denoise", "rank"} <= set(result["results"][0]["editkit"]["stages_median_s"])


def test_bench_without_steps_times_what_an_edit_runs_the_weights_recommendation():
    """No --steps: the committed weights' recommended steps, as `editkit edit` runs them, reported in the result."""
    lines: list[str] = []
    result = run_bench(BenchSpec(guide="ip2p", size="tiny", repeats=1, warmup=0), log=lines.append)
    assert result["steps"] == 10 and result["spec"]["steps"] is None and "steps" not in result["spec"]["options"]
    assert lines[0] == "ip2p: 10 sampling steps (the weights' recommendation)"
    assert run_bench(BenchSpec(guide="ip2p", size="test", steps=3, repeats=1, warmup=0), log=lambda _l: None)["steps"] == 3


def test_bench_mgie_random_decodes_exactly_the_requested_tokens():
    spec = BenchSpec(guide="mgie", size="test", steps=2, new_tokens=7, repeats=1, warmup=0)
    guide = load_guide(spec)
    img = Image.fromarray(np.zeros((32, 32, 3), np.uint8))
    out = guide.mllm.run([img, img], ["make it blue", "remove the red circle at the top left"],
                         **guide.generation_options())
    prompt = guide.mllm.batch([img, img], ["make it blue", "remove the red circle at the top left"])["input_ids"]
    assert out.sequences.shape[1] - prompt.shape[1] == 7 and out.found == [False, False]
    result = run_bench(spec, log=lambda _line: None)
    stages = result["results"][0]["editkit"]["stages_median_s"]
    assert {"llm", "edit_head", "denoise", "decode"} <= set(stages)
    assert result["environment"]["parameters"]["llm"] > 0


def test_ip2p_guide_equals_diffusers_pipeline_on_the_same_modules():
    """Same UNet/VAE/text encoder, same start noise, DDIM: editkit's ip2p (fused sampler, batched branches)
    reproduces StableDiffusionInstructPix2PixPipeline's latents."""
    from editkit.backend.diffusion import _randn
    from editkit.backend.speed import SpeedOptions, apply
    from editkit.types import EditRequest

    guide = load_guide(BenchSpec(guide="ip2p", size="test", steps=4, fast=False))
    backend = guide.backend
    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    prompts = ["make the red circle blue", "remove the star"]
    request = EditRequest(images=images, instructions=prompts, seed=5)
    cond = guide.prepare(request)
    apply(backend, SpeedOptions())
    pixels, _ = backend.images_to_tensor(images)
    ours = backend.sample(cond, request.seeds(), height=32, width=32, source_latents=backend.encode(pixels, scaled=False),
                          steps=4, scheduler="ddim", progress=False)
    noise = _randn(ours.shape, [torch.Generator().manual_seed(s) for s in request.seeds()])
    pipe = diffusers_pipeline(backend, "ddim")
    theirs = pipe(prompt=prompts, image=images, num_inference_steps=4, guidance_scale=7.5, image_guidance_scale=1.5,
                  latents=noise, output_type="latent").images
    assert theirs.abs().max() > 0.1
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_bench_cli_writes_json_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--guide", "ip2p", "--size", "test", "--steps", "1", "--repeats", "1", "--warmup", "0",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["spec"]["steps"] == 1 and data["results"][0]["editkit"]["median_s"] > 0
    # on CPU the default times the guide's own defaults; --fast turns the fast paths on
    assert not data["spec"]["fast"] and not data["guide_options"]["channels_last"]
    assert main(["bench", "--guide", "ip2p", "--size", "test", "--steps", "1", "--repeats", "1", "--warmup", "0",
                 "--fast", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["guide_options"]["channels_last"] and data["guide_options"]["fuse_qkv"]
    assert "| batch |" in capsys.readouterr().out
    for argv, message in [
        (["--batch", "1,x"], "--batch expects integers"),
        (["--size", "huge"], "bench: size"),
        (["--batch", "0"], "batch sizes must be between 1 and 256"),
        (["--guide", "tonal", "--size", "full"], "has no random-weight 'full' architecture"),
        (["--json", str(tmp_path / "no" / "x.json")], "does not exist"),
    ]:
        assert main(["bench", "--steps", "1", "--repeats", "1", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("editkit: error:") and message in err and len(err.splitlines()) == 1


def test_full_size_architectures_have_the_released_parameter_counts():
    """Built on the meta device (no memory): the shapes bench --size full times are the released ones."""
    from editkit_mgie.random_arch import build

    from editkit.backend.architectures import parameter_count, random_components

    comps = random_components("sd15", in_channels=8, device="meta")
    # SD1.5 UNet 859,520,964 + 4 extra input channels x 320 x 3 x 3; SD VAE; CLIP ViT-L/14 text
    assert parameter_count(comps.unet) == 859_532_484
    assert parameter_count(comps.vae) == 83_653_863
    assert parameter_count(comps.text_encoder) == 123_060_480
    parts = build("7b", "meta", torch.float16)
    model = parts["mllm"].model
    # LLaMA-7B blocks + 32011-row embeddings (32000 + 3 LLaVA + 8 [IMG]); CLIP ViT-L/14 vision tower
    assert parameter_count(model.model.language_model) == 6_607_388_672
    assert parameter_count(model.model.vision_tower) == 303_179_776
    assert model.get_input_embeddings().weight.shape == (32011, 4096) and parts["mllm"].image_seq_length == 256
    head = parts["edit_head"].config
    assert (head.llm_dim, head.hidden, head.num_queries, head.out_dim) == (4096, 512, 77, 768)


def test_fast_paths_default_to_the_device_in_the_python_api_too():
    from editkit.bench.runner import BenchSpec

    assert BenchSpec().fast is False and BenchSpec(device="cpu").fast is False
    assert BenchSpec(device="cuda").fast is True and BenchSpec(device="cuda:1").fast is True
    assert BenchSpec(device="cuda", fast=False).fast is False and BenchSpec(fast=True).fast is True
    assert BenchSpec(fast=None, device="cuda").fast is True
