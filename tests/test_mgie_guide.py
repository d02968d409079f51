"""The mgie guide on tiny random weights (plumbing only): prompts, [IMG] handling, edit head, guidance wiring."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editkit.backend import BackendCache
from editkit.errors import GuideConfigError, GuideLoadError
from editkit.testing import contract_image
from editkit.types import EditRequest
from editkit_mgie import MGIEGuide
from editkit_mgie.edit_head import EditHead, EditHeadConfig
from editkit_mgie.prompt import build_prompt, clean_expressive, img_positions
from editkit_mgie.tiny import build_random


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return build_random(tmp_path_factory.mktemp("mgie") / "w", max_new_tokens=10)


@pytest.fixture(scope="module")
def guide(weights):
    g = MGIEGuide(model=str(weights), steps=2, max_new_tokens=16, progress=False)
    g.load(BackendCache())
    return g


class Force:
    """A logits processor that makes greedy decoding emit ``target`` (token ids, all distinct)."""

    def __init__(self, target: list[int]):
        self.target = target
        self.next = {a: b for a, b in zip(target, target[1:])}

    def __call__(self, input_ids, scores):
        out = torch.full_like(scores, -1e9)
        for b, last in enumerate(input_ids[:, -1].tolist()):
            out[b, self.next.get(last, self.target[0])] = 0.0
        return out


def forced(guide, text="make the red circle blue"):
    tok = guide.mllm.tokenizer
    return Force(tok(text, add_special_tokens=False).input_ids + list(guide.mllm.img_ids) + [tok.eos_token_id])


REQ = dict(images=[contract_image((37, 29))], instructions=["turn the red circle blue"], seed=1)


# ------------------------------------------------------------------------------- text rules
def test_official_prompt_is_the_llava_v1_template():
    p = build_prompt("make it snow", template="llava_v1", image_token="<im_patch>", image_seq_length=3,
                     im_start="<im_start>", im_end="<im_end>")
    assert p == ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions. USER: what will this image be "
                 "like if 'make it snow'\n<im_start><im_patch><im_patch><im_patch><im_end> ASSISTANT:")


def test_tiny_prompt_tokens(guide):
    m = guide.mllm
    toks = m.tokenizer.convert_ids_to_tokens(m.prompt_ids("Make the red circle blue."))
    assert toks[0] == "<bos>" and toks[-2:] == ["assistant", ":"]
    assert toks.count("<image>") == m.image_seq_length == 16
    assert toks[1:15] == ["user", ":", "what", "will", "this", "image", "be", "like", "if", "'", "make", "the",
                          "red", "circle"]
    assert "<unk>" not in toks
    # the [IMG] tokens are the last rows of the embedding matrix; EMB is those rows
    vocab = m.model.get_input_embeddings().weight.shape[0]
    assert list(m.img_ids) == list(range(vocab - 8, vocab))


@pytest.mark.parametrize("raw, expected", [
    ("ASSISTANT: The sky turns red. The sun sets. Birds fly. [IMG0][IMG1]</s>", "The sky turns red. The sun sets."),
    ("make the small red circle blue [IMG0] [IMG1] [IMG2] <eos>", "make the small red circle blue."),
    ("Paint the car red, an Alternative would be blue.", "Paint the car red, an."),
    ("a photo. [IMG0] more text. after", "a photo."),
    ("[IMG0] [IMG1]", ""),  # the reference raises IndexError here
    ("", ""),
])
def test_expressive_instruction_rule(raw, expected):
    assert clean_expressive(raw, eos_token="<eos>") == expected


def test_img_positions_rule():
    prompt = [5] * 20
    gen = [7, 8, 100, 101, 102, 103, 104, 105, 106, 107, 3]  # two words, [IMG0..7] (100..107), eos=3
    p, found, length = img_positions(prompt + gen, 20, 100, 3)
    assert found and p == 20 + 2 - 1 and length == 31  # the state that predicts [IMG0]
    # batch padding after eos does not move anything
    assert img_positions(prompt + gen + [0, 0, 0], 20, 100, 3) == (p, True, 31)
    # no [IMG0]: the last positions, len(hid) - 9 (reference fallback)
    p, found, length = img_positions(prompt + [7] * 12, 20, 100, 3)
    assert not found and p == (32 - 1) - 9
    # [IMG0] too late to have 8 states after it: clamped like the reference (min(p, len(hid) - 9))
    p, found, _ = img_positions(prompt + [7, 100, 101], 20, 100, 3)
    assert found and p == (23 - 1) - 9


# ------------------------------------------------------------------------------- edit head
def test_edit_head_shapes_names_and_null():
    cfg = EditHeadConfig(llm_dim=16, hidden=8, num_queries=5, out_dim=12, nhead=4, ff=32)
    head = EditHead(cfg)
    out = head(torch.randn(3, 8, 16), torch.randn(8, 16))
    assert out.shape == (3, 5, 12)
    keys = set(head.state_dict())
    assert {"llm2hid.weight", "query", "hid2feat.bias", "mapper.encoder.layers.3.self_attn.in_proj_weight",
            "mapper.decoder.layers.3.multihead_attn.in_proj_weight", "mapper.decoder.norm.weight"} <= keys
    assert EditHeadConfig.from_state_dict(head.state_dict(), num_img_tokens=8) == cfg
    emb = torch.randn(8, 16)
    torch.testing.assert_close(head.null(emb), head(torch.zeros(1, 8, 16), emb))
    # full-size sizes of the reference: about 32.0 M parameters
    assert abs(sum(p.numel() for p in EditHead().parameters()) / 1e6 - 32.0) < 0.2


# ------------------------------------------------------------------------------- the guide
def test_img_tokens_hidden_states_text_and_null(guide, monkeypatch):
    monkeypatch.setattr(guide.mllm, "logits_processors", [forced(guide)])
    req = EditRequest(**REQ)
    out = guide.run_llm(req)
    assert out.found == [True] and out.texts == ["make the red circle blue."]
    # the states at the positions that predict [IMG0..7] == one forward pass over the sequence[:-1]
    seq = out.sequences
    m = guide.mllm
    with torch.inference_mode():
        full = m.model(input_ids=seq[:, :-1], pixel_values=m.pixel_values(req.images),
                       output_hidden_states=True).hidden_states[-1]
    img0 = seq[0].tolist().index(m.img_ids[0])
    torch.testing.assert_close(out.hidden[0], full[0, img0 - 1: img0 + 7], atol=1e-5, rtol=1e-4)
    cond = guide.prepare(req)
    torch.testing.assert_close(cond.cond, guide.edit_head(full[:, img0 - 1: img0 + 7], m.emb()), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cond.null, guide.edit_head(torch.zeros(1, 8, full.shape[-1]), m.emb()))
    assert cond.cond.shape == (1, 8, 32) and cond.null.shape == (1, 8, 32)
    result = guide.edit(req)
    assert result.text == ["make the red circle blue."] and result.warnings == []
    assert {"llm", "edit_head", "encode", "denoise", "decode"} <= set(result.timings)


def test_missing_img_token_falls_back_with_a_warning(guide):
    result = guide.edit(EditRequest(**REQ))  # random weights: no [IMG0] within 16 tokens
    assert result.extras["img_token_found"] == [False]
    assert len(result.warnings) == 1 and "[IMG0]" in result.warnings[0] and "last 8" in result.warnings[0]
    g = MGIEGuide(model=guide.config.model, steps=1, max_new_tokens=1, progress=False)
    g.load(BackendCache())
    assert g.edit(EditRequest(**REQ)).images[0].size == (37, 29)  # never an IndexError


def test_dual_guidance_wiring(guide, monkeypatch):
    seen = {}

    def fake_generate(cond, request, **kwargs):
        seen["cond"], seen["kwargs"] = cond, kwargs
        return [im.copy() for im in request.images]

    monkeypatch.setattr(guide.backend, "generate", fake_generate)
    guide.edit(EditRequest(**REQ))
    cond = seen["cond"]
    assert cond.mode == "ip2p" and cond.text_scale == 7.5 and cond.image_scale == 1.5
    assert cond.null is guide._null  # edit_head(zeros, EMB), never the empty prompt
    assert guide.backend.text_encoder is None  # the shell's text encoder is not even loaded
    # 'auto': the shell's own scheduler (the backend resolves it per folder, as diffusers' pipeline does)
    assert seen["kwargs"]["scheduler"] == "auto" and seen["kwargs"]["steps"] == 2


def test_batches_match_single_edits(guide, monkeypatch):
    imgs = [contract_image((32, 32)), contract_image((32, 32)).transpose(0)]
    instr = ["make it red", "remove the blue star at the top left"]  # different prompt lengths: left padding
    for procs in ([], [forced(guide)]):
        monkeypatch.setattr(guide.mllm, "logits_processors", procs)
        batch = guide.edit(EditRequest(images=imgs, instructions=instr, seed=4))
        one = guide.edit(EditRequest(images=imgs[1:], instructions=instr[1:], seed=5))
        assert batch.text[1] == one.text[0] and batch.extras["llm_output"][1] == one.extras["llm_output"][0]
        diff = np.abs(np.asarray(batch.images[1], int) - np.asarray(one.images[0], int)).max()
        assert diff <= 1
        assert len(batch.text) == 2


def test_resolution_option_crops_like_the_app(weights):
    g = MGIEGuide(model=str(weights), steps=1, resolution=24, progress=False)
    g.load(BackendCache())
    assert g.edit(EditRequest(**REQ)).images[0].size == (24, 24)


def test_options_are_validated():
    for option, value in [("text_scale", -1), ("image_scale", float("nan")), ("max_new_tokens", 0),
                          ("quantize", "2bit"), ("scheduler", "plms"), ("model", "")]:
        with pytest.raises(GuideConfigError, match=f"guide 'mgie': option '{option}'"):
            MGIEGuide(**{option: value})
    with pytest.raises(GuideConfigError, match="no_such"):
        MGIEGuide(no_such=1)


def test_load_errors_are_clear(tmp_path, weights):
    with pytest.raises(GuideLoadError, match="no such folder"):
        MGIEGuide(model=str(tmp_path / "nope")).load(BackendCache())
    with pytest.raises(GuideLoadError, match="neither"):
        MGIEGuide(model=str(tmp_path)).load(BackendCache())
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(GuideConfigError, match="option 'quantize'.*bitsandbytes"):
            MGIEGuide(model=str(weights), quantize="4bit").load(BackendCache())


def test_unset_guidance_takes_the_checkpoints_sampling_section(weights, tmp_path):
    import json
    import shutil

    tuned = tmp_path / "tuned"
    shutil.copytree(weights, tuned)
    config = json.loads((tuned / "mgie_config.json").read_text())
    (tuned / "mgie_config.json").write_text(json.dumps({**config, "sampling": {"text_scale": 1.0, "image_scale": 1.25}}))
    hidden = torch.zeros(1, 8, 32)
    backends = BackendCache()
    for folder, options, expected in [(weights, {}, (7.5, 1.5)), (tuned, {}, (1.0, 1.25)),
                                      (tuned, {"image_scale": 2.0}, (1.0, 2.0))]:
        g = MGIEGuide(model=str(folder), steps=2, progress=False, **options)
        g.load(backends)  # one cache for all three: each folder keeps its own recommendation
        cond = g.conditioning(hidden)
        assert (cond.text_scale, cond.image_scale) == expected


def test_expressive_text_conditioning_is_the_lgie_ablation(weights, monkeypatch, tmp_path):
    """conditioning='expressive_text' (the paper's LGIE): the UNet reads the text encoder's states of the
    expressive instruction the LLM wrote, and the null branch is the empty prompt; the edit head is bypassed."""
    import json
    import shutil

    from editkit.backend.tiny import save_components, tiny_components

    with pytest.raises(GuideLoadError, match="cannot load text_encoder"):  # the random folder's shell has none
        MGIEGuide(model=str(weights), conditioning="expressive_text").load(BackendCache())
    # the committed layout: the shell is an ip2p folder with a text encoder, the UNet the folder's own
    weights = shutil.copytree(weights, tmp_path / "w")
    save_components(tiny_components(3), tmp_path / "ip2p")
    config = json.loads((weights / "mgie_config.json").read_text())
    config["diffusion"] = {"pipeline": "../ip2p", "unet": "./unet"}
    (weights / "mgie_config.json").write_text(json.dumps(config))
    backends = BackendCache()
    mgie = MGIEGuide(model=str(weights), steps=2, max_new_tokens=16, progress=False)
    lgie = MGIEGuide(model=str(weights), steps=2, max_new_tokens=16, progress=False, conditioning="expressive_text")
    mgie.load(backends)
    lgie.load(backends)
    assert mgie.backend is not lgie.backend and mgie.backend.text_encoder is None  # MGIE never loads it
    assert mgie.backend.unet is not lgie.backend.unet
    torch.testing.assert_close(lgie.backend.unet.state_dict()["conv_in.weight"],
                               mgie.backend.unet.state_dict()["conv_in.weight"])  # the same UNet weights
    for g in (mgie, lgie):
        monkeypatch.setattr(g.mllm, "logits_processors", [forced(g)])
    req = EditRequest(**REQ)
    out = lgie.run_llm(req)
    assert out.texts == ["make the red circle blue."]
    cond = lgie.prepare(req)
    torch.testing.assert_close(cond.cond, lgie.backend.encode_text(["make the red circle blue."]))
    torch.testing.assert_close(cond.null, lgie.backend.encode_text([""]))
    head = mgie.prepare(req)
    assert head.cond.shape[1] == mgie.edit_head.config.num_queries != cond.cond.shape[1]  # the head is bypassed
    a, b = (g.edit(req).images[0] for g in (mgie, lgie))
    assert a.size == b.size and np.abs(np.asarray(a, float) - np.asarray(b, float)).max() > 0
    with pytest.raises(ValueError, match="expressive instructions"):
        lgie.conditioning(out.hidden)
