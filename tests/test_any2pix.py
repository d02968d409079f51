"""The any2pix guide: answer grammar, vector arithmetic, prior, audio features and input errors always; the
whole guide on a tiny random weights folder when the optional ImageBind model code is installed."""
from __future__ import annotations

import io
import math
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from editkit import editworld as ew
from editkit.errors import GuideError, InvalidInputError, MissingInputError
from editkit_any2pix import grammar, mixing
from editkit_any2pix.encoders import AudioSettings, audio_input, kaldi_fbank, mel_banks
from editkit_any2pix.inputs import audio_wave, referenced
from editkit_any2pix.language import placeholder_prompt, references
from editkit_any2pix.prior import PriorConfig, RefinementPrior

IDS = {t: 100 + i for i, t in enumerate(grammar.SPECIAL_TOKENS)}
IM_GEN, VIDEO, BASE = IDS["<im_gen>"], IDS["<video>"], IDS["<base>"]


def test_grammar_reads_the_states_that_predict_each_slot():
    prompt = [1, 2, 3, 4]
    answer = [BASE, 7, IM_GEN, VIDEO, 8, VIDEO, 9, VIDEO, 2]
    p = grammar.parse(prompt + answer, 4, IDS, "<base> x <im_gen> [a blue circle] additions: a:<video> b:<video>")
    assert p.base == 4 + 0 - 1 and p.gen == 4 + 3 - 1 and p.subs == [4 + 5 - 1, 4 + 7 - 1]
    assert p.caption == "a blue circle"
    q = grammar.parse(prompt + [IM_GEN, VIDEO], 4, IDS, "no caption")
    assert q.base is None and q.caption is None and q.subs == []


@pytest.mark.parametrize("answer", [[7, 8, 9], [VIDEO, IM_GEN, 7]])
def test_grammar_without_a_gen_slot_is_a_clear_error(answer):
    with pytest.raises(GuideError, match="guide 'any2pix'.*(no <im_gen>|no <video> slot after <im_gen>)"):
        grammar.parse([1, 2] + answer, 2, IDS, "text")


def test_references_and_prompt():
    assert references("replace the square with [image1] and add [audio2]") == ["image1", "audio2"]
    prompt = placeholder_prompt("add the [audio1] at the top", "USER: {instruction} ASSISTANT:")
    assert prompt == "USER: <video> add the <video> at the top ASSISTANT:"


def test_condition_mix_and_polar_mix():
    base = mixing.to_norm(torch.tensor([[3.0, 4.0]]), 20.0)
    assert math.isclose(float(base.norm()), 20.0, rel_tol=1e-6)
    gen, prior = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    c = mixing.condition_mix(base, gen, prior, (0.0, 0.4, 1.0), 20.0)
    expect = mixing.to_norm(0.4 * gen + torch.tensor([[0.0, 20.0]]), 20.0)
    torch.testing.assert_close(c, expect)
    inv, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(mixing.polar_mix(inv, noise, 1.0), inv)
    mixed = mixing.polar_mix(inv, noise, 0.7)
    for k in range(2):
        target = 0.7 * inv[k].norm() + 0.3 * noise[k].norm()
        assert math.isclose(float(mixed[k].norm()), float(target), rel_tol=1e-5)


def test_prior_guidance_is_one_batched_extrapolation():
    torch.manual_seed(0)
    prior = RefinementPrior(PriorConfig(embed_dim=8, width=16, layers=1, heads=2)).eval()
    gen = torch.randn(3, 8)
    y = prior.refine(gen, guidance=10.0, score=6.5, negative_score=2.0)
    with torch.no_grad():
        y_c = prior(gen / gen.norm(dim=-1, keepdim=True) * 100, torch.full((3,), 6.5), torch.full((3,), 3))
        y_u = prior(torch.zeros_like(gen), torch.full((3,), 2.0), torch.full((3,), 3))
    torch.testing.assert_close(y, y_u + 10.0 * (y_c - y_u), rtol=1e-4, atol=1e-4)


def test_fbank_matches_kaldi_conventions():
    sr = 16000
    t = np.arange(sr) / sr
    tone = torch.tensor(np.sin(2 * np.pi * 1000 * t), dtype=torch.float32)
    fb = kaldi_fbank(tone, 64)
    assert fb.shape == (1 + (sr - 400) // 160, 64)  # 25 ms frames every 10 ms, edges snipped
    banks = mel_banks(64, 512, sr)
    centres = (banks * torch.arange(257)).sum(1) / banks.sum(1) * sr / 512
    peak = int(fb.mean(0).argmax())
    assert abs(float(centres[peak]) - 1000) < 120  # the energy sits in the filter around 1 kHz
    x = audio_input(tone.numpy(), AudioSettings(clips=3, clip_seconds=0.5, mel_bins=64, target_len=60))
    assert x.shape == (3, 1, 64, 60)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_audio_inputs_and_their_errors(tmp_path):
    good = tmp_path / "a.wav"
    good.write_bytes(_wav_bytes(np.zeros(8000, np.float32) + 0.1, 8000))
    wave_ = audio_wave("audio1", good)
    assert wave_.shape == (16000,) and abs(float(wave_.mean()) - 0.1) < 1e-3  # resampled to 16 kHz
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(InvalidInputError, match="input 'audio1': .*b.wav' is not a readable 16-bit PCM WAV"):
        audio_wave("audio1", bad)
    with pytest.raises(InvalidInputError, match="no such file"):
        audio_wave("audio1", tmp_path / "missing.wav")
    with pytest.raises(InvalidInputError, match="not a WAV file"):
        audio_wave("audio1", tmp_path / "clip.mp3")
    with pytest.raises(MissingInputError, match=r"refers to \[audio2\] but no input 'audio2'"):
        referenced({"audio1": good}, ["audio2"])
    with pytest.raises(InvalidInputError, match="input 'image1' must be an image"):
        referenced({"image1": good}, ["image1"])


# ------------------------------------------------------------------ the whole guide (needs ImageBind's code)
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from editkit.errors import GuideLoadError
    from editkit_any2pix import tiny
    from editkit_any2pix.encoders import import_imagebind

    try:
        import_imagebind()
    except GuideLoadError:
        pytest.skip("optional extra not installed: pip install --no-deps imagebind-unofficial==0.1.1 iopath einops")

    return tiny.build_folder(tmp_path_factory.mktemp("any2pix") / "w", seed=0)


def _guide(folder, answer_text: str | None = None, **options):
    from editkit.backend import BackendCache
    from editkit_any2pix import Any2PixGuide

    guide = Any2PixGuide(model=str(folder), steps=4, progress=False, **options)
    guide.load(BackendCache())
    if answer_text is not None:  # replace the folder's scripted answer
        tok = guide.weights.llm.tokenizer
        answer = tok(answer_text, add_special_tokens=False).input_ids + [tok.eos_token_id]
        guide.weights.llm.model.generate = lambda **kw: torch.tensor([answer])
    return guide


def test_scripted_tiny_llm_emits_the_grammar(folder):
    guide = _guide(folder)
    features = torch.randn(2, 32)
    answer = guide.weights.llm.answer("add the [audio1] at the top", features, temperature=0.3, max_new_tokens=12,
                                      seed=0)
    assert answer.base is not None and answer.gen.shape == (32,) and answer.subs == []


def _audio_sample():
    return next(s for s in ew.generate("test", 80, seed=0, types="multimodal") if "audio1" in s.inputs)


def _edit_recording_unet_calls(guide):
    """Edit one audio sample; returns the request, the result and every UNet call's ``added_cond_kwargs``."""
    from editkit.types import EditRequest

    calls = []
    hook = guide.backend.unet.register_forward_hook(lambda m, a, k, out: calls.append(k.get("added_cond_kwargs")),
                                                    with_kwargs=True)
    s = _audio_sample()
    req = EditRequest(images=[Image.fromarray(s.source)], instructions=[s.instruction],
                      inputs={"audio1": s.inputs["audio1"]}, seed=0)
    try:
        result = guide.edit(req)
    finally:
        hook.remove()
    return req, result, calls


def test_guide_end_to_end_with_a_scripted_answer(folder):
    guide = _guide(folder, "<base> <im_gen> <video> [ a blue circle ]")
    req, result, calls = _edit_recording_unet_calls(guide)
    assert result.images[0].size == (64, 64) and result.extras["base_index"] == [0]
    # inversion (4 calls, zero image embeddings) then 4 guided steps with [cond, null] image embeddings
    assert len(calls) == 8
    sampled = calls[-1]["image_embeds"][0]
    assert sampled.shape == (2, 1, 32) and float(sampled[1].abs().sum()) == 0.0
    assert math.isclose(float(sampled[0].norm()), 20.0, rel_tol=1e-4)  # the mix renormalised to `norm`
    again = guide.edit(req)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))  # seeded


@pytest.fixture(scope="module")
def sdxl_folder(folder, tmp_path_factory):  # after `folder`: skipped the same way without ImageBind's code
    from editkit.backend.tiny import tiny_sdxl_components
    from editkit_any2pix import tiny

    return tiny.build_folder(tmp_path_factory.mktemp("any2pix-sdxl") / "w", seed=0,
                             components=tiny_sdxl_components(0))


def test_guide_end_to_end_on_an_sdxl_pipeline(sdxl_folder):
    """SDXL UNet + IP-Adapter: every UNet call gets the image tokens, the pooled prompt and the size ids together."""
    guide = _guide(sdxl_folder, "<base> <im_gen> <video> [ a blue circle ]")
    backend = guide.backend
    assert backend.is_sdxl and backend.unet.config.cross_attention_dim == 80  # adapter built for 32 + 48
    req, result, calls = _edit_recording_unet_calls(guide)
    assert result.images[0].size == (64, 64)
    empty, caption = backend.encode_prompts([""])[1], backend.encode_prompts(["a blue circle"])[1]
    # inversion: 4 calls with the empty prompt's pooled embedding and zero image embeddings
    assert len(calls) == 8 and all(set(c) == {"image_embeds", "text_embeds", "time_ids"} for c in calls)
    torch.testing.assert_close(calls[0]["text_embeds"], empty, rtol=0, atol=0)
    assert calls[0]["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]
    assert float(calls[0]["image_embeds"][0].abs().sum()) == 0.0
    # sampling: [caption, negative prompt ("" in the tiny folder)] next to [the mix, zeros]
    sampled = calls[-1]
    torch.testing.assert_close(sampled["text_embeds"], torch.cat([caption, empty]), rtol=0, atol=0)
    assert sampled["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 2
    embeds = sampled["image_embeds"][0]
    assert embeds.shape == (2, 1, 32) and float(embeds[1].abs().sum()) == 0.0
    assert math.isclose(float(embeds[0].norm()), 20.0, rel_tol=1e-4)
    again = guide.edit(req)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


def test_guide_base_is_chosen_among_the_image_inputs(folder):
    from editkit.types import EditRequest

    guide = _guide(folder, "<base> <im_gen> <video>")
    src = Image.fromarray(ew.generate("test", 1, seed=3)[0].source)
    other = Image.new("RGB", (64, 64), (250, 20, 20))
    w = guide.weights
    target = w.encoder.encode_images([other])  # make [base] point at image1: read-out returns its feature
    guide.weights.llm.out_projector = lambda h: target[0] if h.ndim == 1 else target
    result = guide.edit(EditRequest(images=[src], instructions=["replace the square with [image1]"],
                                    inputs={"image1": other}, seed=1))
    assert result.extras["base_index"] == [1]


def test_guide_errors(folder):
    from editkit.types import EditRequest

    guide = _guide(folder, "a plain answer without slots")
    src = Image.fromarray(ew.generate("test", 1, seed=3)[0].source)
    with pytest.raises(GuideError, match="no <im_gen>"):
        guide.edit(EditRequest(images=[src], instructions=["make it blue"], seed=0))
    with pytest.raises(MissingInputError, match="audio1"):
        guide.edit(EditRequest(images=[src], instructions=["add the [audio1] at the top"], seed=0))


def test_compact_half_storage_loads_back_the_same_model(folder, tmp_path):
    """The committed tiny weights are stored in float16 with a compact ImageBind (used towers, vocabulary rows):
    less than half the bytes, and the loaded model matches the float32 one to float16 rounding."""
    from safetensors.torch import load_file

    from editkit_any2pix import layout

    full = layout.load(str(folder))
    vocabulary = ["a", "small", "red", "circle", "on", "the", "left"]
    half = layout.save(tmp_path / "half", encoder=full.encoder, lm=full.llm.model, tokenizer=full.llm.tokenizer,
                       in_projector=full.llm.in_projector, out_projector=full.llm.out_projector, prior=full.prior,
                       adapter=full.adapter, audio=full.encoder.audio, image_size=full.encoder.image_size,
                       pipeline=str(folder), storage_dtype=torch.float16, text_vocabulary=vocabulary)
    stored = load_file(half / "imagebind.safetensors")
    assert not any(k.startswith("modality_trunks.depth.") for k in stored)
    assert stored["modality_preprocessors.text.token_embedding.values"].dtype == torch.float16
    for name in ("imagebind.safetensors", "projectors.safetensors", "ip_adapter.safetensors"):
        assert (half / name).stat().st_size < 0.55 * (folder / name).stat().st_size, name
    back = layout.load(str(half))
    assert back.pipeline == str(folder)
    assert next(back.llm.model.parameters()).dtype == torch.float32  # computation stays float32
    texts = ["a small red circle on the left"]
    assert torch.allclose(back.encoder.encode_texts(texts), full.encoder.encode_texts(texts), atol=2e-2, rtol=2e-2)
    img = [Image.fromarray(ew.generate("test", 1, seed=0)[0].source)]
    assert torch.allclose(back.encoder.encode_images(img), full.encoder.encode_images(img), atol=2e-2, rtol=2e-2)
    # a word outside the stored vocabulary reads zero rows: it no longer encodes like the full model
    assert not torch.allclose(back.encoder.encode_texts(["purple"]), full.encoder.encode_texts(["purple"]), atol=1e-3)


def test_relative_pipeline_paths_resolve_against_the_folder(tmp_path):
    from editkit_any2pix.layout import pipeline_source

    folder = tmp_path / "a2p"
    assert pipeline_source(folder, {"diffusion": {"pipeline": "."}}) == str(folder)
    assert pipeline_source(folder, {"diffusion": {"pipeline": "../editworld-tiny"}}) == str(tmp_path / "editworld-tiny")
    assert pipeline_source(folder, {"diffusion": {"pipeline": "org/model"}}) == "org/model"


def test_quantize_is_validated_and_needs_bitsandbytes_and_cuda(monkeypatch):
    import importlib.util

    from editkit.errors import GuideConfigError
    from editkit.quantization import check_quantize, quantized_kwargs
    from editkit_any2pix import Any2PixGuide

    with pytest.raises(GuideConfigError, match="guide 'any2pix': option 'quantize'"):
        Any2PixGuide(quantize="2bit")
    check_quantize("any2pix", "none", "cpu")  # nothing to check
    assert quantized_kwargs("none", torch.float16, "cuda", ["lm_head"]) == {}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else object())
    with pytest.raises(GuideConfigError, match="option 'quantize'.*needs bitsandbytes"):
        check_quantize("any2pix", "8bit", "cuda")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    with pytest.raises(GuideConfigError, match="option 'quantize'.*needs a CUDA device"):
        check_quantize("any2pix", "4bit", "cpu")
    check_quantize("any2pix", "4bit", "cuda:0")
