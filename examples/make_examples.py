"""Regenerate the example images of the README from EditWorld scene descriptions (test split only)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from editkit.editworld.render import render_scene
from editkit.editworld.world import Background, Obj, Scene, split_of

HERE = Path(__file__).resolve().parent

EXAMPLES = {
    "red_circle.png": Scene.make(
        [Obj("circle", "red", "large", "top left"), Obj("square", "yellow", "small", "bottom right")],
        Background("cream", "gradient", 2),
    ),
}

if __name__ == "__main__":
    for name, scene in EXAMPLES.items():
        assert split_of(scene) == "test", f"{name}: pick a test-split scene (got {split_of(scene)})"
        Image.fromarray(render_scene(scene, 64)).save(HERE / name)
        print("wrote", HERE / name)
