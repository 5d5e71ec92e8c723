"""Image files: the rules digitexp reads them by, in one place.

- **Header** (:func:`read_header`, every image whenever a split loads): the size, and a
  refusal of images larger than :data:`MAX_IMAGE_PIXELS` (Pillow's decompression-bomb guard
  included) and of modes that have no faithful 8-bit RGB form.
- **Decode** (:func:`decode_rgb`): 8-bit RGB, (H, W, 3) uint8. Modes Pillow converts
  exactly (1, L, P, PA, LA, La, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, HSV) go through
  ``convert("RGB")`` as the report's author's code did (alpha is dropped, not composited);
  16-bit grayscale (``I;16*``, e.g. a 16-bit PNG) is scaled to 8 bits (round(v / 257))
  instead of being clipped to white; 32-bit integer or float images (``I``, ``F``, whose
  range is not defined) and LAB (which Pillow does not convert colorimetrically) are refused.
- **Verify** (:func:`decode_problem`): a full decode, for truncated or corrupt pixel data that
  a header check cannot see.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from digitexp.errors import DataError, first_line

MAX_IMAGE_PIXELS = int(os.environ.get("DIGITEXP_MAX_IMAGE_PIXELS", 64 * 2**20))
"""The largest image read (width x height; 64 Mpx = 8192 x 8192 by default, the environment
variable ``DIGITEXP_MAX_IMAGE_PIXELS`` changes it): a house-number photo is far smaller, and
a bigger one would take gigabytes once decoded and resized."""

CONVERTED_MODES = frozenset(
    {"1", "L", "P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"}
)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
REFUSED_MODES = {
    "I": "32-bit integer pixels",
    "F": "32-bit float pixels",
    "LAB": "LAB colour, which Pillow does not convert to RGB faithfully",
}
IMAGE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)
"""What Pillow raises for a file it cannot read (SyntaxError: some of its plugins' parsers)."""


def mode_problem(mode: str) -> str | None:
    """Why images of this mode are refused, or None when they convert to 8-bit RGB."""
    if mode in CONVERTED_MODES or mode in SIXTEEN_BIT_MODES:
        return None
    what = REFUSED_MODES.get(mode, "a mode digitexp does not convert")
    return f"unsupported image mode {mode!r} ({what}): save it as 8-bit RGB or grayscale"


def size_problem(width: int, height: int) -> str | None:
    if width * height > MAX_IMAGE_PIXELS:
        return (
            f"oversized image ({width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {MAX_IMAGE_PIXELS:,}; see DIGITEXP_MAX_IMAGE_PIXELS)"
        )
    return None


# the size is checked against MAX_IMAGE_PIXELS instead; a palette image with transparency
# converts to RGB as the author's code converted it (the transparency is dropped)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", message="Palette images with Transparency", module="PIL")


def _problem(exc: BaseException, what: str) -> str:
    """One line for what Pillow raised: ``what`` (unreadable / cannot decode) and its reason."""
    if isinstance(exc, Image.DecompressionBombError):
        return (
            f"oversized image ({first_line(exc)[:160]}; the limit is {MAX_IMAGE_PIXELS:,} pixels)"
        )
    return f"{what} ({first_line(exc)[:200]})"


def read_header(path: Path) -> tuple[int, int] | str:
    """(width, height) from the file header, or a problem (one line, without the path)."""
    try:
        with Image.open(path) as img:
            problem = size_problem(*img.size) or mode_problem(img.mode)
            return problem if problem else img.size
    except FileNotFoundError:
        return "image file not found"
    except IsADirectoryError:
        return "a folder, not an image file"
    except IMAGE_ERRORS as exc:
        return _problem(exc, "unreadable image")


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(img).astype(np.uint32)
        gray = ((wide + 128) // 257).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    return np.array(img.convert("RGB"), dtype=np.uint8)


def decode_rgb(path: Path) -> np.ndarray:
    """Decode an image file to 8-bit RGB (H, W, 3); DataError names a file that cannot be."""
    try:
        with Image.open(path) as img:
            problem = size_problem(*img.size) or mode_problem(img.mode)
            if problem:
                raise DataError(f"{path}: {problem}")
            return _to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not an image file") from None
    except IMAGE_ERRORS as exc:
        raise DataError(f"{path}: {_problem(exc, 'cannot decode image')}") from None


def decode_problem(path: Path) -> str | None:
    """None when the whole image decodes (every pixel, in a mode digitexp converts), else the
    problem (one line, without the path)."""
    try:
        with Image.open(path) as img:
            problem = size_problem(*img.size) or mode_problem(img.mode)
            if problem:
                return problem
            img.load()
    except FileNotFoundError:
        return "image file not found"
    except IsADirectoryError:
        return "a folder, not an image file"
    except IMAGE_ERRORS as exc:
        return _problem(exc, "cannot decode image")
    return None
