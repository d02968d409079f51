"""Image and mask loading, conversions, limits and atomic saving."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editkit.errors import InvalidInputError
from editkit.images import check_output_path, load_image, load_mask, save_image_atomic


def write_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None) -> Path:
    """A minimal PNG writer, for files Pillow cannot write (16-bit RGB, absurd dimensions)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


# ------------------------------------------------------------------------------- conversions
def test_rgb_png_round_trip_exact(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (29, 37, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (37, 29)
    assert np.array_equal(pixels(img), arr)


def test_grayscale_is_replicated(tmp_path):
    Image.fromarray(np.full((5, 7), 77, np.uint8)).save(tmp_path / "g.png")
    img = load_image(str(tmp_path / "g.png"))
    assert img.mode == "RGB" and (pixels(img) == 77).all()


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    arr[0, 1] = (0, 0, 255, 255)  # opaque blue
    arr[0, 2] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    Image.fromarray(arr).save(tmp_path / "rgba.png")
    out = pixels(load_image(tmp_path / "rgba.png"))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (0, 0, 255)
    assert all(125 <= v <= 129 for v in out[0, 2])


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1, 1, 0])
    pal.save(tmp_path / "p.png")
    assert [tuple(p) for p in pixels(load_image(tmp_path / "p.png"))[0]] == [
        (10, 20, 30), (200, 100, 50), (200, 100, 50), (10, 20, 30)]
    pal.save(tmp_path / "pt.png", transparency=0)
    out = pixels(load_image(tmp_path / "pt.png"))[0]
    assert tuple(out[0]) == (255, 255, 255) and tuple(out[1]) == (200, 100, 50)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = pixels(load_image(tmp_path / "g16.png"))[0, :, 0]
    assert list(out) == [0, 128, 255, 4]  # 1000 / 257 = 3.9


def test_16_bit_rgb_png(tmp_path):
    values = [(0xFFFF, 0x8080, 0x0000), (0x0101, 0x0000, 0xFFFF)]
    row = b"\0" + b"".join(struct.pack(">HHH", *v) for v in values)
    write_png(tmp_path / "rgb16.png", 2, 1, 16, 2, row)
    out = pixels(load_image(tmp_path / "rgb16.png"))[0]
    assert [tuple(int(c) for c in p) for p in out] == [(255, 128, 0), (1, 0, 255)]


def test_32_bit_integer_mode_heuristic():
    wide = Image.fromarray(np.array([[0, 65535]], np.int32))
    assert wide.mode == "I" and list(pixels(load_image(wide))[0, :, 0]) == [0, 255]
    narrow = Image.fromarray(np.array([[0, 200]], np.int32))
    assert list(pixels(load_image(narrow))[0, :, 0]) == [0, 200]


@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.full((3, 4), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 4, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 4, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((3, 4, 4), (1, 2, 3, 255), np.uint8), (1, 2, 3)),
        (np.full((3, 4, 3), 65535, np.uint16), (255, 255, 255)),
        (np.full((3, 4, 3), 0.5, np.float32), (128, 128, 128)),
        (np.ones((3, 4), bool), (255, 255, 255)),
        (np.full((1, 3, 4, 3), 7, np.uint8), (7, 7, 7)),
    ],
)
def test_numpy_arrays(arr, expected):
    img = load_image(arr)
    assert img.mode == "RGB" and img.size == (4, 3)
    assert tuple(pixels(img)[0, 0]) == expected


@pytest.mark.parametrize(
    "arr, message",
    [
        (np.full((3, 4, 3), 2.0), r"float values must be in \[0, 1\]"),
        (np.array([[np.nan, 0.5]]), "NaN"),
        (np.zeros((3, 16, 16), np.uint8), "channels first"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.full((2, 2), 300, np.int64), r"\[0, 255\]"),
    ],
)
def test_bad_arrays(arr, message):
    with pytest.raises(InvalidInputError, match=message):
        load_image(arr)


def test_torch_tensors_chw_and_hwc():
    torch = pytest.importorskip("torch")
    chw = torch.zeros(3, 5, 7)
    chw[0] = 1.0
    img = load_image(chw)
    assert img.size == (7, 5) and tuple(pixels(img)[0, 0]) == (255, 0, 0)
    hwc = torch.full((5, 7, 3), 200, dtype=torch.uint8)
    assert tuple(pixels(load_image(hwc))[2, 2]) == (200, 200, 200)
    assert load_image(chw.unsqueeze(0).half()).size == (7, 5)


def test_unsupported_object():
    with pytest.raises(InvalidInputError, match="expected a file path"):
        load_image(42)


# ----------------------------------------------------------------------------- bad files
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InvalidInputError, match=r"missing\.png'?: no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidInputError, match="is a folder"):
        load_image(tmp_path)


def test_non_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am text\n")
    with pytest.raises(InvalidInputError, match=r"notes\.png.*not an image file"):
        load_image(tmp_path / "notes.png")


def test_truncated_png_is_refused(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as info:
        load_image(tmp_path / "cut.png")
    assert "cut.png" in str(info.value) and "truncated" in str(info.value)
    assert "\n" not in str(info.value)


def test_pixel_limit_argument_and_environment(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png").size == (100, 100)
    with pytest.raises(InvalidInputError, match="above the limit of 5000"):
        load_image(tmp_path / "big.png", max_pixels=5000)
    monkeypatch.setenv("EDITKIT_MAX_PIXELS", "9999")
    with pytest.raises(InvalidInputError, match="EDITKIT_MAX_PIXELS"):
        load_image(tmp_path / "big.png")
    with pytest.raises(InvalidInputError, match="above the limit"):
        load_image(np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setenv("EDITKIT_MAX_PIXELS", "lots")
    with pytest.raises(InvalidInputError, match="not an integer"):
        load_image(tmp_path / "big.png")


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    write_png(tmp_path / "big.png", 5000, 5000, 8, 2, None)  # 25 M pixels declared, 100 bytes on disk
    with pytest.raises(InvalidInputError, match=r"big\.png.*5000x5000 = 25000000 pixels, above the limit of 16777216"):
        load_image(tmp_path / "big.png")
    write_png(tmp_path / "bomb.png", 60000, 60000, 8, 2, None)  # 3.6 G pixels: Pillow's own guard fires first
    with pytest.raises(InvalidInputError, match=r"bomb\.png.*decompression bomb"):
        load_image(tmp_path / "bomb.png", max_pixels=10**10)


def test_pillow_bomb_check_becomes_invalid_input(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own guard below ours
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        load_image(tmp_path / "b.png")


# ----------------------------------------------------------------------------------- masks
def test_box_mask():
    mask = load_mask("2,1,5,3", (7, 4))
    assert mask.mode == "L" and mask.size == (7, 4)
    arr = pixels(mask)
    assert arr[1:3, 2:5].min() == 255 and arr.sum() == 255 * 6


@pytest.mark.parametrize("box", ["0,0,8,4", "3,1,3,2", "-1,0,2,2"])
def test_box_mask_out_of_bounds(box):
    with pytest.raises(InvalidInputError, match="mask box"):
        load_mask(box, (7, 4))


def test_image_mask_threshold_and_alpha(tmp_path):
    arr = np.zeros((4, 7, 4), np.uint8)
    arr[..., 3] = 255
    arr[0, 0] = (200, 200, 200, 255)  # light grey -> editable
    arr[0, 1] = (255, 255, 255, 0)  # transparent white -> black (not editable)
    arr[0, 2] = (100, 100, 100, 255)  # dark grey -> not editable
    Image.fromarray(arr).save(tmp_path / "m.png")
    out = pixels(load_mask(tmp_path / "m.png", (7, 4)))
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    assert (out[0, 0], out[0, 1], out[0, 2]) == (255, 0, 0)
    assert pixels(load_mask(np.ones((4, 7), bool), (7, 4))).min() == 255


def test_mask_of_another_size(tmp_path):
    Image.new("L", (10, 10), 255).save(tmp_path / "m.png")
    with pytest.raises(InvalidInputError, match=r"is 10x10 but the image is 37x29"):
        load_mask(tmp_path / "m.png", (37, 29))


# ---------------------------------------------------------------------------------- saving
def test_save_atomic_writes_and_leaves_no_temp(tmp_path):
    img = Image.new("RGB", (5, 3), (1, 2, 3))
    out = save_image_atomic(img, tmp_path / "o.png")
    assert out == tmp_path / "o.png"
    assert tuple(pixels(Image.open(out))[0, 0]) == (1, 2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_save_refuses_to_clobber_unless_allowed(tmp_path):
    (tmp_path / "o.png").write_bytes(b"precious")
    img = Image.new("RGB", (5, 3))
    with pytest.raises(InvalidInputError, match="already exists"):
        save_image_atomic(img, tmp_path / "o.png")
    assert (tmp_path / "o.png").read_bytes() == b"precious"
    save_image_atomic(img, tmp_path / "o.png", overwrite=True)
    assert Image.open(tmp_path / "o.png").size == (5, 3)


def test_save_refuses_inputs_missing_folders_and_unknown_formats(tmp_path):
    img = Image.new("RGB", (5, 3))
    (tmp_path / "in.png").write_bytes(b"input")
    with pytest.raises(InvalidInputError, match="is also an input"):
        save_image_atomic(img, tmp_path / "in.png", overwrite=True, protect=[tmp_path / "in.png"])
    assert (tmp_path / "in.png").read_bytes() == b"input"
    with pytest.raises(InvalidInputError, match="output folder .* does not exist"):
        save_image_atomic(img, tmp_path / "nope" / "o.png")
    with pytest.raises(InvalidInputError, match="unknown image format '.xyz'"):
        check_output_path(tmp_path / "o.xyz")
    assert not (tmp_path / "nope").exists()


def test_crash_while_writing_leaves_old_file_intact(tmp_path, monkeypatch):
    (tmp_path / "o.png").write_bytes(b"old")

    def boom(self, fp, format=None, **kw):
        fp.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(InvalidInputError, match="cannot write.*disk full"):
        save_image_atomic(Image.new("RGB", (2, 2)), tmp_path / "o.png", overwrite=True)
    assert (tmp_path / "o.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_jpeg_output_from_rgba(tmp_path):
    save_image_atomic(Image.new("RGBA", (4, 4), (10, 200, 30, 255)), tmp_path / "o.jpg")
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"
