"""The shared latent-diffusion backend: encode, sample with guide-supplied conditioning, decode.

One object per set of weights and device/dtype; guides that share weights share the object
(see :class:`editkit.backend.cache.BackendCache`). The sampling loop runs all guidance branches in
one batched UNet call per step and does no autograd work unless a guide asks for gradient guidance.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import torch
from tqdm.auto import tqdm

from ..types import Conditioning, EditRequest, StepState
from .components import Components
from .coordinates import image_conditioning
from .images import crop_to, pad_to_multiple, pil_to_tensor, tensor_to_pil
from .denoiser import Denoiser, expand, repeat_conditioning
from .schedulers import make_scheduler, resolve_name
from .sdxl import added_cond, encode_two, takes_text_time, token_ids
from .speed import FusedDDIM, SpeedOptions, apply as apply_speed

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ..guide import Guide


class LatentDiffusionBackend:
    def __init__(self, components: Components, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.unet = _place(components.unet, self.device, dtype)
        self.vae = _place(components.vae, self.device, dtype)
        self.text_encoder, self.text_encoder_2 = (
            None if enc is None else _place(enc, self.device, dtype)
            for enc in (components.text_encoder, components.text_encoder_2))
        self.tokenizer, self.tokenizer_2 = components.tokenizer, components.tokenizer_2
        self.scheduler_config = components.scheduler_config
        self.extra = components.extra
        self.unet.set_attn_processor(_sdpa_processor())
        self.compiled_unet = None  # set by SpeedOptions.compile
        self.speed = SpeedOptions()
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(self.vae.config.scaling_factor)

    def recommended(self, name: str, default: Any, guide: str | None = None) -> Any:
        """A sampling setting recommended by the weights folder (``editkit_sampling.json``): the ``guide``'s own
        entry (``"guides": {guide: {...}}``) first, then the folder's, else ``default``."""
        sampling = self.extra.get("sampling", {})
        own = sampling.get("guides", {}).get(guide, {}) if guide is not None else {}
        return own.get(name, sampling.get(name, default))

    @property
    def unet_forward(self):
        """The UNet the sampling loop calls: the compiled one when compilation is on."""
        return self.compiled_unet if self.compiled_unet is not None else self.unet

    @property
    def is_sdxl(self) -> bool:
        """Whether the UNet wants SDXL's added conditioning (``text_embeds``, ``time_ids``; see :mod:`.sdxl`)."""
        return takes_text_time(self.unet)

    def sdxl_added_cond(self, pooled: torch.Tensor, height: int, width: int, batch: int) -> dict[str, torch.Tensor]:
        """SDXL's ``added_cond_kwargs`` entries for one branch of ``batch`` images of ``height`` x ``width``
        pixels (e.g. for :meth:`invert`'s ``unet_kwargs``), on the backend's device and dtype."""
        return added_cond(pooled, height, width, batch, self.device, self.dtype)

    # ------------------------------------------------------------------ images and text
    @torch.inference_mode()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Token embeddings (B, L, D): the first part of :meth:`encode_prompts`."""
        return self.encode_prompts(prompts)[0]

    @torch.inference_mode()
    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(token states (B, L, D), pooled embedding (B, P) or None).

        SDXL UNets: the penultimate layers of both text encoders concatenated on the feature axis and the second
        encoder's projected pooled embedding, as diffusers' SDXL pipeline. Others: the text encoder's last layer
        and None.
        """
        if self.text_encoder is None or self.tokenizer is None:
            raise RuntimeError("this backend has no text encoder; supply precomputed embeddings")
        if not self.is_sdxl:
            return self.text_encoder(token_ids(self.tokenizer, prompts, self.device))[0], None
        if self.text_encoder_2 is None or self.tokenizer_2 is None:
            raise RuntimeError("this SDXL backend has no second text encoder (text_encoder_2/ and tokenizer_2/)")
        return encode_two((self.tokenizer, self.tokenizer_2), (self.text_encoder, self.text_encoder_2), prompts,
                          self.device)

    def images_to_tensor(self, images: list["Image.Image"]) -> tuple[torch.Tensor, tuple[int, int]]:
        x = pil_to_tensor(images)
        x, size = pad_to_multiple(x, self.vae_factor)
        return x.to(self.device, self.dtype), size

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, *, scaled: bool) -> torch.Tensor:
        """VAE posterior mode of pixels in [-1, 1]; scaled by the VAE factor only when ``scaled``.

        InstructPix2Pix image conditioning uses unscaled latents; latents that are denoised are scaled.
        """
        latents = self.vae.encode(pixels).latent_dist.mode()
        return latents * self.scaling_factor if scaled else latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.scaling_factor).sample

    # ------------------------------------------------------------------ sampling
    def generate(
        self,
        cond: Conditioning,
        request: EditRequest,
        *,
        hooks: "Guide | None" = None,
        steps: int = 20,
        scheduler: str = "ddim",
        progress: bool = True,
        timings: dict[str, float] | None = None,
        callback: Callable[[StepState], None] | None = None,
        num_candidates: int = 1,
        speed: SpeedOptions | None = None,
    ) -> list["Image.Image"]:
        """Run one edit batch and return PIL images at the input size.

        With ``num_candidates`` K > 1 the batch holds K samples per request image (seeds
        ``seed_i * 1000 + k``), returned in request order, candidates of one image adjacent.
        """
        timings = {} if timings is None else timings
        if speed is not None:
            apply_speed(self, speed)
        t0 = time.perf_counter()
        pixels, size = self.images_to_tensor(request.images)
        seeds = request.seeds()
        if num_candidates > 1:
            pixels = pixels.repeat_interleave(num_candidates, 0)
            seeds = [s * 1000 + k for s in seeds for k in range(num_candidates)]
            cond = repeat_conditioning(cond, num_candidates)
        source_latents = None
        if cond.mode in ("ip2p", "sdedit"):
            source_latents = self.encode(pixels, scaled=cond.mode == "sdedit")
        self._sync()
        timings["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        latents = self.sample(
            cond, seeds, height=pixels.shape[-2], width=pixels.shape[-1], source_latents=source_latents,
            hooks=hooks, steps=steps, scheduler=scheduler, progress=progress, callback=callback,
        )
        self._sync()
        timings["denoise"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        images = tensor_to_pil(crop_to(self.decode(latents), size))
        timings["decode"] = time.perf_counter() - t0
        return images

    def sample(
        self,
        cond: Conditioning,
        seeds: list[int],
        *,
        height: int,
        width: int,
        source_latents: torch.Tensor | None = None,
        hooks: "Guide | None" = None,
        steps: int = 20,
        scheduler: str = "ddim",
        progress: bool = True,
        callback: Callable[[StepState], None] | None = None,
    ) -> torch.Tensor:
        """The denoising loop; returns scaled latents (B, 4, h, w)."""
        scheduler = resolve_name(scheduler, self.scheduler_config)
        sched = make_scheduler(scheduler, self.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        timesteps = sched.timesteps
        batch = len(seeds)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        shape = (batch, self.unet.config.out_channels, height // self.vae_factor, width // self.vae_factor)
        noise = _randn(shape, generators).to(self.device, self.dtype)

        clean_source = None
        if source_latents is not None:
            clean_source = source_latents if cond.mode == "sdedit" else source_latents * self.scaling_factor
        if cond.mode == "sdedit" or (cond.mode == "ip2p" and cond.strength < 1.0):
            # Start from the source noised to the level after skipping (1 - strength) of the schedule.
            if clean_source is None:
                raise ValueError(f"{cond.mode} mode with strength < 1 needs source latents")
            start = min(int(round(steps * (1.0 - cond.strength))), steps - 1)
            timesteps = timesteps[start:]
            latents = sched.add_noise(clean_source, noise, timesteps[:1].repeat(batch))
        elif cond.init_latents is not None:
            latents = expand(cond.init_latents.to(self.device, self.dtype), batch).clone()
        else:
            latents = noise * sched.init_noise_sigma

        use_step_hook = hooks is not None and hooks.hooks_used()["on_step"]
        use_grad = hooks is not None and hooks.hooks_used()["guidance_loss"]
        fused = None
        if (self.speed.fused_sampler and not use_step_hook and not use_grad and callback is None
                and FusedDDIM.supports(sched, scheduler)):
            fused = FusedDDIM(sched, timesteps)
            fused = fused if fused.ok else None
        image_cond = image_conditioning(self.unet, source_latents) if cond.mode == "ip2p" else source_latents
        denoiser = Denoiser(self.unet_forward, cond, image_cond, batch, self.device, self.dtype,
                            preallocate=shape if fused is not None else None, channels_last=self.speed.channels_last,
                            pixel_size=(shape[-2] * self.vae_factor, shape[-1] * self.vae_factor))
        if fused is not None:
            return self._fused_loop(denoiser, fused, latents, timesteps, progress)
        if use_grad and not hasattr(sched, "alphas_cumprod") or (use_grad and scheduler == "euler_ancestral"):
            raise ValueError("gradient guidance needs the ddim or ddpm scheduler")
        step_kwargs: dict[str, Any] = {"generator": generators} if scheduler != "ddim" else {}
        # inference_mode is cheapest; gradient guidance needs ordinary tensors, so it uses no_grad.
        no_autograd = torch.no_grad if use_grad else torch.inference_mode
        through_unet = bool(cond.extra.get("guidance_through_unet", True))
        if use_grad:
            denoiser.make_differentiable()
            latents = latents.clone()

        context = {"scheduler": sched, "timesteps": timesteps, "noise": noise, "source_latents": clean_source}
        bar = tqdm(timesteps, desc="denoise", disable=not progress, leave=False)
        for i, t in enumerate(bar):
            if use_grad:
                noise_pred = self._guided_noise(denoiser, sched, latents, t, i, hooks, through_unet)
            else:
                with no_autograd():
                    noise_pred = denoiser(sched.scale_model_input(latents, t), t)
            with no_autograd():
                out = sched.step(noise_pred, t, latents, **step_kwargs)
            latents = out.prev_sample
            if use_step_hook or callback is not None:
                state = StepState(
                    step=i, timestep=t, latents=latents, noise_pred=noise_pred,
                    pred_x0=getattr(out, "pred_original_sample", None), extra=context,
                )
                if use_step_hook:
                    replaced = hooks.on_step(state)
                    if replaced is not None:
                        latents = replaced
                        state.latents = replaced
                if callback is not None:
                    callback(state)
        return latents

    @torch.inference_mode()
    def _fused_loop(self, denoiser, fused: FusedDDIM, latents, timesteps, progress: bool) -> torch.Tensor:
        """DDIM without the scheduler: one UNet call and one multiply-add per step, nothing else."""
        for (a, b), t in zip(fused.coefficients, tqdm(timesteps, desc="denoise", disable=not progress, leave=False)):
            latents = torch.add(latents.mul(a), denoiser(latents, t), alpha=b)
        return latents

    def _guided_noise(self, denoiser, sched, latents, t, i, hooks, through_unet: bool = True) -> torch.Tensor:
        """Classifier-style guidance: shift the noise prediction by the gradient of the guide's loss on x0.

        ``through_unet`` (the reference behaviour) differentiates x0(x_t) through the UNet. Without it the model
        output is held fixed, so dx0/dx_t is 1/sqrt(alpha_bar) (epsilon) or sqrt(alpha_bar) (v-prediction) and
        only the guide's loss is differentiated: several times cheaper, an approximation.
        """
        alpha_bar = sched.alphas_cumprod.to(self.device)[int(t)].to(self.dtype)
        ptype = sched.config.prediction_type
        with torch.enable_grad():
            if through_unet:
                x = latents.detach().requires_grad_(True)
                out = denoiser(sched.scale_model_input(x, t), t)
                eps, pred_x0 = _eps_and_x0(out, x, alpha_bar, ptype)
            else:
                x = latents.detach()
                with torch.no_grad():
                    out = denoiser(sched.scale_model_input(x, t), t)
                eps, pred_x0 = _eps_and_x0(out, x, alpha_bar, ptype)
                pred_x0 = pred_x0.detach().requires_grad_(True)
            loss = hooks.guidance_loss(pred_x0, StepState(step=i, timestep=t, latents=x, pred_x0=pred_x0))
            if loss is None:
                return out.detach()
            if through_unet:
                grad = torch.autograd.grad(loss, x)[0]
            else:
                scale = alpha_bar.sqrt() if ptype == "v_prediction" else 1 / alpha_bar.sqrt().clamp(min=1e-4)
                grad = torch.autograd.grad(loss, pred_x0)[0] * scale
        if sched.config.prediction_type == "v_prediction":
            # eps' = eps + s * grad with x fixed  =>  v' = v + s * grad / sqrt(alpha_bar). Near zero terminal
            # SNR the x0 estimate carries no signal of x_t, so the guidance is skipped there.
            if float(alpha_bar) < 1e-3:
                return out.detach()
            return (out + (1 - alpha_bar).sqrt() / alpha_bar.sqrt() * grad).detach()
        return (eps + (1 - alpha_bar).sqrt() * grad).detach()

    # ------------------------------------------------------------------ inversion
    @torch.inference_mode()
    def invert(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        *,
        steps: int = 50,
        image_latents: torch.Tensor | None = None,
        progress: bool = False,
        unet_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Deterministic DDIM inversion (no guidance): scaled clean latents -> the noise that regenerates them.

        Regenerating the result with the DDIM scheduler (eta 0), the same ``steps`` and the same
        conditioning reproduces ``latents`` up to the discretisation error. ``unet_kwargs`` go to every UNet
        call, e.g. ``{"added_cond_kwargs": backend.sdxl_added_cond(pooled, h, w, batch)}`` for SDXL UNets.
        """
        sched = make_scheduler("ddim", self.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        alphas = sched.alphas_cumprod.to(self.device, torch.float32)
        ts = sched.timesteps.flip(0)  # ascending
        x = latents.to(self.device, self.dtype)
        if image_latents is not None:
            image_latents = image_conditioning(self.unet, image_latents.to(self.device, self.dtype))
        for i, t in enumerate(tqdm(ts, desc="invert", disable=not progress, leave=False)):
            a_prev = alphas[int(ts[i - 1])] if i > 0 else sched.final_alpha_cumprod.to(self.device)
            a_t = alphas[int(t)]
            inp = x if image_latents is None else torch.cat([x, image_latents], dim=1)
            out = self.unet(inp, t, encoder_hidden_states=cond, **(unet_kwargs or {})).sample.float()
            eps, _ = _eps_and_x0(out, x.float(), a_t, sched.config.prediction_type)  # the level the model is told
            x0 = (x.float() - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
            x = (a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps).to(self.dtype)
        return x

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _eps_and_x0(out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """Noise and clean-sample estimates from a model output of either parametrisation."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return s * x + a * out, a * x - s * out
    if prediction_type != "epsilon":
        raise ValueError(f"unsupported prediction type '{prediction_type}'")
    return out, (x - s * out) / a.clamp(min=1e-4)


def _place(module, device: torch.device, dtype: torch.dtype):
    module = module.to(device)
    if next(module.parameters()).dtype != dtype:
        # torch's own cast: diffusers' ``to`` override warns on every dtype change (the committed UNets are
        # stored in float16 and run in float32 on the CPU)
        module = torch.nn.Module.to(module, dtype=dtype)
    return module.eval().requires_grad_(False)


def _randn(shape, generators: list[torch.Generator]) -> torch.Tensor:
    """Per-sample noise: sample i depends only on its own generator, so batching does not change it."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in generators])


def _sdpa_processor():
    from diffusers.models.attention_processor import AttnProcessor2_0

    return AttnProcessor2_0()
