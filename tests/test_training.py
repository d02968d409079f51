"""Every training recipe runs end to end for a few steps and writes loadable safetensors weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from editkit.backend import BackendCache
from editkit.testing import contract_image
from editkit.training.ip2p import IP2PRecipe, train_ip2p
from editkit.training.vae import VAERecipe, train_vae
from editkit.types import EditRequest
from editkit_ip2p import InstructPix2PixGuide


def test_vae_then_ip2p_recipes_produce_a_working_guide(tmp_path):
    out = tmp_path / "w"
    res = train_vae(VAERecipe(out=out, steps=3, batch_size=4, pool=8), progress=False)
    assert np.isfinite(res["val_roundtrip_psnr_db"]) and res["scaling_factor"] > 0
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").is_file()

    res = train_ip2p(IP2PRecipe(out=out, steps=3, batch_size=4, pool=8), progress=False)
    assert np.isfinite(res["final_loss"])
    for sub in ("unet", "text_encoder"):
        assert any((out / sub).glob("*.safetensors"))
    record = json.loads((out / "recipe_ip2p.json").read_text())
    assert record["config"]["steps"] == 3 and record["seconds"] > 0 and record["hardware"]
    log = [json.loads(line) for line in (out / "logs" / "ip2p" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["done"] is True

    # a second run continues from the first one's weights
    more = tmp_path / "more"
    (more / "vae").parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(out / "vae", more / "vae")
    train_ip2p(IP2PRecipe(out=more, steps=1, batch_size=4, pool=8, init=out, lr=1e-12), progress=False)
    from safetensors.torch import load_file

    a = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(more / "unet" / "diffusion_pytorch_model.safetensors")
    assert all((a[k] - b[k]).abs().max() < 1e-5 for k in a)  # started from the same weights

    # --coordinates widens the continued UNet's conv_in by two zero-initialised input channels
    coords = tmp_path / "coords"
    shutil.copytree(out / "vae", coords / "vae")
    train_ip2p(IP2PRecipe(out=coords, steps=1, batch_size=4, pool=8, init=out, lr=1e-12, coordinates=True,
                          coordinate_init="zero"),
               progress=False)
    c = load_file(coords / "unet" / "diffusion_pytorch_model.safetensors")
    assert c["conv_in.weight"].shape[1] == 10 and c["conv_in.weight"][:, 8:].abs().max() < 1e-6
    torch.testing.assert_close(c["conv_in.weight"][:, :8], a["conv_in.weight"], atol=1e-5, rtol=0)
    wide = InstructPix2PixGuide(model=str(coords), steps=2, progress=False)
    wide.load(BackendCache())
    assert wide.edit(EditRequest(images=[contract_image((64, 64))], instructions=["add a red circle"])).images

    guide = InstructPix2PixGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    result = guide.edit(EditRequest(images=[contract_image((64, 64))], instructions=["make the red circle blue"]))
    assert result.images[0].size == (64, 64)


def test_clip_recipe_writes_a_clip_the_blended_guide_loads(tmp_path):
    import torch

    from editkit.backend.clip import CONFIG_NAME, WEIGHTS_NAME, load_clip
    from editkit.training.clip import ClipRecipe, region_text, region_view, train_clip

    res = train_clip(ClipRecipe(out=tmp_path / "clip", steps=3, batch_size=6, pool=12, eval_count=10), progress=False)
    assert 0.0 <= res["retrieval_top1_description"] <= 1.0 and np.isfinite(res["final_loss"])
    clip = load_clip(str(tmp_path / "clip" / CONFIG_NAME), str(tmp_path / "clip" / WEIGHTS_NAME))
    emb = clip.encode_texts(["a small blue circle"])
    assert emb.shape == (1, 64) and torch.isclose(emb.norm(), torch.tensor(1.0))
    from editkit import editworld as ew

    s = next(x for x in ew.generate("train", 20, seed=1, types="recolour"))
    view = region_view(s.target, s.mask)
    assert (view[~s.mask] == 128).all() and (view[s.mask] == s.target[s.mask]).all()
    assert region_text(s) == f"a {s.edit['result']['size']} {s.edit['result']['colour']} {s.edit['result']['kind']}"


def test_clip_hard_negatives_are_the_unedited_region_and_a_near_miss(tmp_path):
    from editkit import editworld as ew
    from editkit.training.clip import ClipRecipe, hard_negative_regions, pairs, region_view, train_clip

    samples = ew.generate("train", 12, seed=2, types=["recolour", "remove"])
    hard = hard_negative_regions(samples, np.random.default_rng(0))
    regions = pairs(samples)["description"][0]
    assert hard.shape == (len(regions), 2, 64, 64, 3) and hard.dtype == np.uint8
    with_region = [s for s in samples if s.mask.any() and not s.mask.all()]
    for s, pair, target in zip(with_region, hard, regions):
        assert np.array_equal(pair[0], region_view(s.source, s.mask))
        if s.edit_type == "recolour":  # the result in another colour, kind or size: differs from the target
            assert not np.array_equal(pair[1], target) and (pair[1][~s.mask] == 128).all()
        else:  # a removal has no resulting object: the unedited region again
            assert np.array_equal(pair[1], pair[0])
    res = train_clip(ClipRecipe(out=tmp_path / "clip", steps=2, batch_size=6, pool=12, eval_count=10,
                                hard_negatives=True), progress=False)
    assert np.isfinite(res["final_loss"]) and 0.0 <= res["edited_over_near_miss_instruction"] <= 1.0

    # --init continues from those weights: at a vanishing learning rate they come out unchanged, a fresh run does not
    from safetensors.torch import load_file

    from editkit.backend.clip import WEIGHTS_NAME

    train_clip(ClipRecipe(out=tmp_path / "again", init=tmp_path / "clip", steps=1, batch_size=6, pool=12,
                          eval_count=10, lr=1e-12), progress=False)
    train_clip(ClipRecipe(out=tmp_path / "fresh", steps=1, batch_size=6, pool=12, eval_count=10, lr=1e-12, seed=5),
               progress=False)
    first, again, fresh = (load_file(str(tmp_path / d / WEIGHTS_NAME)) for d in ("clip", "again", "fresh"))
    assert all(torch.allclose(first[k], again[k], atol=1e-6) for k in first)
    assert not all(torch.allclose(first[k], fresh[k], atol=1e-6) for k in first)


def test_imagebind_recipe_runs_when_the_optional_extra_is_installed(tmp_path):
    import pytest

    from editkit.errors import GuideLoadError
    from editkit_any2pix.encoders import import_imagebind

    try:
        import_imagebind()
    except GuideLoadError:
        pytest.skip("optional extra not installed (imagebind-unofficial)")
    from editkit.training.imagebind import ImageBindRecipe, train_imagebind

    res = train_imagebind(ImageBindRecipe(out=tmp_path / "ib", steps=2, batch_size=4, scenes=4, variants=1, dim=16),
                          progress=False)
    assert res["candidates"] == 48 and 0.0 <= res["audio_to_image_top1"] <= 1.0
    assert (tmp_path / "ib" / "imagebind.safetensors").is_file()


def test_frozen_clip_text_tower_export_is_exact_and_trains_ip2p(tmp_path):
    import shutil

    from editkit.backend import EDITWORLD_WEIGHTS
    from editkit.backend.clip import EDITWORLD_CLIP
    from editkit.training.clip_text import check_export, export_text_encoder

    model, tok = export_text_encoder(EDITWORLD_CLIP, tmp_path / "x")
    assert check_export(EDITWORLD_CLIP, model, tok, ["make the red circle blue", "a large green square"]) < 1e-4
    out = tmp_path / "w"
    out.mkdir()
    shutil.copytree(EDITWORLD_WEIGHTS / "vae", out / "vae")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_ip2p(IP2PRecipe(out=out, steps=2, batch_size=4, pool=8, frozen_text=EDITWORLD_CLIP), progress=False)
    from transformers import CLIPTextModel

    after = CLIPTextModel.from_pretrained(out / "text_encoder").state_dict()
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)  # frozen
    guide = InstructPix2PixGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    assert guide.edit(EditRequest(images=[contract_image((32, 32))], instructions=["make it blue"])).images[0].size == (32, 32)


def test_info_nce_treats_equal_labels_as_positives():
    import torch

    from editkit.training.common import info_nce

    e = torch.eye(3)
    assert float(info_nce(e, e, torch.tensor([0, 1, 2]), 100.0)) < 1e-6  # aligned: no loss
    assert float(info_nce(e, e[[1, 2, 0]], torch.tensor([0, 1, 2]), 100.0)) > 50  # misaligned: large
    # rows 0 and 1 hold the same text: matching either is right, so the loss is log 2 for each of them
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    tokens = torch.tensor([[5, 6], [5, 6], [7, 8]])
    got = float(info_nce(a, a, tokens, 100.0))
    assert abs(got - 2 * np.log(2) / 3) < 1e-4
    assert abs(float(info_nce(a, a, torch.tensor([0, 0, 1]), 100.0)) - got) < 1e-6  # ids and token rows agree


def test_type_weights_split_the_pool_exactly_and_reject_unknown_types(tmp_path):
    from collections import Counter

    import pytest

    from editkit.config import validate_config
    from editkit.errors import GuideConfigError
    from editkit.training.ip2p import training_pool

    recipe = IP2PRecipe(out=tmp_path, pool=31, type_weights={"recolour": 3, "add": 3, "brightness": 0})
    counts = Counter(s.edit_type for s in training_pool(recipe))
    # 9 explicit types, weights 3+3+0+6x1 = 12 -> 7.75 recolour/add, 2.58 others, largest remainders round up
    assert sum(counts.values()) == 31 and "brightness" not in counts
    assert counts["recolour"] == counts["add"] == 8 and all(counts[t] in (2, 3) for t in counts if t not in
                                                            ("recolour", "add"))
    # uniform when unset: every type drawn, same stream as the generator
    uniform = training_pool(IP2PRecipe(out=tmp_path, pool=12))
    from editkit import editworld

    assert [s.id for s in uniform] == [s.id for s in editworld.generate("train", 12, seed=0, types="explicit")]
    with pytest.raises(GuideConfigError, match="outside types 'explicit': superlative"):
        validate_config("train ip2p", IP2PRecipe, {"out": str(tmp_path), "type_weights": {"superlative": 2}})
    with pytest.raises(GuideConfigError, match="unknown EditWorld edit type 'colour'"):
        validate_config("train ip2p", IP2PRecipe, {"out": str(tmp_path), "type_weights": {"colour": 2}})


def test_referring_action_weights_thin_referring_samples_by_action(tmp_path):
    from collections import Counter

    import pytest

    from editkit.editworld.edit_types import REFERRING_TYPES
    from editkit.training.ip2p import training_pool

    only_replace = IP2PRecipe(out=tmp_path, pool=30, types="explicit+referring",
                              referring_action_weights={"replace": 1, "move": 0, "recolour": 0, "remove": 0})
    pool = training_pool(only_replace)
    referring = [s for s in pool if s.edit_type in REFERRING_TYPES]
    explicit = Counter(s.action for s in pool if s.edit_type not in REFERRING_TYPES)
    assert len(pool) == 30 and len(referring) == 8  # 13 types share 30: 4 referring types x 2
    assert {s.action for s in referring} == {"replace"} and len(explicit) > 1  # explicit types untouched
    skewed = training_pool(IP2PRecipe(out=tmp_path, pool=400, types="referring",
                                      referring_action_weights={"replace": 4}))
    actions = Counter(s.action for s in skewed)  # replace 4 of 7 expected: 229 of 400
    assert len(skewed) == 400 and actions["replace"] > 170 and all(actions[a] < 100 for a in ("move", "remove"))
    assert [s.id for s in skewed] == [s.id for s in training_pool(IP2PRecipe(
        out=tmp_path, pool=400, types="referring", referring_action_weights={"replace": 4}))]  # seeded
    with pytest.raises(ValueError, match="unknown referring action 'resize'"):
        IP2PRecipe(out=tmp_path, referring_action_weights={"resize": 2})
    with pytest.raises(ValueError, match="every action weight 0"):
        IP2PRecipe(out=tmp_path, referring_action_weights={a: 0 for a in ("recolour", "remove", "replace", "move")})


def test_train_accepts_no_progress_among_the_recipe_options(monkeypatch, tmp_path):
    import editkit.training.clip as clip_module
    from editkit.cli import main

    seen = {}

    def fake_train(recipe, progress=True):
        seen.update(steps=recipe.steps, progress=progress)
        return {}

    monkeypatch.setattr(clip_module, "train_clip", fake_train)
    assert main(["train", "clip", "--steps", "2", "--no-progress", "--out", str(tmp_path)]) == 0
    assert seen == {"steps": 2, "progress": False}


def test_any2pix_recipe_trains_weights_the_guide_loads_and_runs(tmp_path):
    import pytest

    from editkit.errors import GuideLoadError
    from editkit_any2pix.encoders import import_imagebind

    try:
        import_imagebind()
    except GuideLoadError:
        pytest.skip("optional extra not installed (imagebind-unofficial)")
    from PIL import Image
    from safetensors.torch import load_file

    from editkit import editworld
    from editkit.backend.tiny import save_components, tiny_components
    from editkit.backend.components import text_to_image_unet
    from editkit.training.any2pix import Any2PixRecipe, train_any2pix
    from editkit.training.imagebind import ImageBindRecipe, train_imagebind
    from editkit_any2pix import Any2PixGuide

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    train_imagebind(ImageBindRecipe(out=tmp_path / "ib", steps=1, batch_size=4, scenes=4, variants=1, dim=16),
                    progress=False)
    out = tmp_path / "a2p"
    small = dict(imagebind=tmp_path / "ib", ip2p=ip2p, pool=6, diffusion_steps=2, diffusion_batch_size=2, llm_steps=2,
                 llm_batch_size=2, llm_width=32, llm_layers=1, prior_steps=2)
    # --train-unet: the UNet is the 4-channel copy of the ip2p UNet (its noisy-latent channels), then trained
    own = train_any2pix(Any2PixRecipe(out=tmp_path / "own", train_unet=True, **small), progress=False)
    assert own["pool"] == 6 and -1.0 <= own["train_gen_cosine"] <= 1.0
    unet = load_file(tmp_path / "own" / "unet" / "diffusion_pytorch_model.safetensors")
    assert unet["conv_in.weight"].shape[1] == 4
    start = text_to_image_unet(tiny_components(0).unet).state_dict()
    assert set(unet) == set(start) and any((unet[k] - start[k]).abs().max() > 0 for k in unet)

    # default: only the adapter trains; the folder has no UNet and points at the ip2p folder
    res = train_any2pix(Any2PixRecipe(out=out, **small), progress=False)
    assert res["pool"] == 6 and not (out / "unet").exists()
    cfg = json.loads((out / "any2pix_config.json").read_text())
    assert cfg["diffusion"]["pipeline"] == "../ip2p"
    adapter = load_file(out / "ip_adapter.safetensors")
    assert adapter["image_proj.proj.weight"].shape[1] == 16 and any(k.endswith("to_k_ip.weight") for k in adapter)

    # --init with the LLM and prior phases at 0 steps: only the adapter moves, the rest is carried over unchanged
    again = tmp_path / "again"
    train_any2pix(Any2PixRecipe(out=again, init=out, ip2p=ip2p, pool=6, diffusion_steps=2, diffusion_batch_size=2,
                                llm_steps=0, prior_steps=0, seed=1), progress=False)
    for name in ("prior.safetensors", "projectors.safetensors", "imagebind.safetensors", "llm/model.safetensors"):
        before, after = load_file(out / name), load_file(again / name)
        assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before), name
    moved = load_file(again / "ip_adapter.safetensors")
    assert set(moved) == set(adapter) and any(not torch.equal(moved[k], adapter[k]) for k in adapter)
    with pytest.raises(ValueError, match="--imagebind .* or --init"):
        Any2PixRecipe(out=again, ip2p=ip2p)

    sample = editworld.generate("test", 1, seed=0, types="add_audio")[0]
    guide = Any2PixGuide(model=str(out), steps=2, temperature=0.0, max_new_tokens=8, progress=False)
    guide.load(BackendCache())
    from editkit.errors import GuideError

    request = EditRequest(images=[Image.fromarray(sample.source)], instructions=[sample.instruction],
                          inputs={"audio1": sample.inputs["audio1"]})
    try:
        result = guide.edit(request)
    except GuideError as exc:  # two steps of training need not have learned the grammar yet
        assert "<im_gen>" in str(exc) or "<video>" in str(exc)
    else:
        assert result.images[0].size == (64, 64) and result.extras["base_index"] == [0]


def test_the_phase_1_probe_covers_every_family():
    from editkit.training.common import group_samples, spread

    val = group_samples("val", 128, 0, "explicit,referring", 64)
    probe = spread(val, 64)
    assert len(probe) == 64 and {s.family for s in probe} == {"explicit", "referring"}
    assert spread(val[:10], 64) == val[:10] and spread(val, 0) == []


def test_group_samples_gives_each_plus_group_one_equal_share():
    """'+' joins types into one group with one share; a single-type group is the same stream as before."""
    from collections import Counter

    from editkit import editworld
    from editkit.training.common import group_samples

    samples = group_samples("val", 90, 3, "explicit,referring,contrast+replace", 64)
    assert len(samples) == 90
    assert [s.id for s in samples[:30]] == [s.id for s in editworld.generate("val", 30, seed=3, types="explicit")]
    tail = Counter(s.edit_type for s in samples[60:])
    assert set(tail) == {"contrast", "replace"} and min(tail.values()) >= 8
    assert {s.family for s in samples[30:60]} == {"referring"}


def test_any2pix_recipe_refuses_llm_sizes_with_init(tmp_path):
    """--init continues the folder's LLM, so sizing a new one alongside it is a clear error, not ignored."""
    import pytest

    from editkit.training.any2pix import Any2PixRecipe

    init = tmp_path / "init"
    with pytest.raises(ValueError, match="--llm-width only shape a new LLM, but --init"):
        Any2PixRecipe(out=tmp_path / "o", init=init, llm_width=64)
    with pytest.raises(ValueError, match="--llm-layers only shape"):
        Any2PixRecipe(out=tmp_path / "o", init=init, llm_layers=2)
    assert Any2PixRecipe(out=tmp_path / "o", init=init).llm_width == 128  # the default alone is fine
    assert Any2PixRecipe(out=tmp_path / "o", imagebind=init, llm_width=64).llm_width == 64


def test_ip2p_pool_mixes_families_and_can_read_referring_rewrites(tmp_path):
    from collections import Counter

    from editkit.editworld.edit_types import REFERRING_TYPES
    from editkit.training.ip2p import training_pool, training_text

    recipe = IP2PRecipe(out=tmp_path, pool=40, types="explicit+referring", referring_text="rewrite",
                        type_weights={"move": 3, "spatial": 3})
    pool = training_pool(recipe)
    counts = Counter(s.edit_type for s in pool)  # weights: 13 types, move and spatial 3, sum 17 -> 40 * 3 / 17 = 7
    assert len(pool) == 40 and counts["move"] == counts["spatial"] == 7 and set(REFERRING_TYPES) <= set(counts)
    referring = [s for s in pool if s.edit_type in REFERRING_TYPES]
    assert all(training_text(s, "rewrite") == s.rewrite != s.instruction for s in referring)
    assert all(training_text(s, "instruction") == s.instruction for s in referring)
    assert all(training_text(s, "rewrite") == s.instruction for s in pool if s not in referring)
    explicit = [(i, s) for i, s in enumerate(pool) if s not in referring and s.rewrite != s.instruction]
    assert all(training_text(s, "instruction", "rewrite", i) == s.rewrite for i, s in explicit)
    both = [training_text(s, "rewrite", "both", i) == s.rewrite for i, s in explicit]
    assert both == [i % 2 == 0 for i, _ in explicit] and 0 < sum(both) < len(both)
    with pytest.raises(ValueError, match="outside types"):
        IP2PRecipe(out=tmp_path, types="explicit", type_weights={"spatial": 2})
    with pytest.raises(ValueError, match="unknown EditWorld edit type 'referrin'"):
        IP2PRecipe(out=tmp_path, types="explicit+referrin")
