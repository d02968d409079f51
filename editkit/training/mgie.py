"""Recipe ``mgie``: a tiny MGIE (vision tower + LLaMA + edit head + InstructPix2Pix UNet) on EditWorld.

The reference recipe (apple/ml-mgie:mgie_llava.py#L292-L326, mgie_train.py) at small scale, in three
phases. Phases 1 and 2 exist because no pretrained LLM is available offline:

1. **LLM pre-training** (deviation from the reference, which starts from LLaVA-7B): every weight of the
   tiny LLaVA (vision tower, projector, LLaMA) learns, with language-model cross-entropy only, to answer
   "what will this image be like if '<instruction>'" with the explicit rewrite of the instruction followed
   by ``[IMG0]``..``[IMG7]`` and end-of-sequence.
2. **Edit-head warm start** (editkit addition): with the LLM frozen, the edit head learns to map the
   [IMG] hidden states to what the ip2p text encoder makes of the rewrite, and ``edit_head(0, EMB)`` to
   its empty-prompt encoding, so the ip2p UNet understands the new conditioning from the first step.
3. **The MGIE recipe**: loss = LM cross-entropy + 0.5 x diffusion MSE (epsilon prediction on the scaled
   target latents, unscaled source latents concatenated); trainable: token embeddings, LM head, edit
   head, UNet (LLM blocks, vision tower and projector frozen; ``--lora-rank R`` adds LoRA adapters on the
   LLM attention through peft when it is installed); conditioning dropout per sample u ~ U(0, 1): text ->
   ``edit_head(0, EMB)`` if u < 2p, image latents zeroed if p <= u < 3p (5% / 5% / 5% with p = 0.05).

The UNet and the frozen VAE come from the ip2p recipe's folder (``--ip2p``); the word tokenizer is
``editkit.backend.tiny.word_tokenizer`` over the EditWorld vocabulary plus the prompt words and the
[IMG] tokens. The mgie plugin is reached through its entry point (editkit never imports a guide plugin).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from tqdm.auto import tqdm

from ..backend.coordinates import image_conditioning
from ..config import EditkitModel
from .common import RunLog, cosine_lr, group_samples, plugin_module, set_threads, spread, write_recipe
from .mgie_data import Pool, expressive_exact_match, img_states, lm_forward

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class MGIERecipe(EditkitModel):
    out: Path = Field(ASSETS / "editworld-tiny-mgie", description="Output weights folder (editkit MGIE layout).")
    ip2p: Path = Field(ASSETS / "editworld-tiny", description="Trained tiny ip2p folder: UNet (initialisation), "
                       "VAE (frozen), text encoder (edit-head warm-start teacher).")
    init: Path | None = Field(None, description="Start from an MGIE folder (editkit layout: LLM, edit head, UNet) "
                              "instead of new models and the ip2p UNet, e.g. with --pretrain-steps 0 to redo phase 3.")
    unet_from: Literal["auto", "ip2p", "init"] = Field(
        "auto", description="Where the UNet starts: 'ip2p' (the --ip2p folder), 'init' (the --init MGIE folder); "
        "'auto' = init when --init is given, else ip2p. Use 'ip2p' to redo phases 2-3 on a newer ip2p UNet.")
    types: str = Field("explicit,referring", description="EditWorld families/types: comma-separated groups with "
                       "equal shares; '+' joins several into one group ('explicit,contrast+replace').")
    pool: int = Field(20000, ge=8, le=10_000_000, description="EditWorld training samples held in memory.")
    pretrain_pool: int = Field(
        0, ge=0, le=10_000_000, description="Phase 1 draws from its own pool of this many EditWorld samples (images "
        "and token ids only, no VAE latents, so it can be far larger than --pool; seed --seed + 1); 0: the shared "
        "pool. Referring edits need many distinct scenes, or the LLM memorises the pool instead of reading images.")
    image_size: int = Field(64, ge=16, le=512, description="EditWorld image size (also the vision tower's).")
    size: Literal["editworld", "test"] = Field("editworld", description="Model sizes (editkit_mgie.tiny.SIZES).")
    seed: int = Field(0, description="Seed of data and initialisation.")
    pretrain_steps: int = Field(6000, ge=0, le=10_000_000, description="Phase 1: LLM pre-training steps.")
    pretrain_lr: float = Field(1e-3, gt=0, le=1.0, description="Phase 1 peak learning rate (cosine).")
    pretrain_batch_size: int = Field(64, ge=1, le=4096, description="Phase 1 samples per step.")
    align_steps: int = Field(1000, ge=0, le=10_000_000, description="Phase 2: edit-head warm-start steps (0: skip).")
    align_lr: float = Field(1e-3, gt=0, le=1.0, description="Phase 2 peak learning rate.")
    align_train_llm: bool = Field(
        False, description="Phase 2 also trains the LLM (blocks, embeddings, LM head, projector; the vision tower "
        "stays frozen) on cross-entropy + the alignment loss, so the states at the [IMG] positions learn to carry "
        "the rewrite to the edit head; false: the LLM is frozen and only the head learns.")
    align_unet_weight: float = Field(
        0.0, ge=0, le=1000, description="Phase 2 adds this weight times a distillation loss through the frozen "
        "UNet: the MSE between the UNet's predictions on noised targets conditioned on the edit head's output and "
        "on the ip2p text encoder's states of the rewrite (0: off). It measures the head where the UNet reads it "
        "instead of position by position.")
    steps: int = Field(3000, ge=0, le=10_000_000, description="Phase 3: MGIE recipe steps.")
    batch_size: int = Field(32, ge=1, le=4096, description="Phase 3 samples per step.")
    lr: float = Field(2e-4, gt=0, le=1.0, description="Phase 3 peak learning rate (cosine).")
    diffusion_weight: float = Field(0.5, ge=0, le=100, description="Weight of the diffusion MSE (reference 0.5).")
    dropout: float = Field(0.05, ge=0, le=0.3, description="Conditioning dropout probability per pattern.")
    lora_rank: int = Field(0, ge=0, le=256, description="Phase 3: LoRA rank on the LLM attention (0: off; needs peft).")
    ema: float = Field(0.999, ge=0, lt=1, description="EMA decay of the saved phase-3 weights.")
    max_new_tokens: int = Field(32, ge=8, le=256, description="Generation limit written to the config.")
    eval_count: int = Field(256, ge=0, le=100_000, description="Validation samples for expressive exact match.")
    eval_every: int = Field(1000, ge=1, le=10_000_000, description="Phase 1: exact match on 64 val samples (every family) every N steps.")
    log_every: int = Field(50, ge=1, le=100_000, description="Log every N steps.")
    vision_tower: Path | None = Field(
        None, description="An open_clip folder (e.g. editkit/assets/editworld-clip, from 'editkit train clip') "
        "whose image tower becomes LLaVA's frozen, pretrained vision tower read at its penultimate layer, as in "
        "LLaVA; with --init, the LLM is kept and only the projector starts anew. None: the --init folder's tower "
        "(frozen if it came from such a folder, as recorded in mgie_config.json), else the tiny tower trained "
        "from scratch in phase 1.")
    train_unet: bool = Field(
        True, description="Phase 3 trains the UNet (the reference recipe). false: the UNet stays the --ip2p one "
        "and only the token embeddings, LM head and edit head learn, through the LM and diffusion losses, so the "
        "folder can keep sharing the ip2p UNet (and its measured guidance) instead of storing its own.")
    train_tower: bool = Field(
        False, description="Phase 1 also fine-tunes a pretrained vision tower (--vision-tower, or the --init "
        "folder's frozen one) instead of keeping it frozen as LLaVA does; the saved LLM keeps the tuned tower.")
    device: str = Field("cpu", description="Torch device of the models being trained ('cpu', 'cuda').")
    storage_dtype: Literal["float32", "float16"] = Field(
        "float32", description="Dtype of the saved LLM, edit head and trained UNet (float16 halves the files; they "
        "load back in the guide's dtype). With --init and no steps in any phase, the run only re-saves the folder.")

    @field_validator("pretrain_steps")
    @classmethod
    def _phase_1_for_its_pool(cls, value: int, info: ValidationInfo) -> int:
        if value == 0 and info.data.get("pretrain_pool"):
            raise ValueError("0 skips phase 1, the only phase --pretrain-pool feeds; drop --pretrain-pool or "
                             "give phase 1 steps")
        return value


def _plugin(module: str):
    return plugin_module("mgie", module)


# ----------------------------------------------------------------------------------- training
def _optimizer(params, lr):
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=0.0)


def _step(opt, loss, params, step, total, base_lr, warmup) -> None:
    for g in opt.param_groups:
        g["lr"] = cosine_lr(step, total, base_lr, warmup=warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], 1.0)
    opt.step()


def _add_lora(model, rank: int):
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        from ..errors import GuideConfigError

        raise GuideConfigError("train mgie", "lora_rank", "LoRA needs peft (pip install peft)") from None
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    inject_adapter_in_model(cfg, model.model.language_model)
    return [p for n, p in model.named_parameters() if "lora_" in n]


def _merge_lora(model) -> None:
    """Fold LoRA adapters into the base Linear layers so the saved LLM is a plain transformers model."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "base_layer") and hasattr(module, "merge"):
            module.merge()
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            setattr(parent, name.rsplit(".", 1)[1], module.get_base_layer())


def _with_pretrained_tower(model, tok, sizes: dict, recipe: MGIERecipe, tiny):
    """A tiny LLaVA whose vision tower is the open_clip image tower of ``recipe.vision_tower`` (read at the
    penultimate layer), keeping the language model of ``model`` and a fresh projector; and its processor."""
    import open_clip

    from .clip_vision import load_vision_tower, vision_tower_config

    vision = vision_tower_config(recipe.vision_tower)
    new = tiny.llava(tok, sizes, seed=recipe.seed, vision=vision, vision_feature_layer=-2)
    if recipe.init is not None:  # keep the trained LLM (and LM head); the projector's input width changed
        keep = {k: v for k, v in model.state_dict().items()
                if "vision_tower" not in k and "multi_modal_projector" not in k}
        missing, unexpected = new.load_state_dict(keep, strict=False)
        if unexpected or any("vision_tower" not in k and "multi_modal_projector" not in k for k in missing):
            raise RuntimeError(f"--init LLM does not fit the new model: {missing[:3]} {unexpected[:3]}")
    load_vision_tower(new.model.vision_tower, recipe.vision_tower)
    processor = tiny.image_processor(vision["image_size"], open_clip.constants.OPENAI_DATASET_MEAN,
                                     open_clip.constants.OPENAI_DATASET_STD)
    return new, processor


def train_mgie(recipe: MGIERecipe, progress: bool = True) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ..backend.components import Components, _scheduler_config
    from ..backend.tiny import SCHEDULER_CONFIG

    tiny, layout, mllm_mod, head_mod = (_plugin(m) for m in ("tiny", "layout", "mllm", "edit_head"))
    init_cfg = json.loads((Path(recipe.init) / layout.CONFIG_FILE).read_text()) if recipe.init is not None else {}
    init_llm = init_cfg.get("llm", {})
    # where a pretrained, frozen vision tower came from (kept when resuming from --init)
    frozen_tower = init_llm.get("frozen_vision_tower")
    if recipe.train_tower and frozen_tower is None and recipe.vision_tower is None:
        from ..errors import GuideConfigError

        raise GuideConfigError("train mgie", "train_tower", "there is no pretrained, frozen tower to fine-tune: give "
                               "--vision-tower, or --init a folder whose tower is frozen (any other tower already "
                               "trains in phase 1)")
    set_threads()
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    log = RunLog(recipe.out / "logs" / "mgie")
    ip2p = Path(recipe.ip2p)
    vae = AutoencoderKL.from_pretrained(ip2p / "vae").eval().requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(ip2p / "unet").float()  # stored float16 or float32
    scale = float(vae.config.scaling_factor)
    try:
        sched_cfg = _scheduler_config(str(ip2p))
    except Exception:  # noqa: BLE001 - an ip2p folder without scheduler/: the shared tiny schedule
        sched_cfg = dict(SCHEDULER_CONFIG)
    teacher = teacher_tok = None
    if recipe.align_steps:
        from transformers import AutoTokenizer, CLIPTextModel

        teacher = CLIPTextModel.from_pretrained(ip2p / "text_encoder").eval().requires_grad_(False)
        teacher_tok = AutoTokenizer.from_pretrained(ip2p / "tokenizer")

    sizes = dict(tiny.SIZES[recipe.size], image_size=recipe.image_size)
    if recipe.init is not None:
        from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration

        tok = AutoTokenizer.from_pretrained(Path(recipe.init) / "llm")
        # trained in float32 whatever the folder stores (the committed LLM is stored in float16)
        model = LlavaForConditionalGeneration.from_pretrained(Path(recipe.init) / "llm", dtype=torch.float32)
        if recipe.unet_from != "ip2p":
            unet = UNet2DConditionModel.from_pretrained(Path(recipe.init) / "unet").float()
        sizes["llm_width"] = model.config.text_config.hidden_size
        processor = CLIPImageProcessor.from_pretrained(Path(recipe.init) / "llm")
    else:
        tok = tiny.tokenizer()
        model = tiny.llava(tok, sizes, seed=recipe.seed)
        processor = tiny.image_processor(recipe.image_size)
    meta = tiny.tiny_meta(max_new_tokens=recipe.max_new_tokens)
    if recipe.vision_tower is not None:
        model, processor = _with_pretrained_tower(model, tok, sizes, recipe, tiny)
        frozen_tower = str(recipe.vision_tower)
        log.write(note="frozen pretrained vision tower", vision_tower=frozen_tower)
    if frozen_tower is not None:
        meta["frozen_vision_tower"] = frozen_tower
    elif init_llm.get("tuned_vision_tower"):  # keep the record when resuming
        meta["tuned_vision_tower"] = init_llm["tuned_vision_tower"]
    mllm = mllm_mod.MLLM(model, tok, processor, meta)
    n_img = mllm.n_img
    if recipe.init is not None:
        from ..weights import load_state_dict

        head = head_mod.EditHead(head_mod.EditHeadConfig.from_dict(init_cfg["edit_head"]))
        head_sd = load_state_dict(Path(recipe.init) / "edit_head.safetensors")
        head.load_state_dict({k[len("edit_head."):]: v for k, v in head_sd.items() if k.startswith("edit_head.")})
        if teacher_tok is not None and (head.config.num_queries != teacher_tok.model_max_length
                                        or head.config.out_dim != unet.config.cross_attention_dim):
            # the warm start fixes the conditioning shape to the teacher's; a head of another shape is rebuilt
            head = head_mod.EditHead(tiny.edit_head_config(sizes["llm_width"], unet.config.cross_attention_dim,
                                                           sizes, teacher_tok.model_max_length))
            log.write(note="edit head rebuilt to the ip2p text encoder's length", queries=teacher_tok.model_max_length)
    else:
        # the warm-start teacher fixes the number of queries: one per ip2p text position
        queries = teacher_tok.model_max_length if teacher_tok is not None else None
        head = head_mod.EditHead(tiny.edit_head_config(sizes["llm_width"], unet.config.cross_attention_dim, sizes,
                                                       queries))

    # without phase 3 the UNet is the ip2p one unchanged, so the guidance its trainer measured best still holds
    from ..backend.components import sampling_defaults

    unet_is_ip2p = (recipe.steps == 0 or not recipe.train_unet) and (recipe.init is None or recipe.unet_from == "ip2p")
    sampling = sampling_defaults(ip2p) if unet_is_ip2p else {}

    def save(note: str) -> None:
        dtype = getattr(torch, recipe.storage_dtype)
        stored_unet = unet if unet_is_ip2p or dtype == unet.dtype else copy.deepcopy(unet).to(dtype)
        layout.save(recipe.out, model=model, tokenizer=tok, image_processor=mllm.image_processor, edit_head=head,
                    emb=model.get_input_embeddings().weight[-n_img:], meta=meta,
                    components=Components(unet=stored_unet, vae=vae, scheduler_config=sched_cfg), note=note,
                    extra={"sampling": sampling} if sampling else None, storage_dtype=dtype)

    samples = group_samples("train", recipe.pool, recipe.seed, recipe.types, recipe.image_size)
    val = group_samples("val", recipe.eval_count, recipe.seed, recipe.types, recipe.image_size)
    pool = Pool(samples, mllm, vae, scale, n_img)
    text_pool = pool
    if recipe.pretrain_pool and recipe.pretrain_steps:
        text_pool = Pool(group_samples("train", recipe.pretrain_pool, recipe.seed + 1, recipe.types,
                                       recipe.image_size), mllm, None, scale, n_img)
    probe = spread(val, 64)  # val is ordered by family; the probe covers every family
    log.write(pool=len(pool), pretrain_pool=len(text_pool), llm_params=sum(p.numel() for p in model.parameters()),
              head_params=sum(p.numel() for p in head.parameters()), image_tokens=mllm.image_seq_length)
    results: dict[str, Any] = {"pool": len(pool)}

    device = recipe.device
    model.to(device)
    head.to(device)
    unet.to(device)

    def batch(n, source=pool):
        idx = torch.randint(0, len(source), (n,), generator=gen)
        return idx, source.batch(idx, device)

    # ---- phase 1: LLM pre-training (all LLaVA weights but a pretrained tower; CE only)
    model.train().requires_grad_(True)
    if frozen_tower is not None and not recipe.train_tower:
        model.model.vision_tower.eval().requires_grad_(False)
    elif frozen_tower is not None:  # a pretrained tower, fine-tuned from here on
        meta.pop("frozen_vision_tower", None)
        meta["tuned_vision_tower"] = frozen_tower
        log.write(note="fine-tuning the pretrained vision tower in phase 1", vision_tower=frozen_tower)
    params = list(model.parameters())
    opt = _optimizer(params, recipe.pretrain_lr)
    bar = tqdm(range(recipe.pretrain_steps), desc="mgie 1/3 llm", disable=not progress)
    for step in bar:
        ce, _ = lm_forward(model, batch(recipe.pretrain_batch_size, text_pool)[1])
        _step(opt, ce, params, step, recipe.pretrain_steps, recipe.pretrain_lr, warmup=200)
        if step % recipe.log_every == 0 or step == recipe.pretrain_steps - 1:
            bar.set_postfix(ce=f"{ce.item():.4f}")
            log.write(phase=1, step=step, ce=ce.item())
        if val and step > 0 and step % recipe.eval_every == 0:
            log.write(phase=1, step=step, **expressive_exact_match(mllm, probe, recipe.max_new_tokens))
            model.train()
    if recipe.pretrain_steps:
        results["pretrain_ce"] = round(ce.item(), 5)
    model.eval().requires_grad_(False)

    if recipe.pretrain_steps:  # a checkpoint to resume from (--init OUT --pretrain-steps 0)
        save("tiny EditWorld MGIE after phase 1 of 'editkit train mgie' (LLM pre-trained; head and UNet not yet)")

    from diffusers import DDPMScheduler

    alphas = DDPMScheduler.from_config(sched_cfg).alphas_cumprod
    v_pred = sched_cfg.get("prediction_type", "epsilon") == "v_prediction"

    def noised(tgt):
        """(noisy latents, timesteps, sqrt(alpha_bar), noise) at uniformly drawn training timesteps."""
        noise = torch.randn(tgt.shape, generator=gen).to(device)
        t = torch.randint(0, alphas.shape[0], (tgt.shape[0],), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1).to(device)
        return a.sqrt() * tgt + (1 - a).sqrt() * noise, t.to(device), a, noise

    # ---- phase 2: edit-head warm start against the ip2p text encoder (LLM frozen)
    if recipe.align_steps and teacher is not None:
        def encode(texts):
            ids = teacher_tok(texts, padding="max_length", truncation=True, max_length=teacher_tok.model_max_length,
                              return_tensors="pt").input_ids
            return teacher(ids.to(device))[0]

        teacher.to(device)
        unet.eval().requires_grad_(False)  # phase 2 never changes the UNet; the distillation loss reads through it
        null_target = encode([""])
        llm_params: list[torch.nn.Parameter] = []
        if recipe.align_train_llm:
            model.train().requires_grad_(True)
            model.model.vision_tower.eval().requires_grad_(False)
            llm_params = [p for p in model.parameters() if p.requires_grad]
        params = [*head.parameters(), *llm_params]
        opt = _optimizer(params, recipe.align_lr)
        bar = tqdm(range(recipe.align_steps), desc="mgie 2/3 head", disable=not progress)
        for step in bar:
            idx, b = batch(recipe.batch_size)
            with torch.set_grad_enabled(recipe.align_train_llm):
                ce, hidden = lm_forward(model, b)
            with torch.no_grad():
                target = encode([pool.rewrites[i] for i in idx.tolist()])
            emb = model.get_input_embeddings().weight[-n_img:]
            emb = emb if recipe.align_train_llm else emb.detach()
            cond = head(img_states(hidden, b["img_pos"], n_img), emb)
            align = loss = F.mse_loss(cond, target) + F.mse_loss(head.null(emb), null_target)
            if recipe.align_unet_weight:
                noisy, t, _, _ = noised(b["tgt"])
                x = torch.cat([noisy, image_conditioning(unet, b["src"])], 1)
                with torch.no_grad():
                    taught = unet(x, t, encoder_hidden_states=target).sample
                distill = F.mse_loss(unet(x, t, encoder_hidden_states=cond).sample, taught)
                loss = loss + recipe.align_unet_weight * distill
            _step(opt, loss + ce if recipe.align_train_llm else loss, params, step, recipe.align_steps,
                  recipe.align_lr, warmup=50)
            if step % recipe.log_every == 0 or step == recipe.align_steps - 1:
                bar.set_postfix(mse=f"{align.item():.4f}", ce=f"{ce.item():.4f}")
                log.write(phase=2, step=step, align_mse=align.item(), ce=ce.item(),
                          **({"distill_mse": distill.item()} if recipe.align_unet_weight else {}))
        if recipe.align_train_llm:
            model.eval().requires_grad_(False)
            results["align_ce"] = round(ce.item(), 5)
        results["align_mse"] = round(align.item(), 5)
        if recipe.align_unet_weight:
            results["align_distill_mse"] = round(distill.item(), 7)

    # ---- phase 3: the MGIE recipe
    embed, lm_head = model.get_input_embeddings(), model.get_output_embeddings()
    embed.weight.requires_grad_(True)
    lm_head.weight.requires_grad_(True)
    lora = _add_lora(model, recipe.lora_rank) if recipe.lora_rank and recipe.steps else []
    unet.train(recipe.train_unet).requires_grad_(recipe.train_unet)
    head.train().requires_grad_(True)
    trainable = [embed.weight, lm_head.weight, *lora, *head.parameters(),
                 *(unet.parameters() if recipe.train_unet else ())]
    ema = [p.detach().clone() for p in trainable]
    opt = _optimizer(trainable, recipe.lr)
    p_drop = recipe.dropout
    bar = tqdm(range(recipe.steps), desc="mgie 3/3 joint", disable=not progress)
    for step in bar:
        _, b = batch(recipe.batch_size)
        ce, hidden = lm_forward(model, b)
        emb = embed.weight[-n_img:]
        cond = head(img_states(hidden, b["img_pos"], n_img), emb)
        u = torch.rand(recipe.batch_size, generator=gen).to(device)
        drop_text, drop_image = u < 2 * p_drop, (u >= p_drop) & (u < 3 * p_drop)
        cond = torch.where(drop_text[:, None, None], head.null(emb).expand_as(cond), cond)
        src = image_conditioning(unet, b["src"]) * (~drop_image).float()[:, None, None, None]
        noisy, t, a, noise = noised(b["tgt"])
        pred = unet(torch.cat([noisy, src], 1), t, encoder_hidden_states=cond).sample
        # the UNet's own parametrisation (the EditWorld ip2p UNet predicts v on a zero-terminal-SNR schedule)
        target = a.sqrt() * noise - (1 - a).sqrt() * b["tgt"] if v_pred else noise
        mse = F.mse_loss(pred, target)
        loss = ce + recipe.diffusion_weight * mse
        _step(opt, loss, trainable, step, recipe.steps, recipe.lr, warmup=100)
        decay = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, trainable):
                e.lerp_(p.detach(), 1 - decay)
        if step % recipe.log_every == 0 or step == recipe.steps - 1:
            bar.set_postfix(ce=f"{ce.item():.4f}", mse=f"{mse.item():.4f}")
            log.write(phase=3, step=step, ce=ce.item(), mse=mse.item(), lr=opt.param_groups[0]["lr"])
    if recipe.steps:
        with torch.no_grad():
            for e, p in zip(ema, trainable):
                p.copy_(e)
        results.update(final_ce=round(ce.item(), 5), final_mse=round(mse.item(), 5))
    if lora:
        _merge_lora(model)
    model.eval().requires_grad_(False).cpu()
    unet.eval().requires_grad_(False).cpu()
    head.eval().requires_grad_(False).cpu()

    save("tiny EditWorld MGIE trained with 'editkit train mgie' (see recipe_mgie.json)")
    if val:
        results.update(expressive_exact_match(mllm, val, recipe.max_new_tokens))
    log.write(done=True, **results)
    write_recipe(recipe.out, "mgie", recipe.model_dump(mode="json"), log.elapsed, results)
    return results
