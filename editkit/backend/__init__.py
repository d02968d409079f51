"""The shared latent-diffusion backend (imports torch and diffusers; the core never imports it eagerly)."""
from .cache import BackendCache
from .components import EDITWORLD_WEIGHTS, Components, load_components
from .diffusion import LatentDiffusionBackend

__all__ = ["BackendCache", "Components", "LatentDiffusionBackend", "load_components", "EDITWORLD_WEIGHTS"]
