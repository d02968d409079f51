"""Recipe ``any2pix``: tiny InstructAny2Pix weights on EditWorld (IP-Adapter UNet, LLM + projectors, prior).

The reference trains its parts separately on pretrained models (ImageBind-H, Vicuna-7B, an SDXL IP-Adapter
aligned to ImageBind space, a GPT-2-sized prior); here every part is small and trained on EditWorld, on
top of the frozen tiny ImageBind of the ``imagebind`` recipe (``--imagebind``), in three phases:

1. **Diffusion**: an IP-Adapter (4 image tokens, decoupled cross-attention through diffusers' own
   processors) learns to make the text-to-image UNet inside the ip2p UNet (its noisy-latent channels, i.e.
   zero source latents) draw an EditWorld image from its caption and its ImageBind embedding at the
   reference norm (v-prediction, like the ip2p recipe). As in the reference only the adapter is trained and
   the UNet stays frozen, so the folder needs no UNet of its own and points at the ip2p folder
   (``--train-unet true`` also fine-tunes a copy of the UNet and writes a self-contained folder).
   Conditioning dropout: the caption -> the empty prompt, the embedding -> zeros (the adapter's null is
   ``proj(0)``). VAE, text encoder and tokenizer are the ip2p folder's, frozen.
2. **LLM + projectors**: a tiny LLaMA learns the answer grammar ``<base> [target caption] <im_gen> <video>``
   for the prompt of the guide (the source image first, then every ``[imageK]``/``[audioK]`` as ``<video>``
   with the projected ImageBind feature *added* to its token embedding, as the reference). Loss =
   cross-entropy on the answer + L1 between the output projector's [base]/[gen] read-outs and the ImageBind
   embeddings of the source and target images (the reference's losses).
3. **Refinement prior**: from the LLM's teacher-forced [gen] read-out (scaled to norm 100, source type
   VIDEO) and the score 6.5 to the target image's embedding; with probability ``prior_dropout`` the
   unconditional pair (zero input, score 2.0), so the guide's one-step prior guidance has both branches.
   No aesthetic scores exist in EditWorld, so the scores are the two constants the guide uses.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from ..config import EditkitModel
from ..backend.components import text_to_image_unet
from .common import RunLog, cosine_lr, group_samples, plugin_module, set_threads, write_recipe

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SCORE, NEGATIVE_SCORE = 6.5, 2.0


class Any2PixRecipe(EditkitModel):
    out: Path = Field(ASSETS / "editworld-tiny-any2pix", description="Output folder (editkit any2pix layout).")
    imagebind: Path | None = Field(None, description="Tiny ImageBind folder written by `editkit train imagebind` "
                                   "(frozen here). Default: the ImageBind of --init.")
    init: Path | None = Field(None, description="Continue from this editkit any2pix folder (e.g. the committed "
                              "weights): its ImageBind, IP-Adapter, LLM + projectors and prior are the starting point "
                              "of each phase, and a phase with 0 steps keeps them as they are (--diffusion-steps N "
                              "--llm-steps 0 --prior-steps 0 retrains only the adapter, e.g. on a new ip2p UNet).")
    ip2p: Path = Field(ASSETS / "editworld-tiny", description="Trained tiny ip2p folder: VAE, text encoder and "
                       "tokenizer (frozen), UNet (initialisation of the 4-channel UNet).")
    types: str = Field("multimodal,explicit", description="EditWorld families/types, comma-separated, equal shares.")
    pool: int = Field(6000, ge=4, le=1_000_000, description="EditWorld training samples held in memory.")
    image_size: int = Field(64, ge=16, le=512, description="EditWorld image size.")
    seed: int = Field(0, description="Seed of data and initialisation.")
    norm: float = Field(20.0, gt=0, le=1000, description="Norm of the ImageBind embeddings (the guide's `norm`).")
    train_unet: bool = Field(False, description="Phase 1 also trains the UNet and writes it into the folder "
                             "(default: only the IP-Adapter is trained, on the frozen ip2p UNet, as the reference "
                             "trains its adapter, and the folder points at the ip2p folder for the pipeline).")
    diffusion_steps: int = Field(3000, ge=0, le=10_000_000, description="Phase 1 steps (UNet + IP-Adapter).")
    diffusion_lr: float = Field(3e-4, gt=0, le=1.0, description="Phase 1 peak learning rate (cosine).")
    diffusion_batch_size: int = Field(32, ge=1, le=4096, description="Phase 1 samples per step.")
    dropout: float = Field(0.1, ge=0, le=0.4, description="Phase 1: probability of dropping the caption, and "
                           "(independently) of dropping the embedding.")
    llm_steps: int = Field(2000, ge=0, le=10_000_000, description="Phase 2 steps (LLM + projectors).")
    llm_lr: float = Field(1e-3, gt=0, le=1.0, description="Phase 2 peak learning rate.")
    llm_batch_size: int = Field(32, ge=1, le=4096, description="Phase 2 samples per step.")
    llm_width: int = Field(128, ge=16, le=4096, description="Hidden size of the tiny LLaMA.")
    llm_layers: int = Field(4, ge=1, le=64, description="Decoder layers of the tiny LLaMA.")
    embed_weight: float = Field(1.0, ge=0, le=100, description="Weight of the [base]/[gen] L1 loss (per dimension, "
                                "on embeddings at norm 1 x sqrt(dim)).")
    prior_steps: int = Field(1000, ge=0, le=10_000_000, description="Phase 3 steps (refinement prior).")
    prior_lr: float = Field(1e-3, gt=0, le=1.0, description="Phase 3 peak learning rate.")
    prior_dropout: float = Field(0.1, ge=0, le=0.5, description="Phase 3: share of unconditional pairs.")
    half: bool = Field(True, description="Store the trained weights in float16 and ImageBind compactly (its used "
                       "towers, the text embedding rows of the EditWorld vocabulary): half the files, same model "
                       "in float32 at load.")
    log_every: int = Field(50, ge=1, le=100_000, description="Log every N steps.")

    @model_validator(mode="after")
    def _needs_an_imagebind(self) -> "Any2PixRecipe":
        if self.imagebind is None and self.init is None:
            raise ValueError("train any2pix: give --imagebind (a folder of `editkit train imagebind`) or --init "
                             "(an any2pix folder whose ImageBind is reused)")
        shaped = sorted({"llm_width", "llm_layers"} & self.model_fields_set)
        if self.init is not None and shaped:
            flags = " and ".join("--" + f.replace("_", "-") for f in shaped)
            raise ValueError(f"train any2pix: {flags} only shape a new LLM, but --init continues the LLM of {self.init}; "
                             "leave them out")
        return self


def _plugin(module: str):
    return plugin_module("any2pix", module)


# ----------------------------------------------------------------------------------- data
def load_imagebind(folder: Path):
    """The frozen ImageBindEncoder of an ``imagebind`` recipe folder."""
    from ..errors import GuideLoadError
    from .imagebind import CONFIG_NAME, WEIGHTS_NAME

    if not (folder / CONFIG_NAME).is_file():
        raise GuideLoadError(f"train any2pix: '{folder}' has no {CONFIG_NAME}; run `editkit train imagebind --out "
                             f"{folder}` first")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    return _plugin("encoders").ImageBindEncoder.from_files(cfg, str(folder / WEIGHTS_NAME), "train any2pix: ImageBind")


@torch.no_grad()
def embed_samples(encoder, samples, norm: float, batch: int = 128) -> dict[str, Any]:
    """ImageBind features at ``norm``: sources, targets, and per sample the referenced inputs in order."""
    from PIL import Image

    mixing = _plugin("mixing")
    language = _plugin("language")

    def encode(fn, values):
        return torch.cat([fn(values[i: i + batch]) for i in range(0, len(values), batch)]) if values else None

    def images(arrays):
        return encode(encoder.encode_images, [Image.fromarray(a) for a in arrays])

    src = mixing.to_norm(images([s.source for s in samples]), norm)
    tgt = mixing.to_norm(images([s.target for s in samples]), norm)
    # every referenced input of every sample, encoded in batches per modality, then put back in order
    slots = [(i, name) for i, s in enumerate(samples) for name in language.references(s.instruction)]
    image_slots = [k for k, (_, name) in enumerate(slots) if name.startswith("image")]
    audio_slots = [k for k, (_, name) in enumerate(slots) if not name.startswith("image")]
    feats = src.new_zeros((len(slots), src.shape[1]))
    if image_slots:
        feats[image_slots] = images([samples[slots[k][0]].inputs[slots[k][1]] for k in image_slots])
    if audio_slots:
        feats[audio_slots] = encode(encoder.encode_audio, [samples[slots[k][0]].inputs[slots[k][1]] for k in audio_slots])
    feats = mixing.to_norm(feats, norm)
    counts = np.bincount([i for i, _ in slots], minlength=len(samples)).tolist()
    refs = list(torch.split(feats, counts))  # slots are in sample order, so each sample's rows are contiguous
    return {"source": src, "target": tgt, "references": refs}


def answer_text(sample) -> str:
    """What the LLM learns to write: the base slot, the target caption in brackets, then the [gen] slot."""
    return f"<base> [ {sample.target_caption} ] <im_gen> <video>"


class LLMBatches:
    """Teacher-forcing batches for phase 2: token ids, labels, feature slots and the read-out positions."""

    def __init__(self, samples, embeds, tokenizer, template: str) -> None:
        language = _plugin("language")
        self.tok = tokenizer
        self.video = tokenizer.convert_tokens_to_ids("<video>")
        self.rows, self.labels, self.base_pos, self.gen_pos, self.features = [], [], [], [], []
        for i, s in enumerate(samples):
            prompt = tokenizer(language.placeholder_prompt(s.instruction, template)).input_ids
            if len(prompt) > 1 and prompt[-1] == tokenizer.eos_token_id:
                prompt = prompt[:-1]
            answer = tokenizer(answer_text(s), add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            self.rows.append(prompt + answer)
            self.labels.append([-100] * len(prompt) + answer)
            self.base_pos.append(len(prompt) - 1)  # the state that predicts <base>
            self.gen_pos.append(len(prompt) + len(answer) - 3)  # the state that predicts the final <video>
            self.features.append(torch.cat([embeds["source"][i: i + 1], embeds["references"][i]]))

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        width = max(len(self.rows[i]) for i in idx)
        ids = torch.full((len(idx), width), self.tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(idx), width), -100, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for b, i in enumerate(idx):
            n = len(self.rows[i])
            ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(self.rows[i]), torch.tensor(self.labels[i]), 1
        return {"ids": ids, "labels": labels, "mask": mask, "base_pos": torch.tensor([self.base_pos[i] for i in idx]),
                "gen_pos": torch.tensor([self.gen_pos[i] for i in idx]), "features": [self.features[i] for i in idx]}


def llm_embeddings(lm, in_projector, batch: dict[str, Any], video_id: int) -> torch.Tensor:
    """Token embeddings with the projected features added at each row's first ``<video>`` slots, in order
    (what :meth:`Any2PixLLM.embed` does for one row at inference)."""
    emb = lm.get_input_embeddings()(batch["ids"])
    add = torch.zeros_like(emb)
    for b, feats in enumerate(batch["features"]):
        slots = (batch["ids"][b] == video_id).nonzero().flatten()[: feats.shape[0]]
        if len(slots):
            add[b, slots] = in_projector(feats[: len(slots)])
    return emb + add


def llm_loss(lm, in_projector, out_projector, batch, video_id, base_target, gen_target, embed_weight):
    """(cross-entropy, L1 of the [base]/[gen] read-outs, the [gen] read-outs)."""
    out = lm(inputs_embeds=llm_embeddings(lm, in_projector, batch, video_id), attention_mask=batch["mask"],
             output_hidden_states=True)
    logits = out.logits[:, :-1].float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    hidden = out.hidden_states[-1]
    rows = torch.arange(hidden.shape[0])
    base, gen = out_projector(hidden[rows, batch["base_pos"]]), out_projector(hidden[rows, batch["gen_pos"]])
    l1 = F.l1_loss(base, base_target) + F.l1_loss(gen, gen_target)
    return ce, embed_weight * l1, gen


# ----------------------------------------------------------------------------------- phase 1
def adapter_parameters(unet) -> list[torch.nn.Parameter]:
    """The IP-Adapter's own weights in a UNet with diffusers' IP-Adapter processors: the image projection and the
    decoupled cross-attention keys/values (what the reference trains; the UNet itself stays frozen)."""
    return [p for name, p in unet.named_parameters()
            if name.startswith("encoder_hid_proj.") or ".to_k_ip." in name or ".to_v_ip." in name]


def adapter_state(unet) -> dict[str, dict[str, torch.Tensor]]:
    """The IP-Adapter weights of a UNet with diffusers' IP-Adapter processors, in diffusers' file format."""
    proj = unet.encoder_hid_proj.image_projection_layers[0]
    ip, key = {}, 1
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            ip[f"{key}.to_k_ip.weight"] = proc.to_k_ip[0].weight.detach().clone()
            ip[f"{key}.to_v_ip.weight"] = proc.to_v_ip[0].weight.detach().clone()
            key += 2
    # diffusers renames the file's "proj.*" to "image_embeds.*" when it loads an IP-Adapter; write the file's names
    image_proj = {k.replace("image_embeds", "proj"): v.detach().clone() for k, v in proj.state_dict().items()}
    return {"image_proj": image_proj, "ip_adapter": ip}


def plain_unet(trained, reference):
    """``reference`` (a UNet without adapter, changed in place) given the trained base weights of ``trained``."""
    wanted = reference.state_dict()
    state = {k: v for k, v in trained.state_dict().items() if k in wanted}
    missing = set(wanted) - set(state)
    if missing:
        raise RuntimeError(f"train any2pix: UNet weights missing after training: {sorted(missing)[:3]}")
    reference.load_state_dict(state)
    return reference


def train_diffusion(recipe, samples, embeds, comps, log, progress, start_adapter=None):
    from diffusers import DDPMScheduler

    from .ip2p import encode_pool

    layout = _plugin("layout")
    vae, text_encoder, tokenizer = comps.vae, comps.text_encoder, comps.tokenizer
    base = text_to_image_unet(comps.unet)
    unet = copy.deepcopy(base) if recipe.train_unet else base
    start = start_adapter or layout.random_adapter(unet, embeds["target"].shape[1], recipe.seed)
    layout.attach_adapter(unet, start, 1.0)
    unet.train().requires_grad_(recipe.train_unet)
    for p in adapter_parameters(unet):
        p.requires_grad_(True)
    scale = float(vae.config.scaling_factor)
    x0_all = encode_pool(vae, [s.target for s in samples]) * scale
    with torch.no_grad():
        ids = tokenizer([s.target_caption for s in samples], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        null_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                             return_tensors="pt").input_ids
    sched = DDPMScheduler.from_config(comps.scheduler_config)
    alphas = sched.alphas_cumprod
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.diffusion_lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(recipe.seed)
    for step in tqdm(range(recipe.diffusion_steps), desc="any2pix diffusion", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.diffusion_steps, recipe.diffusion_lr, warmup=100)
        b = recipe.diffusion_batch_size
        idx = torch.randint(0, len(samples), (b,), generator=gen)
        drop_text = torch.rand(b, generator=gen) < recipe.dropout
        drop_embed = torch.rand(b, generator=gen) < recipe.dropout
        tok = torch.where(drop_text[:, None], null_ids.expand(b, -1), ids[idx])
        image_embeds = embeds["target"][idx] * (~drop_embed).float()[:, None]
        with torch.no_grad():
            context = text_encoder(tok)[0]
        x0, noise = x0_all[idx], torch.randn(x0_all[idx].shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(noisy, t, encoder_hidden_states=context,
                    added_cond_kwargs={"image_embeds": [image_embeds[:, None]]}).sample
        target = a.sqrt() * noise - (1 - a).sqrt() * x0 if sched.config.prediction_type == "v_prediction" else noise
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % recipe.log_every == 0 or step == recipe.diffusion_steps - 1:
            log.write(phase="diffusion", step=step, loss=round(loss.item(), 5))
    unet.eval().requires_grad_(False)
    return (plain_unet(unet, base) if recipe.train_unet else None), adapter_state(unet)


# ----------------------------------------------------------------------------------- phases 2 and 3
def build_llm(recipe, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    w = recipe.llm_width
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=w, intermediate_size=2 * w, num_hidden_layers=recipe.llm_layers,
        num_attention_heads=max(1, w // 32), num_key_value_heads=max(1, w // 32), max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False))


def train_llm(recipe, batches, embeds, lm, in_projector, out_projector, log, progress):
    params = list(lm.parameters()) + list(in_projector.parameters()) + list(out_projector.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.llm_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    n = len(batches.rows)
    for step in tqdm(range(recipe.llm_steps), desc="any2pix llm", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.llm_steps, recipe.llm_lr, warmup=100)
        idx = torch.randint(0, n, (recipe.llm_batch_size,), generator=gen).tolist()
        batch = batches(idx)
        ce, l1, _ = llm_loss(lm, in_projector, out_projector, batch, batches.video, embeds["source"][idx],
                             embeds["target"][idx], recipe.embed_weight)
        loss = ce + l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % recipe.log_every == 0 or step == recipe.llm_steps - 1:
            log.write(phase="llm", step=step, ce=round(ce.item(), 5), l1=round(l1.item(), 5))


@torch.no_grad()
def gen_readouts(batches, embeds, lm, in_projector, out_projector, batch: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(batches.rows), batch):
        idx = list(range(i, min(i + batch, len(batches.rows))))
        out.append(llm_loss(lm, in_projector, out_projector, batches(idx), batches.video, embeds["source"][idx],
                            embeds["target"][idx], 0.0)[2])
    return torch.cat(out)


def train_prior(recipe, gens, targets, prior, log, progress):
    prior_mod = _plugin("prior")
    opt = torch.optim.AdamW(prior.parameters(), lr=recipe.prior_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed + 2)
    x_all = gens / (gens.norm(dim=-1, keepdim=True) + 1e-9) * 100.0  # the guide feeds gen / |gen| * 100
    prior.train()
    for step in tqdm(range(recipe.prior_steps), desc="any2pix prior", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, recipe.prior_steps, recipe.prior_lr, warmup=50)
        idx = torch.randint(0, len(gens), (64,), generator=gen)
        drop = torch.rand(64, generator=gen) < recipe.prior_dropout
        x = x_all[idx] * (~drop).float()[:, None]
        score = torch.where(drop, torch.tensor(NEGATIVE_SCORE), torch.tensor(SCORE))
        types = torch.full((64,), prior_mod.VIDEO, dtype=torch.long)
        loss = F.mse_loss(prior(x, score, types), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % recipe.log_every == 0 or step == recipe.prior_steps - 1:
            log.write(phase="prior", step=step, mse=round(loss.item(), 5))
    return prior.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------- recipe
def storage(recipe: Any2PixRecipe) -> dict[str, Any]:
    """``layout.save`` options of the recipe's ``half`` setting."""
    if not recipe.half:
        return {}
    from .. import editworld

    return {"storage_dtype": torch.float16, "text_vocabulary": sorted(editworld.vocabulary())}


def relative_folder(target: Path, start: Path) -> str:
    """``target`` as the layout's relative pipeline path seen from ``start`` ("../editworld-tiny")."""
    import os

    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return rel if rel.startswith("..") else "./" + rel


def train_any2pix(recipe: Any2PixRecipe, progress: bool = True) -> dict[str, Any]:
    from ..backend.components import Components, load_components
    layout, language, prior_mod, tiny = _plugin("layout"), _plugin("language"), _plugin("prior"), _plugin("tiny")
    set_threads()
    torch.manual_seed(recipe.seed)
    log = RunLog(recipe.out / "logs" / "any2pix")
    init = _plugin("layout").load(str(recipe.init)) if recipe.init is not None else None
    encoder = load_imagebind(recipe.imagebind) if recipe.imagebind is not None else init.encoder
    samples = group_samples("train", recipe.pool, recipe.seed, recipe.types, recipe.image_size)
    embeds = embed_samples(encoder, samples, recipe.norm)
    comps = load_components(str(recipe.ip2p))
    comps.unet = comps.unet.float()  # the committed UNet is stored in float16; train in float32
    for module in (comps.vae, comps.text_encoder):
        module.eval().requires_grad_(False)
    log.write(pool=len(samples), embed_dim=int(embeds["target"].shape[1]))

    unet, adapter = train_diffusion(recipe, samples, embeds, comps, log, progress,
                                    init.adapter if init is not None else None)

    d = embeds["target"].shape[1]
    if init is not None:
        tokenizer, lm = init.llm.tokenizer, init.llm.model.requires_grad_(True)
        in_projector = init.llm.in_projector.requires_grad_(True)
        out_projector = init.llm.out_projector.requires_grad_(True)
    else:
        tokenizer = tiny.tokenizer()
        lm = build_llm(recipe, tokenizer)
        in_projector, out_projector = language.mlp(d, recipe.llm_width, recipe.llm_width), \
            language.mlp(recipe.llm_width, recipe.llm_width, d)
    batches = LLMBatches(samples, embeds, tokenizer, language.VICUNA_V1)
    lm.train()
    train_llm(recipe, batches, embeds, lm, in_projector, out_projector, log, progress)
    lm.eval()

    prior = init.prior.requires_grad_(True) if init is not None else \
        prior_mod.RefinementPrior(prior_mod.PriorConfig(embed_dim=d, width=64, layers=2, heads=2))
    gens = gen_readouts(batches, embeds, lm, in_projector, out_projector)
    prior = train_prior(recipe, gens, embeds["target"], prior, log, progress)

    components, pipeline = None, relative_folder(recipe.ip2p, recipe.out)
    if unet is not None:  # a trained UNet of its own: a self-contained folder
        components, pipeline = Components(unet=unet, vae=comps.vae, scheduler_config=dict(comps.scheduler_config),
                                          text_encoder=comps.text_encoder, tokenizer=comps.tokenizer), "."
    layout.save(recipe.out, encoder=encoder, lm=lm, tokenizer=tokenizer, in_projector=in_projector,
                out_projector=out_projector, prior=prior, adapter=adapter, components=components, pipeline=pipeline,
                audio=encoder.audio, image_size=encoder.image_size, norm=recipe.norm,
                llm_meta={"prompt_prefix": "", "negative_prompt": ""}, **storage(recipe))
    cos = F.cosine_similarity(gens, embeds["target"], dim=-1).mean().item()
    results = {"pool": len(samples), "train_gen_cosine": round(cos, 4)}
    log.write(done=True, **results)
    write_recipe(recipe.out, "any2pix", recipe.model_dump(mode="json"), log.elapsed, results)
    return results
