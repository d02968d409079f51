"""Recipe ``ip2p``: an 8-channel InstructPix2Pix UNet plus a word-level CLIP text encoder on EditWorld.

Follows the InstructPix2Pix recipe at small scale: epsilon-prediction MSE on the scaled target
latents with the unscaled source latents (VAE mode) concatenated; conditioning dropout per sample
(5% text only, 5% text and image, 5% image only; the text null is the encoding of the empty
prompt, which is what the ``ip2p`` guide uses at inference); EMA weights are saved. The VAE comes
from the ``vae`` recipe and stays frozen; the text encoder is trained jointly from scratch with a
tokenizer built from the EditWorld vocabulary.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from ..config import EditkitModel
from ..errors import GuideConfigError, InvalidInputError
from .common import RunLog, cosine_lr, images_to_tensor, set_threads, write_recipe


class IP2PRecipe(EditkitModel):
    out: Path = Field(..., description="Weights folder (diffusers layout); must already hold vae/.")
    steps: int = Field(6000, ge=1, le=10_000_000, description="Optimiser steps.")
    batch_size: int = Field(64, ge=1, le=4096, description="Samples per step.")
    lr: float = Field(5e-4, gt=0, le=1.0, description="Peak learning rate (cosine schedule).")
    pool: int = Field(30000, ge=8, le=10_000_000, description="EditWorld training samples held in memory.")
    types: str = Field("explicit", description="EditWorld edit types to train on: 'all', a family, a type, or "
                       "several joined by '+' (e.g. 'explicit+referring').")
    referring_text: Literal["instruction", "rewrite"] = Field(
        "instruction", description="Text of referring samples: their own instruction, or their explicit rewrite "
        "(what MGIE's LLM writes for the UNet; the model then never sees the referring wording itself).")
    explicit_text: Literal["instruction", "rewrite", "both"] = Field(
        "instruction", description="Text of explicit samples: their own instruction, their explicit rewrite (the "
        "canonical wording MGIE's LLM writes), or 'both': every other explicit sample of the pool reads its "
        "rewrite, so the UNet learns the rewrite wording without forgetting the users' phrasing.")
    type_weights: dict[str, float] | None = Field(
        None, description="Share of the pool per edit type, e.g. '{\"recolour\": 3, \"add\": 3}' (types not named "
        "weigh 1); the pool is built type by type so the hard edits get more distinct samples. Default: uniform.",
    )
    referring_action_weights: dict[str, float] | None = Field(
        None, description="Relative share of each object action (recolour, remove, replace, move) within the "
        "referring types, e.g. '{\"replace\": 3}' (actions not named weigh 1): referring samples are drawn from the "
        "generator's uniform stream and kept with probability weight / largest weight. Default: uniform.",
    )
    dropout: float = Field(0.05, ge=0, le=0.3, description="Conditioning dropout probability per pattern.")
    min_snr_gamma: float = Field(5.0, gt=0, le=1000, description="Min-SNR loss weighting gamma.")
    snr_floor: float = Field(0.05, gt=0, le=10, description="Lower bound of the SNR in the loss weight.")
    ema: float = Field(0.999, ge=0, lt=1, description="EMA decay of the saved weights.")
    seed: int = Field(0, description="Seed of data and initialisation.")
    image_size: int = Field(64, ge=16, le=512, description="EditWorld image size.")
    frozen_text: Path | None = Field(
        None, description="Condition on the frozen text tower of this open_clip CLIP folder (e.g. "
        "editkit/assets/editworld-clip), exported as a transformers CLIPTextModel + CLIPTokenizer, as Stable "
        "Diffusion uses a frozen pretrained CLIP text encoder; default: a word-level text encoder trained jointly.",
    )
    init: Path | None = Field(
        None, description="Continue from the UNet, text encoder and tokenizer in this folder (e.g. the committed "
        "weights) instead of new ones; the VAE still comes from OUT/vae.",
    )
    train_text: bool = Field(
        True, description="Train the text encoder jointly. With --init and false it stays frozen, so conditioning "
        "learned against it elsewhere (the mgie edit head is aligned to it) stays valid.",
    )
    loss_weighting: Literal["min_snr", "v"] = Field(
        "min_snr", description="'min_snr': Min-SNR-gamma weighting of the v loss (down-weights the high-noise steps); "
        "'v': the plain v-prediction loss of the zero-terminal-SNR paper (every timestep weighs the same in v).",
    )
    mask_weight: float = Field(
        0.0, ge=0, le=100, description="Extra loss weight inside the edit mask (latent-resolution coverage): "
        "pixels weigh 1 + mask_weight x coverage, so the few pixels an edit changes are not drowned by the copy.",
    )
    coordinates: bool = Field(
        False, description="Give the UNet two coordinate input channels (x, y of each latent pixel; "
        "editkit.backend.coordinates), so cross-attention can place an edit 'at the top right'. With --init an "
        "8-channel UNet gets them with new weights (--coordinate-init).",
    )
    coordinate_init: Literal["random", "zero"] = Field(
        "random", description="New coordinate weights of an --init UNet: 'random' (the std of its other input "
        "weights; breaks the symmetry that keeps zero weights from learning) or 'zero' (exactly the init's "
        "function at the start).",
    )
    attention_levels: int | None = Field(
        None, ge=1, le=4, description="Number of the UNet's coarsest levels with cross-attention (the EditWorld "
        "UNet: 1, at 8x8; 2 adds 16x16). With --init, new levels start as identity blocks (zero output "
        "projections, editkit.training.unet_growth), so training starts from exactly the init's function. "
        "Default: the init's, else 1.",
    )
    compile: bool = Field(False, description="torch.compile the UNet (about 2.5 min of warm-up on CPU, ~20% faster steps).")
    save_every: int = Field(1000, ge=1, le=10_000_000, description="Save the EMA weights every N steps.")

    @field_validator("type_weights")
    @classmethod
    def _known_types(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from ..editworld import EDIT_TYPES

        return _checked_weights(value, EDIT_TYPES, "EditWorld edit type")

    @field_validator("referring_action_weights")
    @classmethod
    def _known_actions(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        from ..editworld.edit_types import REFERRING_ACTIONS

        value = _checked_weights(value, REFERRING_ACTIONS, "referring action")
        if value and max(value.get(a, 1.0) for a in REFERRING_ACTIONS) <= 0:
            raise ValueError("referring_action_weights gives every action weight 0")
        return value

    @model_validator(mode="after")
    def _weights_within_types(self) -> "IP2PRecipe":
        try:
            types = recipe_types(self.types)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        if self.type_weights:
            extra = set(self.type_weights) - set(types)
            if extra:
                raise ValueError(f"type_weights names edit types outside types {self.types!r}: {', '.join(sorted(extra))}")
            if sum(self.type_weights.get(t, 1.0) for t in types) <= 0:
                raise ValueError("type_weights gives every edit type weight 0")
        return self


def _checked_weights(value: dict[str, float] | None, known, what: str) -> dict[str, float] | None:
    """A ``{name: weight}`` option: every name among ``known``, every weight >= 0."""
    for name, weight in (value or {}).items():
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; use one of: {', '.join(known)}")
        if not weight >= 0:
            raise ValueError(f"weight of {name!r} must be >= 0, got {weight}")
    return value


def recipe_types(types: str) -> tuple[str, ...]:
    """The edit types of a ``--types`` value ('+'-joined selections allowed)."""
    from ..editworld.edit_types import resolve_types

    return resolve_types([t.strip() for t in types.split("+") if t.strip()])


def training_text(sample, referring_text: str, explicit_text: str = "instruction", index: int = 0) -> str:
    """What the text encoder reads for one training sample (``index``: its place in the pool)."""
    from ..editworld.edit_types import FAMILY_OF

    family = FAMILY_OF.get(sample.edit_type)
    if family == "referring" and referring_text == "rewrite":
        return sample.rewrite
    if family == "explicit" and (explicit_text == "rewrite" or (explicit_text == "both" and index % 2 == 0)):
        return sample.rewrite
    return sample.instruction


def training_pool(recipe: IP2PRecipe) -> list:
    """The in-memory EditWorld training samples: ``recipe.pool`` of ``recipe.types``, uniform over the edit
    types, or split among them by ``recipe.type_weights`` (largest-remainder rounding, so the total is exact);
    referring samples follow ``recipe.referring_action_weights`` when given."""
    from .. import editworld

    types = recipe_types(recipe.types)
    if not recipe.type_weights and not recipe.referring_action_weights:
        return editworld.generate("train", recipe.pool, seed=recipe.seed, types=types, size=recipe.image_size)
    weights = np.array([(recipe.type_weights or {}).get(t, 1.0) for t in types], dtype=float)
    share = weights / weights.sum() * recipe.pool
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts))[: recipe.pool - counts.sum()]:
        counts[i] += 1
    samples = []
    for t, n in zip(types, counts):
        samples += _samples_of_type(recipe, t, int(n))
    return samples


def _samples_of_type(recipe: IP2PRecipe, edit_type: str, count: int) -> list:
    """``count`` training samples of one edit type; referring ones thinned by action weight (seeded)."""
    from .. import editworld
    from ..editworld.edit_types import FAMILY_OF, REFERRING_ACTIONS

    if not recipe.referring_action_weights or FAMILY_OF.get(edit_type) != "referring" or count == 0:
        return editworld.generate("train", count, seed=recipe.seed, types=edit_type, size=recipe.image_size)
    weights = {a: recipe.referring_action_weights.get(a, 1.0) for a in REFERRING_ACTIONS}
    top = max(weights.values())
    rng = np.random.default_rng([recipe.seed, count])
    stream = editworld.iter_samples("train", recipe.seed, edit_type, recipe.image_size)  # endless
    return list(itertools.islice((s for s in stream if rng.random() < weights[s.action] / top), count))


@torch.no_grad()
def encode_pool(vae, arrays, batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(arrays), batch):
        out.append(vae.encode(images_to_tensor(arrays[i : i + batch])).latent_dist.mode())
    return torch.cat(out)


def train_ip2p(recipe: IP2PRecipe, progress: bool = True) -> dict:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .. import editworld
    from ..backend.coordinates import add_coordinate_inputs, image_conditioning
    from ..backend.tiny import EDITWORLD_SCHEDULER_CONFIG, text_config, unet_config, word_tokenizer
    from .unet_growth import with_cross_attention_levels

    set_threads()
    torch.manual_seed(recipe.seed)
    log = RunLog(recipe.out / "logs" / "ip2p")
    vae = AutoencoderKL.from_pretrained(recipe.out / "vae").eval().requires_grad_(False)
    scale = float(vae.config.scaling_factor)

    samples = training_pool(recipe)
    src = encode_pool(vae, [s.source for s in samples])
    tgt = encode_pool(vae, [s.target for s in samples]) * scale
    # Edit-mask coverage at latent resolution, for --mask-weight.
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).float()[:, None]
    masks = F.adaptive_avg_pool2d(masks, tgt.shape[-2:])
    frozen = None
    if recipe.frozen_text is not None:
        from .clip_text import export_text_encoder

        frozen, tokenizer = export_text_encoder(recipe.frozen_text, recipe.out)
    elif recipe.init is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(Path(recipe.init) / "tokenizer")
    else:
        tokenizer = word_tokenizer(editworld.vocabulary(), max_length=32)
    texts = [training_text(s, recipe.referring_text, recipe.explicit_text, i) for i, s in enumerate(samples)]
    ids = tokenizer(texts, padding="max_length", truncation=True,
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    null_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    log.write(pool=len(samples), latent_shape=list(src.shape[1:]))

    if recipe.init is not None:
        text_encoder = frozen or CLIPTextModel.from_pretrained(Path(recipe.init) / "text_encoder")
        unet = UNet2DConditionModel.from_pretrained(Path(recipe.init) / "unet").float()  # stored float16 or float32
    else:
        text_encoder = frozen or CLIPTextModel(CLIPTextConfig(**text_config(len(tokenizer), size="editworld")))
        unet = UNet2DConditionModel(**unet_config(8, cross_attention_dim=text_encoder.config.hidden_size,
                                                  size="editworld"))
    if recipe.coordinates:
        unet = add_coordinate_inputs(unet, recipe.coordinate_init, recipe.seed)
    if recipe.attention_levels is not None:
        try:
            unet = with_cross_attention_levels(unet, recipe.attention_levels)
        except ValueError as exc:
            raise GuideConfigError("train ip2p", "attention_levels", str(exc)) from None
    noise_sched = DDPMScheduler.from_config(EDITWORLD_SCHEDULER_CONFIG)
    if frozen is None and not recipe.train_text:
        if recipe.init is None:
            raise ValueError("--train-text false needs --init (a text encoder to keep frozen)")
        frozen = text_encoder.requires_grad_(False)
    params = list(unet.parameters()) + ([] if frozen is not None else list(text_encoder.parameters()))
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=1e-2)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    alphas = noise_sched.alphas_cumprod
    gen = torch.Generator().manual_seed(recipe.seed)
    forward = torch.compile(unet) if recipe.compile else unet

    bar = tqdm(range(recipe.steps), desc="train ip2p", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.steps, recipe.lr, warmup=200)
        idx = torch.randint(0, src.shape[0], (recipe.batch_size,), generator=gen)
        x0, cond_img, tok = tgt[idx], image_conditioning(unet, src[idx]), ids[idx]
        # Conditioning dropout (InstructPix2Pix): u<p text only, p<=u<2p both, 2p<=u<3p image only.
        u = torch.rand(recipe.batch_size, generator=gen)
        p = recipe.dropout
        drop_text = u < 2 * p
        drop_image = (u >= p) & (u < 3 * p)
        tok = torch.where(drop_text[:, None], null_ids.expand_as(tok), tok)
        cond_img = cond_img * (~drop_image).float()[:, None, None, None]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (recipe.batch_size,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if frozen is not None:
            with torch.no_grad():
                context = text_encoder(tok)[0]
        else:
            context = text_encoder(tok)[0]
        pred = forward(torch.cat([noisy, cond_img], dim=1), t, encoder_hidden_states=context).sample
        # v-prediction (zero terminal SNR needs it); Min-SNR-gamma weighting for v: min(snr, g) / (snr + 1),
        # with the SNR floored so that the pure-noise step t = T keeps a weight.
        velocity = a.sqrt() * noise - (1 - a).sqrt() * x0
        if recipe.loss_weighting == "min_snr":
            snr = (a / (1 - a)).clamp(min=recipe.snr_floor)
            weight = snr.clamp(max=recipe.min_snr_gamma) / (snr + 1)
        else:
            weight = torch.ones_like(a)
        weight = weight * (1 + recipe.mask_weight * masks[idx])
        loss = (weight * (pred - velocity).pow(2)).mean() / weight.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_m, m in ((ema_unet, unet), (ema_text, text_encoder))[: 1 if frozen is not None else 2]:
                for pe, pm in zip(ema_m.parameters(), m.parameters()):
                    pe.lerp_(pm, 1 - decay)
        if step % 50 == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.write(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        if step > 0 and step % recipe.save_every == 0:
            _save(recipe.out, ema_unet, vae, ema_text, tokenizer)

    _save(recipe.out, ema_unet, vae, ema_text, tokenizer)
    results = {"final_loss": round(loss.item(), 5), "pool": len(samples)}
    log.write(done=True, **results)
    write_recipe(recipe.out, "ip2p", recipe.model_dump(mode="json"), log.elapsed, results)
    return results


def _save(out: Path, unet, vae, text_encoder, tokenizer) -> None:
    from ..backend.components import Components
    from ..backend.tiny import EDITWORLD_SCHEDULER_CONFIG, save_components

    comps = Components(unet=unet, vae=vae, scheduler_config=dict(EDITWORLD_SCHEDULER_CONFIG), text_encoder=text_encoder,
                       tokenizer=tokenizer)
    save_components(comps, out)
