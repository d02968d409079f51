"""Every training recipe runs end to end for a few steps and writes loadable safetensors weights."""
from __future__ import annotations

import json

import numpy as np

from editkit.backend import BackendCache
from editkit.testing import contract_image
from editkit.training.ip2p import IP2PRecipe, train_ip2p
from editkit.training.vae import VAERecipe, train_vae
from editkit.types import EditRequest
from editkit_ip2p import InstructPix2PixGuide


def test_vae_then_ip2p_recipes_produce_a_working_guide(tmp_path):
    out = tmp_path / "w"
    res = train_vae(VAERecipe(out=out, steps=3, batch_size=4, pool=8), progress=False)
    assert np.isfinite(res["val_roundtrip_psnr_db"]) and res["scaling_factor"] > 0
    assert (out / "vae" / "diffusion_pytorch_model.safetensors").is_file()

    res = train_ip2p(IP2PRecipe(out=out, steps=3, batch_size=4, pool=8), progress=False)
    assert np.isfinite(res["final_loss"])
    for sub in ("unet", "text_encoder"):
        assert any((out / sub).glob("*.safetensors"))
    record = json.loads((out / "recipe_ip2p.json").read_text())
    assert record["config"]["steps"] == 3 and record["seconds"] > 0 and record["hardware"]
    log = [json.loads(line) for line in (out / "logs" / "ip2p" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["done"] is True

    # a second run continues from the first one's weights
    more = tmp_path / "more"
    (more / "vae").parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(out / "vae", more / "vae")
    train_ip2p(IP2PRecipe(out=more, steps=1, batch_size=4, pool=8, init=out, lr=1e-12), progress=False)
    from safetensors.torch import load_file

    a = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(more / "unet" / "diffusion_pytorch_model.safetensors")
    assert all((a[k] - b[k]).abs().max() < 1e-5 for k in a)  # started from the same weights

    guide = InstructPix2PixGuide(model=str(out), steps=2, progress=False)
    guide.load(BackendCache())
    result = guide.edit(EditRequest(images=[contract_image((64, 64))], instructions=["make the red circle blue"]))
    assert result.images[0].size == (64, 64)
