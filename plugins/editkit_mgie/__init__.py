"""``mgie``: MLLM-Guided Image Editing (Fu et al., ICLR 2024; apple/ml-mgie) on the shared backend.

A LLaVA-style multimodal LLM (transformers ``LlavaForConditionalGeneration``) answers
"what will this image be like if '<instruction>'" with an expressive instruction followed by eight
``[IMG]`` tokens; the last-layer hidden states that predict them, plus the ``[IMG]`` input embeddings,
go through the edit head to a 77 x 768 (tiny: Q x D) conditioning sequence for an 8-channel
InstructPix2Pix UNet, sampled with the three-branch dual guidance whose text null is
``edit_head(zeros, EMB)``. Modules: ``prompt`` (templates, text rules), ``edit_head``, ``mllm``
(generation), ``layout`` (weights folders), ``convert`` (official release), ``tiny`` (small models),
``guide``. See docs/guides/mgie.md.
"""
from __future__ import annotations

from .config import MGIEConfig
from .guide import MGIEGuide

__all__ = ["MGIEConfig", "MGIEGuide"]
