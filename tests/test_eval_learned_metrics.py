"""CLIP / DINO / LPIPS plumbing with tiny random local models (no weights are downloaded)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from editkit.errors import InvalidInputError
from editkit.eval.metrics import MetricBatch, MetricsConfig
from editkit.eval.metrics.clip import ClipEmbedder, direction_similarity
from editkit.eval.metrics.learned import cosine, preprocess
from editkit.eval.metrics.lpips import LpipsModel, backbone_key_map
from editkit.eval.samples import EvalDataset, EvalSample
from editkit.eval.suite import MetricSuite

torch = pytest.importorskip("torch")

CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DINO_KWARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> tuple[Path, Path]:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(**CLIP_CFG)
    folder = tmp_path_factory.mktemp("clip")
    (folder / "tiny-clip.json").write_text(json.dumps(CLIP_CFG))
    torch.save(model.state_dict(), folder / "tiny-clip.pt")
    return folder / "tiny-clip.json", folder / "tiny-clip.pt"


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory) -> Path:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **DINO_KWARGS)
    path = tmp_path_factory.mktemp("dino") / "tiny-dino.pt"
    torch.save(model.state_dict(), path)
    return path


def images(n: int, seed: int = 0, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size + 6, 3), dtype=np.uint8) for _ in range(n)]


def sample(i: int, src: np.ndarray, tgt: np.ndarray | None = None) -> EvalSample:
    return EvalSample(id=f"s{i}", instruction="make it red", source=src, target=tgt,
                      source_caption="a blue square", target_caption="a red square")


# ------------------------------------------------------------------------------------ formulas
def test_direction_formula_on_hand_made_embeddings():
    src_img, out_img = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    src_txt, tgt_txt = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    # image moved along (-1, 1, 0)/sqrt2, text along (-1, 0, 1)/sqrt2: cos = 1/2
    assert direction_similarity(src_img, out_img, src_txt, tgt_txt) == pytest.approx(0.5)
    assert direction_similarity(src_img, out_img, src_txt, np.array([0.0, 1.0, 0.0])) == pytest.approx(1.0)
    assert direction_similarity(src_img, src_img, src_txt, tgt_txt) == 0.0  # no change: 0, as torch's eps
    # embeddings are normalised before the differences (as InstructPix2Pix does)
    assert direction_similarity(5 * src_img, 2 * out_img, 3 * src_txt, tgt_txt) == pytest.approx(0.5)
    assert cosine(np.array([1.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(1 / np.sqrt(2))


def test_preprocess_crop_and_squash():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 5:35] = 255  # the centre is white, the sides black
    crop = preprocess([img], 10, (0, 0, 0), (1, 1, 1), crop=True)
    assert tuple(crop.shape) == (1, 3, 10, 10) and float(crop.min()) > 0.99  # centre crop: all white
    squash = preprocess([img], 10, (0, 0, 0), (1, 1, 1), crop=False)
    assert float(squash.min()) < 0.01  # squashed: the black sides remain


class HandMadeClip:
    """An injected embedder: images embed by their mean colour, texts by a fixed table."""

    TEXTS = {"a blue square": [0.0, 0.0, 1.0], "a red square": [1.0, 0.0, 0.0]}

    def encode_images(self, imgs):
        return np.stack([im.reshape(-1, 3).mean(0) / 255.0 for im in imgs])

    def encode_texts(self, texts):
        return np.array([self.TEXTS[t] for t in texts])

    def describe(self):
        return {"backbone_model": "hand-made"}


def test_clip_metrics_through_the_suite_with_an_injected_embedder():
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 255
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    ds = EvalDataset([sample(0, blue, red)], "jsonl")
    suite = MetricSuite(MetricsConfig(select=["clip_i", "clip_t", "clip_direction", "clip_image"]), ds,
                        backbones={"clip": HandMadeClip()})
    row = suite.compute(MetricBatch(ds.samples, [red], [blue], [red], [None]))[0]
    assert row["clip_i"] == pytest.approx(1.0) and row["clip_t"] == pytest.approx(1.0)
    assert row["clip_image"] == pytest.approx(0.0)  # red vs blue: orthogonal embeddings
    assert row["clip_direction"] == pytest.approx(1.0)  # moved exactly as the captions did
    assert suite.info()["clip_i"]["backbone_model"] == "hand-made"


# ------------------------------------------------------------------------------------ open_clip
def test_tiny_open_clip_from_a_local_checkpoint(tiny_clip):
    cfg_path, ckpt = tiny_clip
    settings = MetricsConfig(clip={"model": str(cfg_path), "checkpoint": str(ckpt)})
    embedder = ClipEmbedder(settings.clip)
    imgs = images(3)
    e = embedder.encode_images(imgs)
    assert e.shape == (3, 32) and np.linalg.norm(e, axis=1) == pytest.approx(np.ones(3))
    t = embedder.encode_texts(["a red square", "a blue square"])
    assert t.shape == (2, 32)

    samples = [sample(i, imgs[i], imgs[i]) for i in range(3)]
    ds = EvalDataset(samples, "jsonl")
    suite = MetricSuite(settings, ds)
    assert {"clip_i", "clip_t", "clip_direction", "clip_image"} <= set(suite.names)
    outputs = [imgs[0], imgs[1], imgs[0]]  # the third output is another image
    rows = suite.compute(MetricBatch(samples, outputs, imgs, imgs, [None] * 3))
    assert rows[0]["clip_i"] == pytest.approx(1.0, abs=1e-6)  # identical images
    assert rows[1]["clip_image"] == pytest.approx(1.0, abs=1e-6)
    assert rows[0]["clip_direction"] == pytest.approx(0.0, abs=1e-6)  # unchanged image: no direction
    assert rows[2]["clip_i"] == pytest.approx(float(e[0] @ e[2]), abs=1e-5)
    assert rows[2]["clip_t"] == pytest.approx(float(e[0] @ t[0]), abs=1e-5)
    expected = direction_similarity(e[2], e[0], t[1], t[0])
    assert rows[2]["clip_direction"] == pytest.approx(expected, abs=1e-5)
    info = suite.info()["clip_i"]
    assert info["checkpoint"] == str(ckpt) and info["higher_is_better"] is True and "preprocess" in info


def test_clip_checkpoint_problems_are_clear(tiny_clip, tmp_path):
    cfg_path, ckpt = tiny_clip
    ds = EvalDataset([sample(0, images(1)[0], images(1)[0])], "jsonl")
    with pytest.raises(InvalidInputError, match="metric 'clip_i': CLIP backbone: needs local open_clip weights"):
        MetricSuite(MetricsConfig(select=["clip_i"]), ds)
    with pytest.raises(InvalidInputError, match="no such file"):
        MetricSuite(MetricsConfig(clip={"model": str(cfg_path), "checkpoint": str(tmp_path / "none.pt")}), ds)
    other = dict(CLIP_CFG, embed_dim=16)
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(InvalidInputError, match="does not fit the model"):
        MetricSuite(MetricsConfig(clip={"model": str(tmp_path / "other.json"), "checkpoint": str(ckpt)}), ds)
    with pytest.raises(InvalidInputError, match="unknown open_clip model"):
        MetricSuite(MetricsConfig(clip={"model": "NoSuchNet-7", "checkpoint": str(ckpt)}), ds)


# ------------------------------------------------------------------------------------ DINO
def test_tiny_timm_dino(tiny_dino):
    settings = MetricsConfig(dino={"model": "vit_small_patch16_224", "checkpoint": str(tiny_dino),
                                   "model_kwargs": DINO_KWARGS, "image_size": 32})
    imgs = images(2, seed=5)
    samples = [sample(i, imgs[i], imgs[i]) for i in range(2)]
    suite = MetricSuite(settings, EvalDataset(samples, "jsonl"))
    assert {"dino", "dino_source"} <= set(suite.names)
    rows = suite.compute(MetricBatch(samples, [imgs[0], imgs[0]], imgs, imgs, [None, None]))
    assert rows[0]["dino"] == pytest.approx(1.0, abs=1e-6) and rows[0]["dino_source"] == pytest.approx(1.0, abs=1e-6)
    assert rows[1]["dino"] < 1.0 - 1e-6
    assert suite.info()["dino"]["preprocess"].startswith("bicubic resize short side 37, centre crop 32")


# ------------------------------------------------------------------------------------ LPIPS
def test_lpips_is_skipped_with_a_note_without_weights():
    reason = LpipsModel.unavailable(MetricsConfig().lpips)
    assert reason and ("lpips" in reason) and ("checkpoint" in reason)
    ds = EvalDataset([sample(0, images(1)[0], images(1)[0])], "jsonl")
    suite = MetricSuite(MetricsConfig(), ds)
    assert "lpips" not in suite.names and suite.skipped["lpips"].startswith("LPIPS backbone: ")


def test_lpips_backbone_key_mapping():
    names = ["slice1.0.weight", "slice1.0.bias", "slice2.3.weight", "slice5.10.bias", "other.x"]
    assert backbone_key_map(names) == {"slice1.0.weight": "features.0.weight", "slice1.0.bias": "features.0.bias",
                                       "slice2.3.weight": "features.3.weight", "slice5.10.bias": "features.10.bias"}


def test_clip_metrics_can_use_the_committed_editworld_clip():
    from editkit.eval.metrics.base import ClipSettings
    from editkit.eval.metrics.clip import ClipEmbedder

    settings = ClipSettings(model="editworld")
    assert ClipEmbedder.unavailable(settings) is None and ClipEmbedder.unavailable(ClipSettings()) is not None
    emb = ClipEmbedder(settings)
    imgs = emb.encode_images([np.full((64, 64, 3), 200, np.uint8), np.zeros((48, 80, 3), np.uint8)])
    txt = emb.encode_texts(["a small red circle"])
    assert imgs.shape == (2, 64) and txt.shape == (1, 64) and emb.image_size == 64
    assert np.allclose(np.linalg.norm(imgs, axis=1), 1.0, atol=1e-5)
