"""Recipe ``imagebind``: tiny ImageBind towers (the ``imagebind`` package's ``ImageBindModel``) aligned on EditWorld.

Every EditWorld object (4 kinds x 6 colours x 2 sizes) has a cut-out image, a description ("a small red
circle") and a synthetic sound (timbre from the kind, pitch from the colour, octave from the size). The
towers learn one joint space with symmetric InfoNCE losses, as ImageBind binds every modality to images:
image <-> text, audio <-> image, audio <-> text, plus whole scenes <-> captions (the any2pix guide also
encodes the source image). Sounds are augmented (gain, noise, a circular shift of up to 0.1 s) and
cut-outs jittered (shift up to 4 pixels), so the towers cannot memorise 48 fixed inputs. Needs the
optional ImageBind model code (``pip install --no-deps imagebind-unofficial==0.1.1``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from ..config import EditkitModel
from .common import RunLog, cosine_lr, info_nce, plugin_module, set_threads, write_recipe

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CONFIG_NAME = "imagebind_config.json"
WEIGHTS_NAME = "imagebind.safetensors"


class ImageBindRecipe(EditkitModel):
    out: Path = Field(ASSETS / "editworld-imagebind", description="Output folder (config + safetensors).")
    steps: int = Field(1500, ge=1, le=10_000_000, description="Optimiser steps.")
    batch_size: int = Field(64, ge=2, le=4096, description="Objects (and scenes) per step.")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Peak learning rate (cosine schedule).")
    dim: int = Field(64, ge=8, le=1024, description="Width of every tower and of the joint space.")
    scenes: int = Field(600, ge=2, le=100_000, description="EditWorld training scenes with captions.")
    variants: int = Field(8, ge=1, le=256, description="Augmented copies of each sound held in memory.")
    temperature: float = Field(0.07, gt=0, le=1.0, description="InfoNCE temperature.")
    seed: int = Field(0, description="Seed of data and initialisation.")


def _plugin(module: str):
    return plugin_module("any2pix", module)


def objects() -> list[tuple[str, str, str]]:
    from ..editworld.world import COLOURS, KINDS, SIZES

    return [(k, c, s) for k in KINDS for c in COLOURS for s in SIZES]


def _cutouts(rng: np.random.Generator, shift: int) -> list:
    from PIL import Image

    from ..editworld import render_cutout
    from ..editworld.world import Obj

    out = []
    for kind, colour, size in objects():
        img = render_cutout(Obj(kind, colour, size, "center"), 64)
        if shift:
            dy, dx = rng.integers(-shift, shift + 1, size=2)
            img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        out.append(Image.fromarray(img))
    return out


def _sounds(rng: np.random.Generator, augment: bool) -> list[np.ndarray]:
    from ..editworld import SAMPLE_RATE, object_sound

    out = []
    for kind, colour, size in objects():
        wave = object_sound(kind, colour, size).astype(np.float32)
        if augment:
            wave = np.roll(wave * rng.uniform(0.5, 1.2), int(rng.integers(0, SAMPLE_RATE // 10)))
            wave = wave + rng.normal(0, 0.01, wave.shape).astype(np.float32)
        out.append(wave)
    return out


def train_imagebind(recipe: ImageBindRecipe, progress: bool = True) -> dict:
    from safetensors.torch import save_file

    from .. import editworld

    encoders, tiny = _plugin("encoders"), _plugin("tiny")
    set_threads()
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    log = RunLog(recipe.out / "logs" / "imagebind")
    audio = tiny.TINY_AUDIO
    encoder = encoders.ImageBindEncoder(tiny.imagebind_kwargs(recipe.dim), image_size=224, audio=audio)
    model = encoder.model.train().requires_grad_(True)
    mod = encoder.modality

    names = [f"a {s} {c} {k}" for k, c, s in objects()]
    n_obj = len(names)
    texts = encoder.tokenizer(names)
    images = [encoders.vision_input(_cutouts(rng, 4), 224) for _ in range(recipe.variants)]
    sounds = [torch.stack([encoders.audio_input(w, audio) for w in _sounds(rng, True)]) for _ in range(recipe.variants)]
    scenes = editworld.generate("train", recipe.scenes, seed=recipe.seed, types="explicit")
    from PIL import Image

    scene_px = encoders.vision_input([Image.fromarray(s.source) for s in scenes], 224)
    scene_txt = encoder.tokenizer([s.source_caption for s in scenes])
    log.write(objects=n_obj, scenes=len(scenes), params=sum(p.numel() for p in model.parameters()))

    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(recipe.seed)
    bar = tqdm(range(recipe.steps), desc="train imagebind", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.steps, recipe.lr, warmup=100)
        idx = torch.randint(0, n_obj, (recipe.batch_size,), generator=gen)
        v_img, v_snd = (int(torch.randint(0, recipe.variants, (1,), generator=gen)) for _ in range(2))
        sidx = torch.randint(0, len(scenes), (recipe.batch_size,), generator=gen)
        out = model({mod.VISION: torch.cat([images[v_img][idx], scene_px[sidx]]),
                     mod.TEXT: torch.cat([texts[idx], scene_txt[sidx]]), mod.AUDIO: sounds[v_snd][idx]})
        b = recipe.batch_size
        img, txt, snd = out[mod.VISION][:b], out[mod.TEXT][:b], out[mod.AUDIO]
        s = 1.0 / recipe.temperature
        loss = (info_nce(img, txt, idx, s) + info_nce(snd, img, idx, s) + info_nce(snd, txt, idx, s)
                + info_nce(out[mod.VISION][b:], out[mod.TEXT][b:], sidx, s)) / 4
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            log.write(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"])

    model.eval().requires_grad_(False)
    recipe.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(recipe.out / WEIGHTS_NAME))
    from dataclasses import asdict

    (recipe.out / CONFIG_NAME).write_text(json.dumps({"model": encoder.model_kwargs, "image_size": 224,
                                                      "audio": asdict(audio)}, indent=2))
    results = retrieval(encoder, names, recipe.seed)
    results["final_loss"] = round(float(loss.item()), 4)
    log.write(done=True, **results)
    write_recipe(recipe.out, "imagebind", recipe.model_dump(mode="json"), log.elapsed, results)
    return results


@torch.no_grad()
def retrieval(encoder, names: list[str], seed: int) -> dict:
    """Top-1 accuracies among all 48 objects on fresh augmentations: audio->image, audio->text, text->image."""
    rng = np.random.default_rng(seed + 1)
    img = F.normalize(encoder.encode_images(_cutouts(rng, 4)), dim=-1)
    snd = F.normalize(encoder.encode_audio(_sounds(rng, True)), dim=-1)
    txt = F.normalize(encoder.encode_texts(names), dim=-1)
    truth = torch.arange(len(names))

    def top1(a, b):
        return round(float(((a @ b.t()).argmax(1) == truth).float().mean()), 4)

    return {"audio_to_image_top1": top1(snd, img), "audio_to_text_top1": top1(snd, txt),
            "text_to_image_top1": top1(txt, img), "candidates": len(names)}
