"""``editkit train mgie`` end to end for a few steps at test sizes, then the guide loads the result."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from editkit.backend import BackendCache
from editkit.backend.tiny import save_components, tiny_components
from editkit.types import EditRequest
from editkit_mgie import MGIEGuide
from editkit_mgie.tiny import image_processor


def test_mgie_recipe_runs_and_produces_a_working_guide(tmp_path):
    from editkit.training.mgie import MGIERecipe, train_mgie
    from editkit.training.mgie_data import Pool, img_states

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")  # stands in for the trained ip2p folder
    out = tmp_path / "mgie"
    recipe = MGIERecipe(out=out, ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_steps=2,
                        pretrain_batch_size=4, align_steps=2, steps=2, batch_size=4, eval_count=2, max_new_tokens=12)
    res = train_mgie(recipe, progress=False)
    assert all(np.isfinite(res[k]) for k in ("pretrain_ce", "align_mse", "final_ce", "final_mse"))
    assert "exact_match_explicit" in res and "exact_match_referring" in res
    record = json.loads((out / "recipe_mgie.json").read_text())
    assert record["config"]["steps"] == 2 and record["results"]["pool"] == 8
    phases = {row.get("phase") for row in map(json.loads, (out / "logs" / "mgie" / "log.jsonl").read_text().splitlines())}
    assert {1, 2, 3} <= phases
    assert "sampling" not in json.loads((out / "mgie_config.json").read_text())  # phase 3 changed the UNet
    for f in ("llm/model.safetensors", "edit_head.safetensors", "unet/diffusion_pytorch_model.safetensors",
              "vae/diffusion_pytorch_model.safetensors", "mgie_config.json"):
        assert (out / f).is_file(), f

    guide = MGIEGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    assert guide.edit_head.config.num_queries == 16  # = the ip2p tokenizer length (warm-start teacher)
    src = Image.fromarray(np.zeros((32, 32, 3), np.uint8))
    result = guide.edit(EditRequest(images=[src], instructions=["remove the red circle"]))
    assert result.images[0].size == (32, 32) and len(result.text) == 1

    # training's teacher forcing sees what inference sees: same pixels, same prompt, same [IMG] states
    from editkit import editworld

    s = editworld.generate("train", 1, seed=0, types="referring", size=32)[0]
    m = guide.mllm
    pool = Pool([s], m, guide.backend.vae, 1.0, 8)
    b = pool.batch(torch.tensor([0]))
    torch.testing.assert_close(b["pixel_values"], image_processor(32)(images=[Image.fromarray(s.source)],
                                                                      return_tensors="pt")["pixel_values"])
    ids = b["input_ids"][0].tolist()
    assert ids[: len(m.prompt_ids(s.instruction))] == m.prompt_ids(s.instruction)
    assert ids[b["img_pos"][0] + 1] == m.img_ids[0] and ids[-1] == m.tokenizer.eos_token_id
    h = torch.arange(2 * 40 * 3, dtype=torch.float).view(2, 40, 3)
    torch.testing.assert_close(img_states(h, torch.tensor([1, 5]), 8)[1], h[1, 5:13])


def test_lora_option_needs_peft(monkeypatch):
    import sys

    import pytest

    from editkit.errors import GuideConfigError
    from editkit.training.mgie import _add_lora

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(GuideConfigError, match="option 'lora_rank'.*peft"):
        _add_lora(object(), 4)


def test_train_tower_needs_a_pretrained_tower(tmp_path):
    import pytest

    from editkit.errors import GuideConfigError
    from editkit.training.mgie import MGIERecipe, train_mgie

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    with pytest.raises(GuideConfigError, match="option 'train_tower'.*--vision-tower"):
        train_mgie(MGIERecipe(out=tmp_path / "a", ip2p=ip2p, train_tower=True, size="test", image_size=32, pool=8,
                              pretrain_steps=1, pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0),
                   progress=False)
    assert not (tmp_path / "a").exists()  # refused before anything is written


def test_pretrain_pool_without_phase_1_is_refused(tmp_path):
    import pytest

    from editkit.config import validate_config
    from editkit.errors import GuideConfigError
    from editkit.training.mgie import MGIERecipe

    with pytest.raises(GuideConfigError, match="option 'pretrain_steps'.*--pretrain-pool"):
        validate_config("train mgie", MGIERecipe, {"out": str(tmp_path), "pretrain_pool": 1000, "pretrain_steps": 0})
    assert validate_config("train mgie", MGIERecipe, {"out": str(tmp_path), "pretrain_steps": 0}).pretrain_pool == 0


def test_lora_adapters_merge_into_a_plain_llava():
    import pytest

    pytest.importorskip("peft")
    from editkit.training.mgie import _add_lora, _merge_lora
    from editkit_mgie.tiny import llava, tokenizer

    model = llava(tokenizer(), "test").eval()
    params = _add_lora(model, 4)
    assert params and all(p.requires_grad for p in params)
    with torch.no_grad():
        for p in params:
            p.normal_()
        ids = torch.tensor([[2, 10, 11, 12]])
        before = model(input_ids=ids).logits
        _merge_lora(model)
        assert not [n for n, _ in model.named_parameters() if "lora_" in n]
        torch.testing.assert_close(model(input_ids=ids).logits, before, atol=1e-4, rtol=1e-4)


def test_mgie_recipe_resumes_from_a_saved_folder(tmp_path):
    from editkit.training.mgie import MGIERecipe, train_mgie

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    first = MGIERecipe(out=tmp_path / "a", ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_steps=1,
                       pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0)
    train_mgie(first, progress=False)
    again = MGIERecipe(out=tmp_path / "b", ip2p=ip2p, init=tmp_path / "a", size="test", image_size=32, pool=8,
                       pretrain_steps=0, align_steps=0, steps=1, batch_size=4, eval_count=0)
    res = train_mgie(again, progress=False)
    assert np.isfinite(res["final_mse"]) and "pretrain_ce" not in res
    a = json.loads((tmp_path / "a" / "mgie_config.json").read_text())
    b = json.loads((tmp_path / "b" / "mgie_config.json").read_text())
    assert a["edit_head"] == b["edit_head"] and a["edit_head"]["num_queries"] == 8  # no teacher: SIZES queries


def test_a_run_without_steps_resaves_the_folder_in_float16(tmp_path):
    """--storage-dtype float16 with no steps in any phase: the same model in half the bytes, loaded back in
    float32 with the same [IMG] conditioning within float16 rounding."""
    from safetensors import safe_open

    from editkit.training.mgie import MGIERecipe, train_mgie

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    common = dict(ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_batch_size=4, eval_count=0)
    train_mgie(MGIERecipe(out=tmp_path / "a", pretrain_steps=1, align_steps=1, steps=0, **common), progress=False)
    train_mgie(MGIERecipe(out=tmp_path / "h", init=tmp_path / "a", pretrain_steps=0, align_steps=0, steps=0,
                          storage_dtype="float16", **common), progress=False)
    for name in ("edit_head.safetensors", "llm/model.safetensors"):
        with safe_open(str(tmp_path / "h" / name), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, name
        assert (tmp_path / "h" / name).stat().st_size < 0.6 * (tmp_path / "a" / name).stat().st_size
    src = [Image.fromarray(np.full((32, 32, 3), 90, np.uint8))]
    conds = []
    for folder in ("a", "h"):
        guide = MGIEGuide(model=str(tmp_path / folder), steps=1, progress=False)
        guide.load(BackendCache())
        assert {p.dtype for p in guide.edit_head.parameters()} == {torch.float32}
        assert {p.dtype for p in guide.mllm.model.parameters()} == {torch.float32}
        conds.append(guide.prepare(EditRequest(images=src, instructions=["remove the red circle"])).cond)
    assert conds[0].abs().max() > 0
    torch.testing.assert_close(conds[1], conds[0], atol=2e-2, rtol=2e-2)
    # a float16 folder is trained on in float32 (the committed MGIE folder is stored in float16)
    res = train_mgie(MGIERecipe(out=tmp_path / "c", init=tmp_path / "h", pretrain_steps=0, align_steps=1, steps=1,
                                batch_size=4, **common), progress=False)
    assert np.isfinite(res["align_mse"]) and np.isfinite(res["final_mse"])


def test_mgie_phases_2_3_on_a_newer_ip2p_unet(tmp_path):
    """Phase 1 once, then phases 2-3 against another ip2p folder: its UNet is used and the head takes the
    teacher's length."""
    from diffusers import UNet2DConditionModel

    from editkit.training.mgie import MGIERecipe, train_mgie

    old = save_components(tiny_components(0), tmp_path / "old")
    new = save_components(tiny_components(5), tmp_path / "new")
    (new / "editkit_sampling.json").write_text(json.dumps({"text_scale": 1.0, "image_scale": 1.5, "_measured": "x"}))
    train_mgie(MGIERecipe(out=tmp_path / "a", ip2p=old, size="test", image_size=32, pool=8, pretrain_steps=1,
                          pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0), progress=False)
    train_mgie(MGIERecipe(out=tmp_path / "b", ip2p=new, init=tmp_path / "a", unet_from="ip2p", size="test",
                          image_size=32, pool=8, pretrain_steps=0, align_steps=1, steps=0, batch_size=4, eval_count=0),
               progress=False)
    b = json.loads((tmp_path / "b" / "mgie_config.json").read_text())
    assert b["edit_head"]["num_queries"] == 16  # the teacher tokenizer's length, not SIZES' 8
    assert b["sampling"] == {"text_scale": 1.0, "image_scale": 1.5}  # no phase 3: the ip2p UNet's guidance holds
    got = UNet2DConditionModel.from_pretrained(tmp_path / "b" / "unet").state_dict()
    want = UNet2DConditionModel.from_pretrained(new / "unet").state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # steps=0: the new ip2p UNet unchanged

    # phase 3 with --train-unet false: the head learns through the diffusion loss, the ip2p UNet (and so its
    # measured guidance) stays as it was
    train_mgie(MGIERecipe(out=tmp_path / "c", ip2p=new, init=tmp_path / "b", unet_from="ip2p", train_unet=False,
                          size="test", image_size=32, pool=8, pretrain_steps=0, align_steps=0, steps=2, batch_size=4,
                          lr=0.01, ema=0.0, eval_count=0), progress=False)
    c = json.loads((tmp_path / "c" / "mgie_config.json").read_text())
    assert c["sampling"] == {"text_scale": 1.0, "image_scale": 1.5}
    got = UNet2DConditionModel.from_pretrained(tmp_path / "c" / "unet").state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    from editkit.weights import load_state_dict

    head_b, head_c = (load_state_dict(tmp_path / d / "edit_head.safetensors") for d in ("b", "c"))
    assert any(not torch.equal(head_b[k], head_c[k]) for k in head_b)


def test_pretrained_clip_vision_tower_is_exact_frozen_and_normalised_as_trained(tmp_path):
    """``--vision-tower``: the open_clip image tower becomes LLaVA's tower exactly (every layer), stays frozen
    through phase 1, LLaVA reads its penultimate layer, and training pixels are normalised as the guide's."""
    import open_clip
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from editkit.backend.clip import CONFIG_NAME, WEIGHTS_NAME
    from editkit.training.clip_vision import (check_vision_export, load_vision_tower, vision_tower_config,
                                              vision_tower_state)
    from editkit.training.mgie import MGIERecipe, train_mgie
    from editkit.training.mgie_data import Pool

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                                           "patch_size": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1}}
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    torch.manual_seed(0)
    clip = open_clip.CLIP(**cfg)
    (clip_dir / CONFIG_NAME).write_text(json.dumps({"model_cfg": cfg}))
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(clip_dir / WEIGHTS_NAME))
    tower = CLIPVisionModel(CLIPVisionConfig(**vision_tower_config(clip_dir))).eval()
    load_vision_tower(tower, clip_dir)
    assert vision_tower_config(clip_dir)["num_attention_heads"] == 2
    assert check_vision_export(clip_dir, tower, torch.randn(2, 3, 32, 32)) < 1e-5

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    train_mgie(MGIERecipe(out=tmp_path / "a", ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_steps=1,
                          pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0), progress=False)
    out = tmp_path / "b"
    train_mgie(MGIERecipe(out=out, ip2p=ip2p, init=tmp_path / "a", vision_tower=clip_dir, size="test",
                          image_size=32, pool=8, pretrain_steps=3, pretrain_batch_size=4, align_steps=1, steps=0,
                          batch_size=4, eval_count=0), progress=False)
    guide = MGIEGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    model = guide.mllm.model
    assert model.config.vision_feature_layer == -2 and model.config.vision_config.hidden_size == 32
    saved = {k.removeprefix("vision_model."): v for k, v in model.model.vision_tower.state_dict().items()}
    assert all(torch.equal(saved[k], v) for k, v in vision_tower_state(clip_dir).items())  # frozen in phase 1
    mean = open_clip.constants.OPENAI_DATASET_MEAN
    assert tuple(guide.mllm.image_processor.image_mean) == tuple(mean)

    from editkit import editworld

    s = editworld.generate("train", 1, seed=0, types="referring", size=32)[0]
    b = Pool([s], guide.mllm, guide.backend.vae, 1.0, 8).batch(torch.tensor([0]))
    torch.testing.assert_close(b["pixel_values"], guide.mllm.pixel_values([Image.fromarray(s.source)]))
    src = Image.fromarray(np.zeros((32, 32, 3), np.uint8))
    assert guide.edit(EditRequest(images=[src], instructions=["remove the red circle"])).images[0].size == (32, 32)

    # resuming from that folder keeps the pretrained tower frozen (recorded in mgie_config.json)
    assert json.loads((out / "mgie_config.json").read_text())["llm"]["frozen_vision_tower"] == str(clip_dir)
    train_mgie(MGIERecipe(out=tmp_path / "c", ip2p=ip2p, init=out, size="test", image_size=32, pool=8,
                          pretrain_steps=2, pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0), progress=False)
    again = MGIEGuide(model=str(tmp_path / "c"), steps=2, progress=False)
    again.load(BackendCache())
    resumed = {k.removeprefix("vision_model."): v for k, v in again.mllm.model.model.vision_tower.state_dict().items()}
    assert all(torch.equal(resumed[k], v) for k, v in vision_tower_state(clip_dir).items())

    # --train-tower: the same resume fine-tunes the pretrained tower and records where it came from
    train_mgie(MGIERecipe(out=tmp_path / "d", ip2p=ip2p, init=out, train_tower=True, size="test", image_size=32,
                          pool=8, pretrain_steps=2, pretrain_batch_size=4, pretrain_lr=0.01, align_steps=0, steps=0,
                          eval_count=0), progress=False)
    llm_meta = json.loads((tmp_path / "d" / "mgie_config.json").read_text())["llm"]
    assert llm_meta["tuned_vision_tower"] == str(clip_dir) and "frozen_vision_tower" not in llm_meta
    tuned = MGIEGuide(model=str(tmp_path / "d"), steps=2, progress=False)
    tuned.load(BackendCache())
    moved = {k.removeprefix("vision_model."): v for k, v in tuned.mllm.model.model.vision_tower.state_dict().items()}
    assert not all(torch.equal(moved[k], v) for k, v in vision_tower_state(clip_dir).items())
    train_mgie(MGIERecipe(out=tmp_path / "e", ip2p=ip2p, init=tmp_path / "d", size="test", image_size=32, pool=8,
                          pretrain_steps=0, align_steps=1, steps=0, batch_size=4, eval_count=0), progress=False)
    assert json.loads((tmp_path / "e" / "mgie_config.json").read_text())["llm"]["tuned_vision_tower"] == str(clip_dir)


def test_phase_one_draws_from_its_own_latent_free_pool(tmp_path):
    from editkit.training.mgie import MGIERecipe, train_mgie
    from editkit.training.mgie_data import Pool

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    out = tmp_path / "mgie"
    train_mgie(MGIERecipe(out=out, ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_pool=40,
                          pretrain_steps=1, pretrain_batch_size=4, align_steps=0, steps=0, eval_count=0), progress=False)
    first = json.loads((out / "logs" / "mgie" / "log.jsonl").read_text().splitlines()[0])
    assert first["pool"] == 8 and first["pretrain_pool"] == 40

    from editkit import editworld

    guide = MGIEGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    s = editworld.generate("train", 2, seed=0, types="referring", size=32)
    batch = Pool(s, guide.mllm, None, 1.0, 8).batch(torch.tensor([1, 0]))
    assert "src" not in batch and "tgt" not in batch and batch["pixel_values"].shape == (2, 3, 32, 32)


def test_alignment_phase_trains_the_llm_only_when_asked(tmp_path):
    """--align-train-llm: phase 2 moves the LLM blocks (not the vision tower) with CE + alignment; without it the
    LLM is bit-identical to the --init folder's and only the edit head learns."""
    from editkit.training.mgie import MGIERecipe, train_mgie
    from editkit.weights import load_state_dict

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    common = dict(ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_batch_size=4, batch_size=4, eval_count=0)
    train_mgie(MGIERecipe(out=tmp_path / "a", pretrain_steps=1, align_steps=0, steps=0, **common), progress=False)
    for name, flag in (("frozen", False), ("joint", True)):
        res = train_mgie(MGIERecipe(out=tmp_path / name, init=tmp_path / "a", pretrain_steps=0, align_steps=2,
                                    align_lr=0.01, align_train_llm=flag, steps=0, **common), progress=False)
        assert np.isfinite(res["align_mse"]) and ("align_ce" in res) == flag
    before, frozen, joint = (load_state_dict(tmp_path / d / "llm" / "model.safetensors") for d in ("a", "frozen", "joint"))
    assert all(torch.equal(frozen[k], before[k]) for k in before)
    blocks = [k for k in before if ".layers." in k and "vision_tower" not in k]
    tower = [k for k in before if "vision_tower" in k]
    assert blocks and tower
    assert any(not torch.equal(joint[k], before[k]) for k in blocks)
    assert all(torch.equal(joint[k], before[k]) for k in tower)
    rows = [json.loads(r) for r in (tmp_path / "joint" / "logs" / "mgie" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("phase") == 2 and np.isfinite(r["ce"]) for r in rows)


def test_phase_2_distillation_through_the_frozen_unet_moves_the_head_and_never_the_unet(tmp_path):
    """--align-unet-weight: the head also learns from the UNet's predictions under the teacher's states; the
    UNet it reads through stays bit for bit the ip2p one, and the run logs the distillation loss."""
    from diffusers import UNet2DConditionModel

    from editkit.training.mgie import MGIERecipe, train_mgie
    from editkit.weights import load_state_dict

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    common = dict(ip2p=ip2p, size="test", image_size=32, pool=8, batch_size=4, eval_count=0, seed=3)
    train_mgie(MGIERecipe(out=tmp_path / "a", pretrain_steps=1, pretrain_batch_size=4, align_steps=0, steps=0,
                          **common), progress=False)
    heads = {}
    for weight in (0.0, 1000.0):
        out = tmp_path / f"w{int(weight)}"
        res = train_mgie(MGIERecipe(out=out, init=tmp_path / "a", unet_from="ip2p", pretrain_steps=0, align_steps=2,
                                    align_lr=0.01, align_unet_weight=weight, steps=0, **common), progress=False)
        heads[weight] = load_state_dict(out / "edit_head.safetensors")
        rows = [json.loads(r) for r in (out / "logs" / "mgie" / "log.jsonl").read_text().splitlines()]
        logged = [r for r in rows if r.get("phase") == 2]
        assert all(("distill_mse" in r) == (weight > 0) for r in logged)
        assert ("align_distill_mse" in res) == (weight > 0)
        got = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
        want = UNet2DConditionModel.from_pretrained(ip2p / "unet").state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert res["align_distill_mse"] > 0
    assert any(not torch.equal(heads[0.0][k], heads[1000.0][k]) for k in heads[0.0])  # the distillation moved it


def test_a_trained_unet_is_stored_in_float16_and_trained_on_in_float32(tmp_path):
    """Phase 3 with the UNet trained and --storage-dtype float16 writes a half-size UNet; the guide runs it in
    float32, and both trainers continue from float16 folders in float32."""
    from safetensors import safe_open

    from editkit.training.ip2p import IP2PRecipe, train_ip2p
    from editkit.training.mgie import MGIERecipe, train_mgie

    ip2p = save_components(tiny_components(0), tmp_path / "ip2p")
    common = dict(ip2p=ip2p, size="test", image_size=32, pool=8, pretrain_batch_size=4, batch_size=4, eval_count=0)
    train_mgie(MGIERecipe(out=tmp_path / "a", pretrain_steps=1, align_steps=0, steps=1, train_unet=True,
                          storage_dtype="float16", **common), progress=False)
    unet_file = "unet/diffusion_pytorch_model.safetensors"
    with safe_open(str(tmp_path / "a" / unet_file), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert (tmp_path / "a" / unet_file).stat().st_size < 0.6 * (ip2p / unet_file).stat().st_size
    guide = MGIEGuide(model=str(tmp_path / "a"), steps=1, progress=False)
    guide.load(BackendCache())
    assert {p.dtype for p in guide.backend.unet.parameters()} == {torch.float32}
    res = train_mgie(MGIERecipe(out=tmp_path / "b", init=tmp_path / "a", unet_from="init", pretrain_steps=0,
                                align_steps=0, steps=1, train_unet=True, **common), progress=False)
    assert np.isfinite(res["final_mse"])
    with safe_open(str(tmp_path / "b" / unet_file), "pt") as f:  # float32 again: storage_dtype's default
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    # the ip2p trainer continues a float16 UNet in float32 too
    half = save_components(tiny_components(0), tmp_path / "half")
    from diffusers import UNet2DConditionModel

    UNet2DConditionModel.from_pretrained(half / "unet").half().save_pretrained(half / "unet")
    res = train_ip2p(IP2PRecipe(out=half, init=half, steps=1, batch_size=2, pool=8, image_size=32,
                                train_text=False, save_every=1), progress=False)
    assert np.isfinite(res["final_loss"])
    with safe_open(str(half / unet_file), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
