"""docs/img/ip2p_position_probe.png: 'draw a large yellow diamond at the <position>' on two one-object test scenes,
the run-3 UNet (frozen text encoder, stop 19) against the run-4 UNet (text encoder trained again + coordinates,
stop 20). The committed UNet is run 5 now, so both are taken from git:

    mkdir -p runs
    for run in "ew-run3 56812ea" "ew-run4 51edef1"; do set -- $run
      cp -r editkit/assets/editworld-tiny runs/$1
      for f in unet/diffusion_pytorch_model.safetensors unet/config.json text_encoder/model.safetensors \
               text_encoder/config.json editkit_sampling.json; do git show $2:editkit/assets/editworld-tiny/$f > runs/$1/$f; done
    done
    python examples/position_probe.py

Each edit is a separate call with seed 0, as in tests/test_quality.py::test_an_added_object_goes_where_the_instruction_says.
"""
from PIL import Image, ImageDraw

import editkit
from editkit.editworld import generate
from editkit.types import EditRequest

RUN3, RUN4 = "runs/ew-run3", "runs/ew-run4"  # the stop-19 and stop-20 weights, taken from git as above
POS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
scenes = [s for s in generate("test", 80, seed=3, types="add") if len(s.scene.objects) == 1
          and s.scene.objects[0].position not in ("top left", "bottom right") and s.scene.objects[0].colour != "yellow"][:2]
rows = [("run 3 (stop 19):\nfrozen text\nencoder", RUN3), ("run 4 (stop 20):\ntext encoder\ntrained,\ncoordinates", RUN4)]
S, L, T = 96, 130, 18
img = Image.new("RGB", (L + 10 * S, T + len(rows) * len(scenes) * S), "white")
d = ImageDraw.Draw(img)
for j, name in enumerate(["source"] + POS):
    d.text((L + j * S + 4, 3), name, fill="black")
for r, (label, folder) in enumerate(rows):
    guide = editkit.load_guide("ip2p", model=folder, progress=False)
    for k, sc in enumerate(scenes):
        y = T + (r * len(scenes) + k) * S
        if k == 0:
            d.multiline_text((4, y + S // 2), label, fill="black")
        img.paste(Image.fromarray(sc.source).resize((S, S), Image.NEAREST), (L, y))
        out = [guide.edit(EditRequest(images=[Image.fromarray(sc.source)],
                                      instructions=[f"draw a large yellow diamond at the {p}"], seed=0)).images[0]
               for p in POS]
        for j, o in enumerate(out):
            img.paste(o.resize((S, S), Image.NEAREST), (L + (j + 1) * S, y))
img.save("docs/img/ip2p_position_probe.png")
