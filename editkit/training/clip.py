"""Recipe ``clip``: a tiny open_clip CLIP trained contrastively on EditWorld.

Pairs, in equal parts per batch:

* whole image <-> caption (source and target images of an edit with their captions);
* edit region <-> what it should contain: the target image inside the edit mask (mid-grey outside,
  exactly how the ``blended`` guide shows a candidate to CLIP) paired with a description of the
  region ("a small blue circle", or "an empty sand background" after a removal);
* the same edit region <-> the edit instruction, so an instruction can rank candidates too.

With ``--hard-negatives true`` each region text also meets one hard negative of its own scene, drawn per
step: the unedited region (the source inside the same mask), or the region with the resulting object in
another colour, kind or size (EditWorld's near misses). The candidates blended ranks differ from each other
in exactly these ways, which in-batch negatives from other scenes never show.

The model is open_clip's own ``CLIP`` class built from a small config (ViT on 64x64 images, text
transformer with open_clip's BPE tokenizer, context 24), trained with the symmetric InfoNCE loss and
a learned temperature. Weights are saved as safetensors beside the config, the layout that
``editkit.backend.clip.load_clip`` and the CLIP metrics read.
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
from .common import RunLog, cosine_lr, images_to_tensor, info_nce, set_threads, write_recipe

ASSETS = Path(__file__).resolve().parent.parent / "assets"

EDITWORLD_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 96, "head_width": 32, "patch_size": 8, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


class ClipRecipe(EditkitModel):
    out: Path = Field(ASSETS / "editworld-clip", description="Output folder (open_clip config + safetensors).")
    steps: int = Field(1500, ge=1, le=10_000_000, description="Optimiser steps.")
    batch_size: int = Field(96, ge=3, le=8192, description="Pairs per step (a third of each kind).")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Peak learning rate (cosine schedule).")
    pool: int = Field(20000, ge=8, le=10_000_000, description="EditWorld training edits held in memory.")
    seed: int = Field(0, description="Seed of data and initialisation.")
    eval_count: int = Field(300, ge=10, le=100_000, description="Test-split edits for the retrieval accuracy.")
    hard_negatives: bool = Field(False, description="Each region text also contrasts its region against a hard "
                                 "negative of its own scene: the unedited source region or a near miss (the result "
                                 "in another colour, kind or size).")
    init: Path | None = Field(None, description="Continue from this CLIP folder (config + safetensors) instead of "
                              "new weights.")


def region_view(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image inside ``mask`` with mid-grey elsewhere (the [-1, 1] image multiplied by the mask)."""
    out = np.full_like(image, 128)
    out[mask] = image[mask]
    return out


def has_region(sample) -> bool:
    """Whether the edit is local (its mask covers part of the image): only those give region pairs."""
    return bool(sample.mask.any() and not sample.mask.all())


def result_object(sample):
    """The object the edit produces (an ``Obj``), or None (a removal, a global edit)."""
    from ..editworld import world

    result = (sample.edit or {}).get("result")
    return world.Obj.from_dict(result) if isinstance(result, dict) and "kind" in result else None


def region_text(sample) -> str:
    """What the edit region of the target holds: the resulting object, or the bare background."""
    from ..editworld import world

    obj = result_object(sample)
    if obj is not None:
        return f"a {obj.noun()}"
    return world.describe(world.Scene((), sample.target_scene.background))


def pairs(samples) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """The three kinds of (image, text) pairs of a list of EditWorld samples (object edits only for regions)."""
    whole_i, whole_t, reg_i, desc_t, instr_t = [], [], [], [], []
    for s in samples:
        whole_i += [s.source, s.target]
        whole_t += [s.source_caption, s.target_caption]
        if has_region(s):
            reg_i.append(region_view(s.target, s.mask))
            desc_t.append(region_text(s))
            instr_t.append(s.instruction)
    return {"whole": (whole_i, whole_t), "description": (reg_i, desc_t), "instruction": (reg_i, instr_t)}


def hard_negative_regions(samples, rng: np.random.Generator) -> np.ndarray:
    """Two hard negatives per region pair of :func:`pairs`, uint8 (N, 2, H, W, 3): the unedited source region and
    the region with the edit's result drawn as one random near miss (the source again when there is no result)."""
    from ..editworld.render import render_scene
    from ..editworld.world import near_misses, swap_object

    out = []
    for s in filter(has_region, samples):
        source = region_view(s.source, s.mask)
        obj, miss = result_object(s), source
        if obj is not None:
            alts = near_misses(obj)
            alt = alts[int(rng.integers(len(alts)))]
            miss = region_view(render_scene(swap_object(s.target_scene, obj, alt), s.size), s.mask)
        out.append(np.stack([source, miss]))
    return np.stack(out)


def train_clip(recipe: ClipRecipe, progress: bool = True) -> dict:
    import open_clip
    from safetensors.torch import save_file

    from .. import editworld
    from ..backend.clip import CONFIG_NAME, WEIGHTS_NAME

    set_threads()
    torch.manual_seed(recipe.seed)
    recipe.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(recipe.out / "logs" / "clip")
    model = open_clip.CLIP(**EDITWORLD_CLIP_CONFIG)
    if recipe.init is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(recipe.init) / WEIGHTS_NAME)))
    tokenizer = open_clip.SimpleTokenizer(context_length=EDITWORLD_CLIP_CONFIG["text_cfg"]["context_length"])
    mean = torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.constants.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    def prep(arrays):
        return ((images_to_tensor(arrays) + 1) / 2 - mean) / std

    samples = editworld.generate("train", recipe.pool, seed=recipe.seed, types="explicit")
    data = pairs(samples)
    kinds = {k: (prep(imgs), tokenizer(texts)) for k, (imgs, texts) in data.items()}
    negatives = hard_negative_regions(samples, np.random.default_rng(recipe.seed)) if recipe.hard_negatives else None
    log.write(pairs={k: len(v[1]) for k, v in kinds.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(recipe.seed)
    per_kind = recipe.batch_size // 3
    bar = tqdm(range(recipe.steps), desc="train clip", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.steps, recipe.lr, warmup=100)
        loss = 0.0
        for kind, (imgs, toks) in kinds.items():
            idx = torch.randint(0, len(toks), (per_kind,), generator=gen)
            hard = None
            if negatives is not None and kind != "whole":
                pick = torch.randint(0, 2, (per_kind,), generator=gen)
                hard = prep(list(negatives[idx.numpy(), pick.numpy()]))
            loss = loss + contrastive_loss(model, imgs[idx], toks[idx], hard) / len(kinds)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # temperature at most 100, as CLIP
        if step % 50 == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            log.write(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"])

    model.eval()
    (recipe.out / CONFIG_NAME).write_text(json.dumps({"model_cfg": EDITWORLD_CLIP_CONFIG}, indent=2))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(recipe.out / WEIGHTS_NAME))
    results = retrieval_accuracy(model, tokenizer, prep, recipe.eval_count, recipe.seed)
    results["final_loss"] = round(float(loss.item()), 4)
    log.write(done=True, **results)
    write_recipe(recipe.out, "clip", recipe.model_dump(mode="json"), log.elapsed, results)
    return results


def contrastive_loss(model, images: torch.Tensor, tokens: torch.Tensor, hard: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE at the model's learned temperature; equal texts in a batch are positives of each other.
    ``hard`` (one image per row) adds a negative that only its own row's text is contrasted against."""
    return info_nce(model.encode_image(images), model.encode_text(tokens), tokens, model.logit_scale.exp(),
                    hard_a=None if hard is None else model.encode_image(hard))


@torch.no_grad()
def retrieval_accuracy(model, tokenizer, prep, count: int, seed: int) -> dict:
    """Top-1 image->text accuracy on test-split edits, per pair kind, among that kind's distinct texts."""
    from .. import editworld

    samples = editworld.generate("test", count, seed=seed, types="explicit")
    data = pairs(samples)
    hard = hard_negative_regions(samples, np.random.default_rng(seed))
    unedited = F.normalize(model.encode_image(prep(list(hard[:, 0]))), dim=-1)
    missed = F.normalize(model.encode_image(prep(list(hard[:, 1]))), dim=-1)
    out = {}
    for kind, (imgs, texts) in data.items():
        distinct = sorted(set(texts))
        img = F.normalize(model.encode_image(prep(imgs)), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(distinct)), dim=-1)
        pred = (img @ txt.t()).argmax(1)
        truth = torch.tensor([distinct.index(t) for t in texts])
        out[f"retrieval_top1_{kind}"] = round(float((pred == truth).float().mean()), 4)
        out[f"retrieval_candidates_{kind}"] = len(distinct)
        if kind != "whole":  # does the text prefer the edited region to the unedited one (what ranking needs)?
            own = txt[truth]
            score = (own * img).sum(-1)
            out[f"edited_over_source_{kind}"] = round(float((score > (own * unedited).sum(-1)).float().mean()), 4)
            out[f"edited_over_near_miss_{kind}"] = round(float((score > (own * missed).sum(-1)).float().mean()), 4)
    return out
