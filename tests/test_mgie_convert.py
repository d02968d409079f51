"""Official MGIE release -> editkit layout, on tiny state dicts that use the official key names."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from editkit import cli
from editkit.backend import BackendCache
from editkit.backend.tiny import TEST_WORDS, save_components, tiny_components, word_tokenizer
from editkit.testing import contract_image
from editkit.types import EditRequest
from editkit_mgie import MGIEGuide
from editkit_mgie.convert import convert_official, map_key, map_state_dict
from editkit_mgie.edit_head import EditHead
from editkit_mgie.tiny import PROMPT_WORDS, edit_head_config, image_processor

H, V_IMG = 32, 8


def official_release(root, *, with_emb: bool = True):
    """A tiny stand-in for ``_ckpt/`` (LLaVA-7B-v1/, mgie_7b/) plus a vision tower and an IP2P shell."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = word_tokenizer(TEST_WORDS + PROMPT_WORDS, max_length=512)
    tok.add_special_tokens({"additional_special_tokens": ["<im_patch>", "<im_start>", "<im_end>"]})
    v0 = len(tok)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=v0, hidden_size=H, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False,
                                         pad_token_id=0, bos_token_id=2, eos_token_id=3))
    sd = dict(llama.state_dict())
    sd["model.mm_projector.weight"] = torch.randn(H, 32) * 0.1
    sd["model.mm_projector.bias"] = torch.randn(H) * 0.1
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old transformers buffer: dropped
    sd["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.ones(32)  # ignored
    llava = root / "LLaVA-7B-v1"
    llava.mkdir(parents=True)
    keys = sorted(sd)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in shards.items():
        torch.save({k: sd[k].half() for k in part}, llava / name)
    (llava / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {k: name for name, part in shards.items() for k in part}}))
    (llava / "config.json").write_text(json.dumps({
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "hidden_size": H, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": v0, "hidden_act": "silu",
        "max_sequence_length": 256, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
        "mm_vision_tower": "openai/clip-vit-large-patch14", "mm_hidden_size": 32, "mm_use_im_start_end": True,
        "mm_vision_select_layer": -2, "use_mm_proj": True, "torch_dtype": "float16"}))
    tok.save_pretrained(llava)

    vision = root / "clip-vision"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(vision)
    image_processor(32).save_pretrained(vision)

    comps = tiny_components(1, text=False)
    shell = save_components(comps, root / "ip2p-shell")
    head = EditHead(edit_head_config(H, comps.unet.config.cross_attention_dim))
    embed = torch.cat([sd["model.embed_tokens.weight"], torch.randn(V_IMG, H)])
    mllm = {"model.embed_tokens.weight": embed, "lm_head.weight": torch.cat([sd["lm_head.weight"], torch.randn(V_IMG, H)])}
    mllm.update({f"edit_head.{k}": v for k, v in head.state_dict().items()})
    if with_emb:
        mllm["emb"] = embed[-V_IMG:] + 0.5  # the released file's own EMB
    mgie = root / "mgie_7b"
    mgie.mkdir()
    torch.save({k: v.half() for k, v in mllm.items()}, mgie / "mllm.pt")
    unet_sd = {k: v.half() for k, v in tiny_components(2, text=False).unet.state_dict().items()}
    torch.save(unet_sd, mgie / "unet.pt")
    return {"sd": sd, "mllm": mllm, "unet": unet_sd, "vision": vision, "shell": shell, "tok": tok}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release") / "_ckpt"
    return root, official_release(root)


def test_key_mapping_rules():
    assert map_key("model.embed_tokens.weight") == ("llm", "model.language_model.embed_tokens.weight")
    assert map_key("model.layers.31.mlp.gate_proj.weight") == ("llm", "model.language_model.layers.31.mlp.gate_proj.weight")
    assert map_key("model.layers.3.self_attn.q_proj.weight") == ("llm", "model.language_model.layers.3.self_attn.q_proj.weight")
    assert map_key("model.norm.weight") == ("llm", "model.language_model.norm.weight")
    assert map_key("lm_head.weight") == ("llm", "lm_head.weight")
    assert map_key("model.mm_projector.bias") == ("llm", "model.multi_modal_projector.linear_1.bias")
    assert map_key("model.layers.0.self_attn.rotary_emb.inv_freq")[0] == "drop"
    assert map_key("model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight")[0] == "drop"
    assert map_key("edit_head.mapper.decoder.layers.3.norm3.weight") == ("edit_head", "mapper.decoder.layers.3.norm3.weight")
    assert map_key("model.edit_head.query") == ("edit_head", "query")
    assert map_key("emb") == ("emb", "emb")
    assert map_key("unet.conv_in.weight")[0] == "unknown"


def test_mapped_keys_are_exactly_the_transformers_llava_keys(release):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    _, r = release
    mapped = map_state_dict(r["sd"], r["mllm"])
    assert not mapped.unknown and len(mapped.dropped) == 2 and mapped.emb is not None
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=32, patch_size=8),
                      text_config=LlamaConfig(vocab_size=len(r["tok"]) + 8, hidden_size=H, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2),
                      projector_hidden_act="linear")
    expected = {k for k in LlavaForConditionalGeneration(cfg).state_dict() if not k.startswith("model.vision_tower.")}
    assert set(mapped.llm) == expected
    assert set(mapped.edit_head) == set(EditHead(edit_head_config(H, 32)).state_dict())


def test_convert_command_and_in_memory_loading_agree(release, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    root, r = release
    out = tmp_path / "converted"
    code = cli.main(["convert", "mgie", "--ckpt", str(root), "--vision-tower", str(r["vision"]), "--pipeline",
                     str(r["shell"]), "--dtype", "float32", "--out", str(out)])
    assert code == 0
    assert (out / "llm" / "model.safetensors").is_file() and (out / "edit_head.safetensors").is_file()
    assert any((out / "unet").glob("*.safetensors")) and not list(out.rglob("*.bin"))
    config = json.loads((out / "mgie_config.json").read_text())
    assert config["llm"]["template"] == "llava_v1" and config["llm"]["max_new_tokens"] == 96
    assert config["llm"]["no_repeat_ngram_size"] == 3 and config["diffusion"]["pipeline"] == str(r["shell"])
    assert "'emb'" in config["conversion"]["emb"]

    g = MGIEGuide(model=str(out), steps=2, max_new_tokens=6, progress=False)
    g.load(BackendCache())
    m = g.mllm
    # [IMG] ids looked up (not hard-coded 32003) and last; the released 'emb' is used
    assert m.img_ids[0] == len(r["tok"]) and m.tokenizer.convert_ids_to_tokens(m.img_ids[-1]) == "[IMG7]"
    torch.testing.assert_close(g.emb, r["mllm"]["emb"].half().float())
    # the language model equals a stock LLaMA with the original LLaVA-v1 names (mllm.pt embeddings)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(r["tok"]) + 8, hidden_size=H, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         tie_word_embeddings=False))
    ref = {k: v.half().float() for k, v in r["sd"].items() if "mm_projector" not in k and "rotary" not in k
           and "vision_tower" not in k}
    ref.update({k: v.half().float() for k, v in r["mllm"].items() if k in ("model.embed_tokens.weight", "lm_head.weight")})
    llama.load_state_dict(ref)
    ids = torch.tensor([[2, 5, 6, 7, len(r["tok"]) + 3]])
    with torch.inference_mode():
        torch.testing.assert_close(m.model(input_ids=ids).logits, llama(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
        # transformers' 2-layer projector with the identity linear_2 == LLaVA-v1's single mm_projector Linear
        x = torch.randn(3, 32)
        w, b = r["sd"]["model.mm_projector.weight"].half().float(), r["sd"]["model.mm_projector.bias"].half().float()
        torch.testing.assert_close(m.model.model.multi_modal_projector(x), x @ w.T + b, atol=1e-5, rtol=1e-4)
    # prompt in the LLaVA-v1 template with <im_start> + image_seq_length x <im_patch> + <im_end>
    toks = m.tokenizer.convert_ids_to_tokens(m.prompt_ids("make it red"))
    assert toks.count("<im_patch>") == 16 and toks[toks.index("<im_start>") + 17] == "<im_end>"
    # unet.pt swapped into the shell, edit head weights unchanged
    unet_sd = g.backend.unet.state_dict()
    torch.testing.assert_close(unet_sd["conv_in.weight"], r["unet"]["conv_in.weight"].float())
    torch.testing.assert_close(g.edit_head.state_dict()["query"], r["mllm"]["edit_head.query"].half().float())

    direct = MGIEGuide(model=str(root), vision_tower=str(r["vision"]), pipeline=str(r["shell"]), steps=2,
                       max_new_tokens=6, progress=False)
    direct.load(BackendCache())
    req = EditRequest(images=[contract_image((40, 24))], instructions=["make the red circle blue"], seed=3)
    a, b = g.edit(req), direct.edit(req)
    assert a.text == b.text
    assert np.abs(np.asarray(a.images[0], int) - np.asarray(b.images[0], int)).max() <= 1


def test_emb_is_derived_when_the_release_lacks_it(tmp_path):
    root = tmp_path / "_ckpt"
    r = official_release(root, with_emb=False)
    conv = convert_official(root / "LLaVA-7B-v1", root / "mgie_7b", vision_tower=str(r["vision"]),
                            pipeline=str(r["shell"]), dtype=torch.float32)
    assert "no 'emb' key" in conv.report["emb"]
    torch.testing.assert_close(conv.emb, r["mllm"]["model.embed_tokens.weight"][-8:].half().float())


def test_convert_command_errors(tmp_path, capsys):
    assert cli.main(["convert", "mgie", "--ckpt", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
