"""EditWorld: a generated editing world with exact ground truth (numpy + PIL only, no torch).

Scenes are 1-4 objects (4 shape kinds x 6 colours x 2 sizes) on distinct cells of a 3x3 grid, on a
muted background (flat, gradient, radial or soft-noise texture) of one of 5 named tones, rendered
anti-aliased at 64x64 by default (any size from 24 to 1024; positions and sizes scale). Each sample
is one edit of one scene with its exact target. See docs/editworld.md for the full description.

In-memory API (what training uses)::

    from editkit import editworld as ew

    samples = ew.generate("train", 1000, seed=0, types="explicit", size=64)   # list[Sample]
    stream = ew.iter_samples("train", seed=0, types=["recolour", "remove"])    # endless iterator
    s = samples[0]
    s.source, s.target          # (H, W, 3) uint8 arrays
    s.mask                      # (H, W) bool: pixels the edit is meant to change
    s.instruction, s.rewrite    # "turn the red circle blue", "make the small red circle at the top left blue"
    s.source_caption, s.target_caption
    s.scene, s.target_scene     # Scene(objects=(Obj(kind, colour, size, position), ...), background=Background(...))
    s.edit_type, s.family       # e.g. "recolour", "explicit"; s.action is what it does to the scene
    s.edit                      # {"action", "object", "result", ["background"|"direction"]}
    s.inputs                    # multimodal only: {"image1": (H, W, 3) uint8} or {"audio1": float32 16 kHz}

    ew.vocabulary()             # every token of any instruction / rewrite / caption (word-level tokenizer)
    ew.tokenize("add the [audio1] at the top")  # ['add', 'the', '[audio1]', 'at', 'the', 'top']
    ew.render_scene(scene, 64)  # (H, W, 3) uint8
    ew.describe(scene)          # caption
    ew.split_of(scene)          # "train" | "val" | "test" (sha1 of the canonical scene key, mod 10)

``types`` is "all", a family ("explicit", "referring", "multimodal"), an edit type, or a list of
them: explicit {recolour, remove, add, replace, resize, move, background, brightness, contrast},
referring {unique_attribute, superlative, spatial, odd_one_out}, multimodal {add_image, add_audio,
replace_image, replace_audio, remove_image, remove_audio}.

Dataset folders (what evaluation reads): ``editkit data editworld ... --out DIR`` or
:func:`editkit.editworld.dataset.write_dataset`; read back with
:func:`editkit.editworld.dataset.load_dataset`.
"""
from __future__ import annotations

from .audio import SAMPLE_RATE, object_sound, read_wav, write_wav
from .edit_types import EDIT_TYPES, EXPLICIT_TYPES, FAMILIES, FAMILY_OF, MULTIMODAL_TYPES, REFERRING_TYPES, resolve_types
from .generator import Sample, generate, iter_samples
from .language import rewrite_for, vocabulary
from .render import render_cutout, render_scene
from .world import (
    BACKGROUNDS,
    COLOURS,
    KINDS,
    POSITIONS,
    SIZES,
    SPLITS,
    Background,
    Obj,
    Scene,
    describe,
    normalize_text,
    scene_key,
    split_of,
    tokenize,
)

__all__ = [
    "BACKGROUNDS", "COLOURS", "EDIT_TYPES", "EXPLICIT_TYPES", "FAMILIES", "FAMILY_OF", "KINDS",
    "MULTIMODAL_TYPES", "POSITIONS", "REFERRING_TYPES", "SAMPLE_RATE", "SIZES", "SPLITS",
    "Background", "Obj", "Sample", "Scene",
    "describe", "generate", "iter_samples", "normalize_text", "object_sound", "read_wav", "render_cutout",
    "render_scene", "resolve_types", "rewrite_for", "scene_key", "split_of", "tokenize", "vocabulary",
    "write_wav",
]
