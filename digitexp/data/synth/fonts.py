"""matplotlib's TTF fonts with usable digits, and their glyphs rasterised once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitexp.data.categories import DIGITS
from digitexp.errors import DataError

# Fonts among matplotlib's TTF files that have no usable digits (symbol, size-variant and
# fallback fonts, and cmmi10 whose digits are old-style figures). The glyph checks in
# ``_load_font`` would reject them too; the list keeps the choice explicit.
EXCLUDED_FONT_PREFIXES = (
    "DejaVuSansDisplay",
    "DejaVuSerifDisplay",
    "LastResort",
    "STIXNonUni",
    "STIXSiz",
    "cmex10",
    "cmmi10",
    "cmsy10",
)
REF_SIZE = 96  # font size (px) of the cached glyph rasters


@dataclass(frozen=True)
class Glyph:
    mask: np.ndarray  # float32 in [0, 1], cropped to the ink, at REF_SIZE
    top: int  # ink top below the text origin (ascender line), in reference pixels


@dataclass(frozen=True)
class FontInfo:
    """A usable matplotlib font and its digit metrics at the reference size."""

    name: str
    path: str
    weight: float  # sampling weight
    digit_height: float  # median ink height of the digits at REF_SIZE
    digit_width: float  # median ink width of the digits other than "1"
    digit_top: float  # median ink top of the digits


_GLYPHS: dict[tuple[str, str], Glyph | None] = {}


def _rasterise(path: str, char: str) -> Glyph | None:
    font = ImageFont.truetype(path, REF_SIZE)
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        return None
    pad = 4
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), char, font=font, fill=255)
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    rows = np.flatnonzero(ink.max(axis=1) > 0.1)
    cols = np.flatnonzero(ink.max(axis=0) > 0.1)
    if rows.size == 0 or cols.size == 0:
        return None
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Glyph(mask=np.ascontiguousarray(crop), top=int(rows[0]) - pad + top)


def glyph_of(path: str, char: str) -> Glyph | None:
    key = (path, char)
    if key not in _GLYPHS:
        _GLYPHS[key] = _rasterise(path, char)
    return _GLYPHS[key]


def _load_font(path: Path) -> FontInfo | None:
    """The font if it draws ten distinct lining digits, else None."""
    try:
        glyphs = [glyph_of(str(path), d) for d in DIGITS]
    except OSError:
        return None
    if any(g is None for g in glyphs):
        return None
    digits = [g for g in glyphs if g is not None]
    heights = np.array([g.mask.shape[0] for g in digits], dtype=np.float64)
    widths = np.array([g.mask.shape[1] for g in digits], dtype=np.float64)
    if heights.min() < 0.2 * REF_SIZE or heights.max() > 1.3 * heights.min():
        return None  # old-style figures or symbols
    typical_width = float(np.median(np.delete(widths, 1)))
    if np.median(heights) < 1.1 * typical_width:
        return None  # square glyphs: placeholder boxes, not digits
    if len({g.mask.tobytes() for g in digits}) < len(digits):
        return None
    slanted = any(key in path.stem for key in ("Oblique", "Italic", "Ita", "cmti"))
    return FontInfo(
        name=path.stem,
        path=str(path),
        weight=0.5 if slanted else 1.0,
        digit_height=float(np.median(heights)),
        digit_width=typical_width,
        digit_top=float(np.median([g.top for g in digits])),
    )


def font_dir() -> Path:
    """The folder of TTF files that matplotlib ships."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=1)
def available_fonts() -> tuple[FontInfo, ...]:
    """The usable fonts, sorted by file name (the order is part of the seed -> image mapping)."""
    fonts: list[FontInfo] = []
    for path in sorted(font_dir().glob("*.ttf")):
        if path.stem.startswith(EXCLUDED_FONT_PREFIXES):
            continue
        font = _load_font(path)
        if font is not None:
            fonts.append(font)
    if not fonts:
        raise DataError(f"{font_dir()}: no usable TTF font with digits found")
    return tuple(fonts)


def font_weights(fonts: tuple[FontInfo, ...]) -> np.ndarray:
    weights = np.array([f.weight for f in fonts], dtype=np.float64)
    return weights / weights.sum()
