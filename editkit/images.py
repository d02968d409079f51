"""Image and mask I/O for the API and CLI. Imports neither torch nor numpy at module level.

Conversions (every source ends as an 8-bit ``RGB`` PIL image):

* grayscale ``L`` / ``1`` -> replicated to RGB;
* 16-bit ``I;16*`` -> scaled by 255/65535 (rounded); 32-bit ``I`` is read as 16-bit when any value
  exceeds 255, else as 8-bit; float ``F`` is read as [0, 1] when its maximum is <= 1, else clipped to 255;
* images with transparency (``RGBA``, ``LA``, ``PA``, palette with a ``transparency`` entry) are
  composited **on white**: fully transparent pixels become white (masks: on black, see :func:`load_mask`);
* the EXIF orientation tag is applied, and only the first frame of an animation is read.

Arrays: ``HxW``, ``HxWx1``, ``HxWx3`` or ``HxWx4`` with dtype uint8, uint16 (scaled), bool, or float
in [0, 1]. Tensors: ``CHW`` / ``HWC`` (or a batch of one), same value rules. Images above
``max_pixels`` (default ``EDITKIT_MAX_PIXELS`` or 4096*4096) are refused before decoding.
Every problem is an :class:`~editkit.errors.InvalidInputError` with one line naming the source.
"""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

DEFAULT_MAX_PIXELS = 4096 * 4096
MAX_PIXELS_ENV = "EDITKIT_MAX_PIXELS"
_BOX = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*$")


def max_pixels_default() -> int:
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInputError(f"{MAX_PIXELS_ENV}={raw!r} is not an integer") from None
    if value <= 0:
        raise InvalidInputError(f"{MAX_PIXELS_ENV}={raw!r} must be positive")
    return value


def _is_tensor(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def _is_array(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "numpy" and hasattr(obj, "dtype") and hasattr(obj, "shape")


def _check_pixels(width: int, height: int, label: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{label}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{label}: image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels} "
            f"(set {MAX_PIXELS_ENV} to allow more)"
        )


# --------------------------------------------------------------------------------------------- PIL
def _flatten(img: "Image.Image", background: tuple[int, int, int]) -> "Image.Image":
    """Any PIL mode -> 8-bit RGB; transparency composited on ``background``."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if (mode == "PA" or "transparency" in img.info) else "RGB")
        mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
            arr = arr * (255.0 / 65535.0)
        elif mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.nan_to_num(arr, nan=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "RGBa", "La") or (mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    return img


def _from_pil(img: "Image.Image", label: str, max_pixels: int, background: tuple[int, int, int]) -> "Image.Image":
    from PIL import Image

    _check_pixels(img.width, img.height, label, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            out = _flatten(img, background)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(_bomb(label, exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"{label}: truncated or corrupt image ({_short(exc)})") from None
    return out if out is not img else img.copy()


def _bomb(label: str, exc: BaseException) -> str:
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(m.group(1))} pixels" if m else "too many pixels"
    return f"{label}: refused as a possible decompression bomb ({size}, above Pillow's safety limit)"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _open_path(path: Path, max_pixels: int, background: tuple[int, int, int]) -> "Image.Image":
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = f"'{path}'"
    if not path.exists():
        raise InvalidInputError(f"{label}: no such file")
    if path.is_dir():
        raise InvalidInputError(f"{label}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(img.width, img.height, label, max_pixels)
                img.load()  # decode now: truncated files fail here, not later inside a guide
                img = ImageOps.exif_transpose(img) or img
                return _from_pil(img, label, max_pixels, background)
    except InvalidInputError:
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(f"{label}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(_bomb(label, exc)) from None
    except PermissionError:
        raise InvalidInputError(f"{label}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{label}: truncated or corrupt image ({_short(exc)})") from None


# ------------------------------------------------------------------------------------- arrays
def _from_array(arr: Any, label: str, max_pixels: int, background: tuple[int, int, int]) -> "Image.Image":
    import numpy as np
    from PIL import Image

    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise InvalidInputError(
            f"{label}: expected an HxW, HxWx3 or HxWx4 array, got shape {tuple(arr.shape)}"
            + (" (channels first? transpose to HxWxC)" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else "")
        )
    _check_pixels(arr.shape[1], arr.shape[0], label, max_pixels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = np.rint(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{label}: array contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise InvalidInputError(f"{label}: float values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InvalidInputError(f"{label}: {arr.dtype} values must be in [0, 255], got [{lo}, {hi}]")
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InvalidInputError(f"{label}: unsupported array dtype {arr.dtype}")
    return _flatten(Image.fromarray(np.ascontiguousarray(arr)), background)  # uint8: L, RGB or RGBA


def _tensor_to_array(t: Any, label: str) -> Any:
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.float()
    arr = t.numpy()
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # CHW -> HWC
    elif arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # ambiguous (e.g. 3x4x3): torch convention, channels first
    return arr


# ---------------------------------------------------------------------------------- public API
def load_image(src: Any, *, max_pixels: int | None = None, name: str | None = None,
               background: tuple[int, int, int] = (255, 255, 255)) -> "Image.Image":
    """Read ``src`` (path, PIL image, numpy array or torch tensor) as an 8-bit RGB PIL image."""
    from PIL import Image

    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    if isinstance(src, (str, os.PathLike)):
        return _open_path(Path(src), limit, background)
    label = name or f"<{type(src).__name__}>"
    if isinstance(src, Image.Image):
        return _from_pil(src, label, limit, background)
    if _is_tensor(src):
        return _from_array(_tensor_to_array(src, label), label, limit, background)
    if _is_array(src):
        return _from_array(src, label, limit, background)
    raise InvalidInputError(f"{label}: expected a file path, PIL image, numpy array or torch tensor")


def parse_box(text: str, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``"x0,y0,x1,y1"`` (pixels, x1/y1 exclusive) -> a box inside ``size``; None if not box syntax."""
    m = _BOX.match(text)
    if not m:
        return None
    x0, y0, x1, y1 = (int(v) for v in m.groups())
    w, h = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InvalidInputError(f"mask box '{text.strip()}' must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    return x0, y0, x1, y1


def load_mask(src: Any, size: tuple[int, int], *, max_pixels: int | None = None,
              name: str | None = None) -> "Image.Image":
    """A single-channel ``L`` mask (255 = editable, 0 = keep) of exactly ``size`` (width, height).

    ``src`` is a box string ``"x0,y0,x1,y1"``, a path, PIL image, array or tensor. Image masks are read
    as luminance with transparent pixels counted as black, then thresholded at 128. A mask of
    another size is an error (it is never resized silently).
    """
    from PIL import Image

    if isinstance(src, str) and not Path(src).exists():
        box = parse_box(src, size)
        if box is not None:
            mask = Image.new("L", size, 0)
            mask.paste(255, box)
            return mask
    rgb = load_image(src, max_pixels=max_pixels, name=name or "mask", background=(0, 0, 0))
    label = f"'{src}'" if isinstance(src, (str, os.PathLike)) else (name or "mask")
    if rgb.size != tuple(size):
        raise InvalidInputError(
            f"mask {label} is {rgb.width}x{rgb.height} but the image is {size[0]}x{size[1]}"
        )
    return rgb.convert("L").point(lambda v: 255 if v >= 128 else 0)


# ------------------------------------------------------------------------------------- writing
def output_format(path: str | os.PathLike) -> str:
    from PIL import Image

    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise InvalidInputError(f"output '{path}': unknown image format '{suffix or '(none)'}' (use .png, .jpg or .webp)")
    return fmt


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False,
                      protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Check before any work that ``path`` can be written: folder exists, not an input, no clobbering."""
    out = Path(path)
    output_format(out)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(f"output folder '{folder}' does not exist")
    resolved = out.resolve()
    for other in protect:
        if other is not None and Path(other).resolve() == resolved:
            raise InvalidInputError(f"output '{out}' is also an input; choose another output path")
    if out.is_dir():
        raise InvalidInputError(f"output '{out}' is a folder")
    if out.exists() and not overwrite:
        raise InvalidInputError(f"output '{out}' already exists (use --overwrite to replace it)")
    return out


def save_image_atomic(img: "Image.Image", path: str | os.PathLike, *, overwrite: bool = False,
                      protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write ``img`` to a temporary file beside ``path``, then move it into place.

    A crash never leaves a half-written ``path``; without ``overwrite`` an existing file is never
    replaced (not even one that appears while writing), and paths in ``protect`` (the inputs) never are.
    """
    out = check_output_path(path, overwrite=overwrite, protect=protect)
    fmt = output_format(out)
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, format=fmt)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # atomic and never clobbers
            except FileExistsError:
                raise InvalidInputError(f"output '{out}' already exists (use --overwrite to replace it)") from None
            except OSError:  # file systems without hard links
                if out.exists():
                    raise InvalidInputError(f"output '{out}' already exists (use --overwrite to replace it)") from None
                os.replace(tmp, out)
    except OSError as exc:
        raise InvalidInputError(f"output '{out}': cannot write ({_short(exc)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
