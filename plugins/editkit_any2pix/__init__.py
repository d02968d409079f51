"""``any2pix``: InstructAny2Pix (Li et al., NAACL 2025 Findings; jacklishufan/InstructAny2Pix) on the shared backend.

Images and audio clips that the instruction refers to as ``[image1]``, ``[audio1]``, ... are encoded with
ImageBind (optional extra) and added to the LLM's ``<video>`` placeholder embeddings; the LLM answers
with the output grammar, whose [base]/[gen]/[sub] hidden states an output projector maps back to
ImageBind space; a refinement prior refines [gen]; the mix ``h0 base + h1 gen + h2 prior`` conditions an
IP-Adapter UNet started from the DDIM-inverted base image. Modules: ``encoders`` (ImageBind shim and
preprocessing), ``language`` (LLM), ``grammar`` (answer parser), ``prior``, ``mixing``, ``inputs``,
``layout`` (weights folder), ``guide``. See docs/guides/any2pix.md.
"""
from __future__ import annotations

from .config import Any2PixConfig
from .guide import Any2PixGuide

__all__ = ["Any2PixConfig", "Any2PixGuide"]
