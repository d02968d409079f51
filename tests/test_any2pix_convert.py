"""Official InstructAny2Pix release -> editkit any2pix folder, on tiny state dicts that use the official key names.

The fake release is built here from the reference's attribute names (jacklishufan/InstructAny2Pix), not from
editkit's classes: InstructAny2PixLMForCausalLM keys (``model.vae_projector_image.{0,2}`` ...), the
InstructAny2PixPrior keys (SOS/EOS tables, ``input_sequence_embed_linear``, the frozen CLIP text encoder under
``cond_stage_models.0.model.text_model`` as transformers 4.x names it, GPT-2 under ``model.``) and the
2-view ImageProjModel (``raw_embed``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from editkit import cli
from editkit.errors import GuideLoadError

D, W, TEXT_D, SCORE_D = 32, 64, 24, 512  # ImageBind, LLM width, CLIP text width, score embedding
GPT2_POSITIONS = 16


def _clip_text_config(vocab: int) -> dict:
    return dict(hidden_size=TEXT_D, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=vocab, max_position_embeddings=16, bos_token_id=2, eos_token_id=3, pad_token_id=0)


def _gpt2():
    from transformers import GPT2Config, GPT2Model

    return GPT2Model(GPT2Config(n_embd=D, n_layer=2, n_head=16, n_positions=GPT2_POSITIONS, vocab_size=50,
                                bos_token_id=None, eos_token_id=None)).eval()


def _release_prior(clip_text_state: dict | None) -> dict[str, torch.Tensor]:
    """An InstructAny2PixPrior state dict with the reference's names (effective inputs 1-3 have Linears)."""
    gpt = _gpt2()
    for p in gpt.parameters():
        p.data = torch.randn_like(p) * 0.3
    sd = {f"model.{k}": v for k, v in gpt.state_dict().items()}
    sd["model.h.0.attn.bias"] = torch.tril(torch.ones(GPT2_POSITIONS, GPT2_POSITIONS))[None, None]  # old buffers
    sd["model.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    sd.update({"start_of_sequence_tokens.weight": torch.randn(32, D), "end_of_sequence_tokens.weight": torch.randn(32, D),
               "modality_embedding.weight": torch.randn(10, D)})
    for i, d_in in ((1, D), (2, TEXT_D), (3, SCORE_D)):
        sd[f"input_sequence_embed_linear.{i}.weight"] = torch.randn(D, d_in) / math.sqrt(d_in)
        sd[f"input_sequence_embed_linear.{i}.bias"] = torch.randn(D) * 0.1
    if clip_text_state is not None:
        sd.update({f"cond_stage_models.0.model.text_model.{k}": v for k, v in clip_text_state.items()})
        sd["cond_stage_models.0.model.text_model.embeddings.position_ids"] = torch.arange(16)[None]
    return sd


def _official_release(root):
    """A tiny stand-in for ``ckpts/`` plus a laion-like CLIP folder and a 4-channel tiny pipeline."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaForCausalLM

    from editkit.backend.tiny import save_components, tiny_components, word_tokenizer
    from editkit_any2pix import layout, tiny
    from editkit_any2pix.encoders import ImageBindEncoder

    torch.manual_seed(0)
    root.mkdir(parents=True)
    imagebind = ImageBindEncoder(tiny.imagebind_kwargs(D), image_size=224, audio=tiny.TINY_AUDIO).model.state_dict()
    torch.save(imagebind, root / "imagebind_huge.pth")

    tok = tiny.tokenizer()
    llama_cfg = LlamaConfig(vocab_size=len(tok), hidden_size=W, intermediate_size=2 * W, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    lm = LlamaForCausalLM(llama_cfg)
    tiny.script_answer(lm, tok, {":": "<base>", "<base>": "<im_gen>", "<im_gen>": "<video>", "<video>": tok.eos_token})
    llm_sd = dict(lm.state_dict())
    sd = dict(llm_sd)
    for name, shapes in (("vae_projector_image", ((W, D), (W, W))), ("vae_predictor_image", ((W, W), (D, W))),
                         ("vae_projector_audio", ((W, D), (W, W))), ("vae_predictor_audio", ((W, W), (D, W))),
                         ("mm_projector", ((W, 40), (W, W)))):
        for i, shape in zip((0, 2), shapes):
            sd[f"model.{name}.{i}.weight"] = torch.randn(shape) / math.sqrt(shape[1])
            sd[f"model.{name}.{i}.bias"] = torch.randn(shape[0]) * 0.1
    sd["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.ones(40)
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(16)
    llm = root / "llm-retrained"
    llm.mkdir()
    keys = sorted(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in shards.items():
        torch.save({k: sd[k] for k in part}, llm / name)
    (llm / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, part in shards.items() for k in part}}))
    fields = {k: v for k, v in llama_cfg.to_dict().items() if k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "pad_token_id", "bos_token_id",
        "eos_token_id", "hidden_act")}
    (llm / "config.json").write_text(json.dumps({
        **fields, "architectures": ["InstructAny2PixLMForCausalLM"], "model_type": "instructany2pix",
        "rope_theta": 10000.0, "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 40, "vae_image": "vq-npz",
        "vae_audio": "vq-npz", "mm_vision_tower": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "torch_dtype": "bfloat16"}))
    tok.save_pretrained(llm / "tokenizer")

    clip_tok = word_tokenizer(["a", "photo"], max_length=16)
    clip_dir = root.parent / "clip-vit-h"  # laion-like: a full CLIPModel + tokenizer at the root
    text_cfg = _clip_text_config(len(clip_tok))
    CLIPModel(CLIPConfig(text_config=text_cfg, projection_dim=8, vision_config=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
        patch_size=8))).save_pretrained(clip_dir)
    clip_tok.save_pretrained(clip_dir)
    release_clip = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()  # the prior's own frozen copy differs
    prior = _release_prior(release_clip.state_dict())
    (root / "prior").mkdir()
    torch.save(prior, root / "prior" / "model.bin")

    comps = tiny_components(1, in_channels=4)
    pipeline = save_components(comps, root.parent / "pipeline")
    adapter = layout.random_adapter(comps.unet, D, seed=2)
    c = comps.unet.config.cross_attention_dim
    adapter["image_proj"].update({"proj.bias": torch.randn(4 * c) * 0.1, "norm.weight": 1 + torch.randn(c) * 0.1,
                                  "norm.bias": torch.randn(c) * 0.1, "raw_embed": torch.randn(2, c)})
    (root / "sdxl").mkdir()
    torch.save(adapter, root / "sdxl" / "ip_adapter_global_local_2_view.bin")
    return {"imagebind": imagebind, "llm_sd": llm_sd, "sd": sd, "tok": tok, "clip_dir": clip_dir, "clip_tok": clip_tok,
            "release_clip": release_clip, "prior": prior, "adapter": adapter, "pipeline": pipeline, "unet": comps.unet}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from editkit.errors import GuideLoadError as LoadError
    from editkit_any2pix.encoders import import_imagebind

    try:
        import_imagebind()
    except LoadError:
        pytest.skip("optional extra not installed: pip install --no-deps imagebind-unofficial==0.1.1 iopath einops")
    root = tmp_path_factory.mktemp("release") / "ckpts"
    return root, _official_release(root)


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    """``editkit convert any2pix`` on the fake release (the ImageBind config entry: the tiny model's, not huge)."""
    from editkit_any2pix import convert, tiny

    root, r = release
    out = tmp_path_factory.mktemp("converted") / "any2pix"
    tiny_imagebind = {"model": tiny.imagebind_kwargs(D), "image_size": 224, "audio": asdict(tiny.TINY_AUDIO)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convert, "REFERENCE_IMAGEBIND", tiny_imagebind)
        code = cli.main(["convert", "any2pix", "--ckpt", str(root), "--prior-text-encoder", str(r["clip_dir"]),
                         "--pipeline", str(r["pipeline"]), "--dtype", "float32", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def loaded(converted):
    from editkit_any2pix import layout

    return layout.load(str(converted))


def test_llm_key_rules():
    from editkit_any2pix.convert import map_llm_key

    assert map_llm_key("model.layers.31.mlp.gate_proj.weight") == ("llm", "model.layers.31.mlp.gate_proj.weight")
    assert map_llm_key("model.embed_tokens.weight") == ("llm", "model.embed_tokens.weight")
    assert map_llm_key("lm_head.weight") == ("llm", "lm_head.weight")
    assert map_llm_key("model.vae_projector_image.2.bias") == ("projector", "in_projector.2.bias")
    assert map_llm_key("model.vae_predictor_image.0.weight") == ("projector", "out_projector.0.weight")
    for dropped in ("model.vae_projector_audio.0.weight", "model.vae_predictor_audio.2.bias", "model.mm_projector.0.weight",
                    "model.vision_tower.vision_tower.vision_model.embeddings.class_embedding",
                    "model.layers.0.self_attn.rotary_emb.inv_freq"):
        assert map_llm_key(dropped)[0] == "drop"
    assert map_llm_key("model.vae_projector_image.1.weight")[0] == "unknown"
    assert map_llm_key("model.lm_head_img.weight")[0] == "unknown"


def test_imagebind_config_is_the_packages_imagebind_huge(release, monkeypatch):
    from editkit_any2pix.convert import IMAGEBIND_HUGE, REFERENCE_IMAGEBIND
    from editkit_any2pix.encoders import AudioSettings, import_imagebind

    imagebind_model, _ = import_imagebind()
    seen: dict = {}
    monkeypatch.setattr(imagebind_model, "ImageBindModel", lambda **kw: seen.update(kw))
    imagebind_model.imagebind_huge(pretrained=False)
    assert seen == IMAGEBIND_HUGE
    assert REFERENCE_IMAGEBIND["audio"] == {"clips": 3, "clip_seconds": 2.0, "mel_bins": 128, "target_len": 204}
    assert AudioSettings(**REFERENCE_IMAGEBIND["audio"]) == AudioSettings()


def test_converted_folder_layout_and_config(converted, release):
    from editkit_any2pix.language import VICUNA_V1

    _, r = release
    assert not [p for p in converted.rglob("*") if p.suffix in (".bin", ".pth", ".pt")]
    for name in ("imagebind", "projectors", "prior", "ip_adapter"):
        assert (converted / f"{name}.safetensors").is_file()
    cfg = json.loads((converted / "any2pix_config.json").read_text())
    assert cfg["format"] == "editkit-any2pix" and cfg["llm"]["template"] == VICUNA_V1
    assert cfg["llm"]["prompt_prefix"] == "best quality, high quality, " and cfg["norm"] == 20
    assert cfg["sampling"] == {"steps": 25, "cfg": 10.0} and cfg["diffusion"]["pipeline"] == str(r["pipeline"])
    assert cfg["projectors"] == {"embed_dim": D, "llm_width": W}
    assert cfg["prior"]["kind"] == "reference" and cfg["prior"]["layers"] == 2 and cfg["prior"]["text_tokens"] == 2
    assert "raw_embed[0]" in cfg["conversion"]["ip_adapter"] and cfg["conversion"]["llm_shards"] == 2
    assert cfg["conversion"]["llm_dropped_keys"] == 14  # audio projector + predictor, mm_projector, vision, inv_freq
    llm_cfg = json.loads((converted / "llm" / "config.json").read_text())
    assert llm_cfg["model_type"] == "llama" and llm_cfg["architectures"] == ["LlamaForCausalLM"]
    assert (converted / "llm" / "model.safetensors.index.json").is_file()


def test_llm_imagebind_and_projectors_equal_the_release(loaded, release):
    from editkit_any2pix import grammar

    _, r = release
    state = loaded.llm.model.state_dict()
    assert set(state) == set(r["llm_sd"])
    for k, v in r["llm_sd"].items():
        assert torch.equal(state[k], v), k
    assert loaded.llm.token_ids == {t: r["tok"].convert_tokens_to_ids(t) for t in grammar.SPECIAL_TOKENS}
    ib = loaded.encoder.model.state_dict()
    assert all(torch.equal(ib[k], v) for k, v in r["imagebind"].items())

    sd, x, h = r["sd"], torch.randn(3, D), torch.randn(3, W)

    def manual(prefix, v):  # mlp2x_gelu: Linear -> GELU -> Linear
        hidden = F.gelu(v @ sd[f"model.{prefix}.0.weight"].T + sd[f"model.{prefix}.0.bias"])
        return hidden @ sd[f"model.{prefix}.2.weight"].T + sd[f"model.{prefix}.2.bias"]

    with torch.no_grad():
        torch.testing.assert_close(loaded.llm.in_projector(x), manual("vae_projector_image", x))
        torch.testing.assert_close(loaded.llm.out_projector(h), manual("vae_predictor_image", h))


def _reference_image_tokens(proj: dict, global_embed: torch.Tensor) -> torch.Tensor:
    """The release's ImageProjModel in mode 'global' (2 views: global, local=0), written out."""
    n, c = global_embed.shape[0], proj["norm.weight"].shape[0]
    views = torch.stack([global_embed, torch.zeros_like(global_embed)], dim=1)  # N 2 D
    tokens = (views @ proj["proj.weight"].T + proj["proj.bias"]).reshape(n, 2, 4, c)
    tokens = tokens + proj["raw_embed"][:, None]  # raw_embed[0] on the global view, [1] on the local one
    return F.layer_norm(tokens[:, 0], (c,), proj["norm.weight"], proj["norm.bias"])


def test_ip_adapter_global_offset_is_folded_into_the_projection(loaded, release):
    from editkit_any2pix.convert import fold_ip_adapter

    _, r = release
    proj = r["adapter"]["image_proj"]
    # diffusers' own conversion of the written image_proj, as the guide's attach_adapter uses it
    image_projection = r["unet"]._convert_ip_adapter_image_proj_to_diffusers(loaded.adapter["image_proj"])
    x = torch.randn(3, D)
    with torch.no_grad():
        torch.testing.assert_close(image_projection(x), _reference_image_tokens(proj, x))
        # the unconditional tokens are proj(0) with the offset, not zero tokens
        torch.testing.assert_close(image_projection(torch.zeros(1, D)), _reference_image_tokens(proj, torch.zeros(1, D)))
    assert set(loaded.adapter["image_proj"]) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    assert all(torch.equal(loaded.adapter["ip_adapter"][k], v) for k, v in r["adapter"]["ip_adapter"].items())
    with pytest.raises(GuideLoadError, match="ImageProjModel format"):
        fold_ip_adapter({"image_proj": {k: v for k, v in proj.items() if k != "raw_embed"}, "ip_adapter": {}})


def _manual_refine(sd: dict, text_states: torch.Tensor, gen: torch.Tensor, g: float, score: float,
                   negative: float) -> torch.Tensor:
    """The reference's one-step generate_diffusion, by hand: [mod(VIDEO)] [SOS1 L1(x) EOS1] [SOS2 L2(text) EOS2]
    [SOS3 L3(score) EOS3] through GPT-2, last position; unconditional = (x * 0, score embedding * 0 + negative)."""
    from diffusers.models.embeddings import get_timestep_embedding

    def linear(i, v):
        return v @ sd[f"input_sequence_embed_linear.{i}.weight"].T + sd[f"input_sequence_embed_linear.{i}.bias"]

    def sequence(x, s):
        parts = [sd["modality_embedding.weight"][3][None]]
        for i, tokens in ((1, linear(1, x)[None]), (2, linear(2, text_states)), (3, linear(3, s)[None])):
            parts += [sd["start_of_sequence_tokens.weight"][i][None], tokens, sd["end_of_sequence_tokens.weight"][i][None]]
        return torch.cat(parts)

    x = gen / gen.norm() * 100
    s = get_timestep_embedding(torch.tensor([score]), SCORE_D, flip_sin_to_cos=True, downscale_freq_shift=0)[0]
    gpt = _gpt2()
    gpt.load_state_dict({k[len("model."):]: v for k, v in sd.items()
                         if k.startswith("model.") and not k.endswith((".attn.bias", ".attn.masked_bias"))})
    seqs = torch.stack([sequence(x, s), sequence(x * 0, s * 0 + negative)])
    with torch.no_grad():
        y = gpt(inputs_embeds=seqs, attention_mask=torch.ones(2, seqs.shape[1])).last_hidden_state[:, -1]
    return y[1] + g * (y[0] - y[1])


def test_reference_prior_matches_the_release_forward(loaded, release):
    from editkit_any2pix.reference_prior import ReferencePrior

    _, r = release
    prior = loaded.prior
    assert isinstance(prior, ReferencePrior)
    release_keys = {k for k in r["prior"] if not k.startswith("cond_stage_models.") and not k.endswith(
        (".attn.bias", ".attn.masked_bias"))}
    assert set(prior.state_dict()) == release_keys | {"text_states"}
    # the text states are the release's own frozen CLIP copy on "" (<bos> <eos>), not the folder's weights
    with torch.no_grad():
        expected = r["release_clip"](input_ids=torch.tensor([[2, 3]])).last_hidden_state[0]
    torch.testing.assert_close(prior.text_states, expected)
    gen = torch.randn(1, D)
    got = prior.refine(gen, guidance=10.0, score=6.5, negative_score=2.0)
    torch.testing.assert_close(got[0], _manual_refine(r["prior"], expected, gen[0], 10.0, 6.5, 2.0),
                               atol=1e-4, rtol=1e-4)
    # batched rows are independent
    two = prior.refine(torch.cat([gen, torch.randn(1, D)]), guidance=10.0, score=6.5, negative_score=2.0)
    torch.testing.assert_close(two[0], got[0], atol=1e-5, rtol=1e-5)


def test_prior_text_states_come_from_the_text_encoder_without_a_release_copy(release, tmp_path):
    from transformers import CLIPTextModel

    from editkit_any2pix.convert import convert_prior

    _, r = release
    torch.save(_release_prior(None), tmp_path / "model.bin")
    prior, where = convert_prior(tmp_path / "model.bin", str(r["clip_dir"]))
    with torch.no_grad():
        expected = CLIPTextModel.from_pretrained(r["clip_dir"])(input_ids=torch.tensor([[2, 3]])).last_hidden_state[0]
    torch.testing.assert_close(prior.text_states, expected)
    assert where == str(r["clip_dir"])
    torch.save({"model.wte.weight": torch.zeros(2, 2)}, tmp_path / "bad.bin")
    with pytest.raises(GuideLoadError, match="not an InstructAny2PixPrior"):
        convert_prior(tmp_path / "bad.bin", str(r["clip_dir"]))


def test_llm_from_a_single_safetensors_file(release, tmp_path):
    from safetensors.torch import save_file

    from editkit.backend.tiny import word_tokenizer
    from editkit_any2pix.convert import convert_llm

    root, r = release
    folder = tmp_path / "llm-instance"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in r["sd"].items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text((root / "llm-retrained" / "config.json").read_text())
    r["tok"].save_pretrained(folder / "tokenizer")
    projectors, report = convert_llm(folder, tmp_path / "out", torch.float16)
    assert report["llm_shards"] == 1 and (tmp_path / "out" / "model.safetensors").is_file()
    assert projectors["in_projector.0.weight"].dtype == torch.float16
    torch.testing.assert_close(projectors["out_projector.2.bias"].float(),
                               r["sd"]["model.vae_predictor_image.2.bias"].half().float())
    word_tokenizer(["a"]).save_pretrained(folder / "tokenizer")  # without the grammar's tokens
    with pytest.raises(GuideLoadError, match="has no token <im_gen_start>"):
        convert_llm(folder, tmp_path / "out2", torch.float16)


def test_guide_runs_on_the_converted_folder(converted):
    from PIL import Image

    from editkit.backend import BackendCache
    from editkit.types import EditRequest
    from editkit_any2pix import Any2PixGuide

    guide = Any2PixGuide(model=str(converted), steps=2, progress=False)
    guide.load(BackendCache())
    result = guide.edit(EditRequest(images=[Image.new("RGB", (64, 64), (40, 90, 200))], instructions=["make it red"],
                                    seed=0))
    assert result.images[0].size == (64, 64) and result.extras["base_index"] == [0]


def test_convert_command_errors(release, tmp_path, capsys):
    root, _ = release
    assert cli.main(["convert", "any2pix", "--ckpt", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--ckpt" in err and "no such folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert cli.main(["convert", "any2pix", "--ckpt", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lacks imagebind_huge.pth, prior/model.bin" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert cli.main(["convert", "any2pix", "--ckpt", str(root), "--out", str(tmp_path / "full")]) == 2
    assert "is not empty" in capsys.readouterr().err
