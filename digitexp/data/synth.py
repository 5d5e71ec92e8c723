"""Synthetic SVHN-like house-number images written in the HW2 COCO layout.

This is the embedded default dataset: it needs no download and generates an HW2-sized set
(46k images) in minutes on a small CPU machine.

Each image shows a house number of 1-5 digits drawn with a font that matplotlib ships, on a
textured background (flat, gradient, noise, brick, wood/siding), sometimes on a plate with a
border and screws, with clutter (characters of the neighbouring text cut by the image edges,
small shapes), a mild rotation/shear/perspective warp, lighting, blur, low resolution, noise and
JPEG artefacts. Most images are clear; a minority (low contrast, heavy blur) are hard.

Boxes are exact: every digit is rendered into its own mask layer, the image and all the layers are
warped with the same homography in one call, and a digit's box is the bounding box of its warped
mask. Every image is seeded from ``(seed, split index, image id)``, so the output is identical for
any number of worker processes.

Layout written under ``out``::

    out/train.json  out/train/1.png  out/train/2.png ...
    out/valid.json  out/valid/1.png ...
    out/test.json   out/test/1.png ...

The JSON files are written last (atomically), so a folder with a JSON file holds a finished split.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from digitexp.errors import DataError

Box = tuple[float, float, float, float]

DIGITS = "0123456789"
CATEGORIES: tuple[dict[str, object], ...] = tuple({"id": d + 1, "name": str(d)} for d in range(10))
STANDARD_SPLITS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
HW2_COUNTS: dict[str, int] = {"train": 30062, "valid": 3340, "test": 13068}

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
_REF_SIZE = 96  # font size (px) of the cached glyph rasters
_CLUTTER_CHARS = "ABCDEFHKLMNPRSTUXZabdehknrst-#/&" + DIGITS
_DIGIT_COUNT_WEIGHTS = (0.20, 0.36, 0.28, 0.11, 0.05)  # 1..5 digits; 0.02 for each beyond
_BOX_THRESHOLDS = (0.35, 0.25, 0.15, 0.08)  # mask levels tried for a digit's box
_BOX_MASS = 0.9  # share of a digit's mask its box must hold
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Fast, still-compressed PNG (about half the raw size); RLE is ~20% faster than the default.
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
]
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SynthOptions:
    """How the images look. Probabilities are per image."""

    min_height: int = 32  # image height range in pixels (SVHN-like crops), log-uniform
    max_height: int = 160
    min_digits: int = 1
    max_digits: int = 5
    min_digit_fraction: float = 0.4  # digit height / image height
    max_digit_fraction: float = 0.8
    min_aspect: float = 1.5  # height / width of a typical digit (not "1")
    max_aspect: float = 2.4
    hard_fraction: float = 0.12  # low-contrast foreground/background
    plate_prob: float = 0.3  # a plate (with optional border and screws) behind the number
    halo_prob: float = 0.15  # a drop shadow or outline around the digits
    clutter_prob: float = 0.35  # neighbouring characters cut by the image edges
    shape_prob: float = 0.25  # small non-digit shapes
    max_rotation: float = 6.0  # degrees
    max_shear: float = 0.12
    perspective: float = 0.03  # corner jitter as a fraction of the image height
    lighting_prob: float = 0.3  # a smooth illumination ramp
    blur_prob: float = 0.5
    lowres_prob: float = 0.2  # downscale and upscale again
    noise_prob: float = 0.7
    jpeg_prob: float = 0.25

    def __post_init__(self) -> None:
        problems = _option_problems(self)
        if problems:
            raise ValueError("invalid SynthOptions: " + "; ".join(problems))


@dataclass(frozen=True)
class SplitSummary:
    name: str
    images: int
    boxes: int


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    splits: tuple[SplitSummary, ...]
    seconds: float

    @property
    def images(self) -> int:
        return sum(split.images for split in self.splits)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class RenderedSample:
    """One rendered image with its per-digit masks (after the geometric warp)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: list[Box]  # [x, y, w, h] in pixels, left to right
    digits: list[int]
    masks: list[np.ndarray]  # (H, W) float32 in [0, 1], one per digit, same order


def _option_problems(o: SynthOptions) -> list[str]:
    problems: list[str] = []
    if o.min_height < 16:
        problems.append(f"min_height must be >= 16, got {o.min_height}")
    if o.min_height > o.max_height:
        problems.append(f"min_height ({o.min_height}) > max_height ({o.max_height})")
    if o.max_height > 4096:
        problems.append(f"max_height must be <= 4096, got {o.max_height}")
    if o.min_digits < 1:
        problems.append(f"min_digits must be >= 1, got {o.min_digits}")
    if o.min_digits > o.max_digits:
        problems.append(f"min_digits ({o.min_digits}) > max_digits ({o.max_digits})")
    if o.max_digits > 10:
        problems.append(f"max_digits must be <= 10, got {o.max_digits}")
    if not 0.1 <= o.min_digit_fraction <= o.max_digit_fraction <= 0.9:
        problems.append("need 0.1 <= min_digit_fraction <= max_digit_fraction <= 0.9")
    if not 0.5 <= o.min_aspect <= o.max_aspect <= 5.0:
        problems.append("need 0.5 <= min_aspect <= max_aspect <= 5")
    for name in (
        "hard_fraction",
        "plate_prob",
        "halo_prob",
        "clutter_prob",
        "shape_prob",
        "lighting_prob",
        "blur_prob",
        "lowres_prob",
        "noise_prob",
        "jpeg_prob",
    ):
        value = getattr(o, name)
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be in [0, 1], got {value}")
    if not 0.0 <= o.max_rotation <= 20.0:
        problems.append(f"max_rotation must be in [0, 20] degrees, got {o.max_rotation}")
    if not 0.0 <= o.max_shear <= 0.5:
        problems.append(f"max_shear must be in [0, 0.5], got {o.max_shear}")
    if not 0.0 <= o.perspective <= 0.1:
        problems.append(f"perspective must be in [0, 0.1], got {o.perspective}")
    return problems


# --------------------------------------------------------------------------- fonts and glyphs


@dataclass(frozen=True)
class _Glyph:
    mask: np.ndarray  # float32 in [0, 1], cropped to the ink, at _REF_SIZE
    top: int  # ink top below the text origin (ascender line), in reference pixels


@dataclass(frozen=True)
class FontInfo:
    """A usable matplotlib font and its digit metrics at the reference size."""

    name: str
    path: str
    weight: float  # sampling weight
    digit_height: float  # median ink height of the digits at _REF_SIZE
    digit_width: float  # median ink width of the digits other than "1"
    digit_top: float  # median ink top of the digits


_GLYPHS: dict[tuple[str, str], _Glyph | None] = {}


def _rasterise(path: str, char: str) -> _Glyph | None:
    font = ImageFont.truetype(path, _REF_SIZE)
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
    return _Glyph(mask=np.ascontiguousarray(crop), top=int(rows[0]) - pad + top)


def _glyph(path: str, char: str) -> _Glyph | None:
    key = (path, char)
    if key not in _GLYPHS:
        _GLYPHS[key] = _rasterise(path, char)
    return _GLYPHS[key]


def _load_font(path: Path) -> FontInfo | None:
    """The font if it draws ten distinct lining digits, else None."""
    try:
        glyphs = [_glyph(str(path), d) for d in DIGITS]
    except OSError:
        return None
    if any(g is None for g in glyphs):
        return None
    digits = [g for g in glyphs if g is not None]
    heights = np.array([g.mask.shape[0] for g in digits], dtype=np.float64)
    widths = np.array([g.mask.shape[1] for g in digits], dtype=np.float64)
    if heights.min() < 0.2 * _REF_SIZE or heights.max() > 1.3 * heights.min():
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


def _font_weights(fonts: tuple[FontInfo, ...]) -> np.ndarray:
    weights = np.array([f.weight for f in fonts], dtype=np.float64)
    return weights / weights.sum()


# --------------------------------------------------------------------------- colours


def _colour_with_luma(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random RGB colour (mostly unsaturated) whose luma is ``luma``."""
    base = rng.random(3).astype(np.float32)
    saturation = rng.random() ** 1.5
    grey = float(base @ _LUMA)
    colour = grey + (base - grey) * saturation
    current = float(colour @ _LUMA)
    if luma >= current:
        colour = colour + (1.0 - colour) * ((luma - current) / max(1.0 - current, 1e-6))
    else:
        colour = colour * (luma / max(current, 1e-6))
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


def _contrasting_lumas(rng: np.random.Generator, hard: bool) -> tuple[float, float]:
    """(foreground, surface) lumas, far apart unless ``hard``."""
    surface = float(rng.uniform(0.05, 0.95))
    low, high = (0.08, 0.2) if hard else (0.4, 0.85)
    delta = float(rng.uniform(low, high))
    up_first = rng.random() < 0.5
    room_up, room_down = 1.0 - surface, surface
    if (up_first and room_up >= delta) or room_down < delta <= room_up:
        return surface + delta, surface
    if room_down >= delta:
        return surface - delta, surface
    return (1.0, surface) if room_up > room_down else (0.0, surface)


# --------------------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Value noise in about [0, 1] with roughly ``cells`` blobs along the longer side."""
    scale = max(h, w) / max(cells, 1.0)
    gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(
    rng: np.random.Generator, h: int, w: int, frame_h: int, colour: np.ndarray
) -> np.ndarray:
    kind = int(rng.choice(5, p=[0.22, 0.2, 0.26, 0.14, 0.18]))
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = colour
    if kind == 0:  # flat with a faint variation
        img += (_smooth_noise(rng, h, w, 3) - 0.5)[..., None] * 0.06
    elif kind == 1:  # gradient towards a nearby colour
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        other = np.clip(colour + rng.normal(0, 0.15, 3).astype(np.float32), 0, 1)
        img += t[..., None] * (other - colour)
    elif kind == 2:  # blotchy noise plus grain
        amp = rng.uniform(0.08, 0.2)
        img += (_smooth_noise(rng, h, w, rng.uniform(2, 10)) - 0.5)[..., None] * amp
        grain = rng.uniform(0.01, 0.05)
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * grain
    elif kind == 3:
        img = _brick(rng, img, frame_h, colour)
    else:
        img = _wood(rng, img, frame_h)
    return img


def _brick(
    rng: np.random.Generator, img: np.ndarray, frame_h: int, colour: np.ndarray
) -> np.ndarray:
    h, w = img.shape[:2]
    bh = max(4.0, rng.uniform(0.12, 0.3) * frame_h)
    bw = bh * rng.uniform(2.0, 3.2)
    mortar = max(1.0, bh * rng.uniform(0.08, 0.16))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    row = np.floor(yy / bh)
    shifted = xx + (row % 2) * (bw / 2)
    col = np.floor(shifted / bw)
    rows, cols = int(row.max()) + 1, int(col.max()) + 1
    jitter = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    img += jitter[row.astype(np.int32), col.astype(np.int32)][..., None]
    joints = ((yy % bh) < mortar) | ((shifted % bw) < mortar)
    mortar_colour = np.clip(colour + rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.25), 0, 1)
    img[joints] = mortar_colour
    return img


def _wood(rng: np.random.Generator, img: np.ndarray, frame_h: int) -> np.ndarray:
    h, w = img.shape[:2]
    vertical = rng.random() < 0.3
    length = w if vertical else h
    period = max(3.0, rng.uniform(0.06, 0.3) * frame_h)
    warp = _smooth_noise(rng, h, w, rng.uniform(1, 4)) * rng.uniform(0.0, 2.0)
    axis = np.arange(length, dtype=np.float32)
    pos = axis[None, :] if vertical else axis[:, None]
    grain = np.sin(2 * np.pi * (pos / period + warp))
    img += (grain * rng.uniform(0.03, 0.1))[..., None]
    plank = max(6.0, rng.uniform(0.25, 0.6) * frame_h)
    seams = (np.arange(length) % plank) < max(1.0, plank * 0.05)
    shade = np.float32(rng.uniform(-0.2, -0.08))
    if vertical:
        img[:, seams] += shade
    else:
        img[seams] += shade
    return img


# --------------------------------------------------------------------------- drawing helpers


def _blend(canvas: np.ndarray, alpha: np.ndarray, x: int, y: int, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` through ``alpha`` (placed at x, y) into canvas, clipped."""
    h, w = canvas.shape[:2]
    ah, aw = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + aw, w), min(y + ah, h)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    region += a * (colour - region)


def _resized(glyph: _Glyph, scale: float, squeeze: float) -> np.ndarray:
    gh, gw = glyph.mask.shape
    w = max(1, round(gw * scale * squeeze))
    h = max(1, round(gh * scale))
    interp = cv2.INTER_AREA if h < gh else cv2.INTER_LINEAR
    return cv2.resize(glyph.mask, (w, h), interpolation=interp)


# --------------------------------------------------------------------------- the number


@dataclass(frozen=True)
class _Style:
    """Everything random about the number's layout, drawn before any geometry is computed."""

    height: int
    digits: list[int]
    font: FontInfo
    digit_fraction: float
    squeeze: float
    gaps: np.ndarray  # per gap, as a fraction of the digit height
    jitter: np.ndarray  # per digit vertical offset, as a fraction of the digit height
    halo: int  # 0 none, 1 drop shadow, 2 outline
    halo_dir: tuple[float, float]
    margins: tuple[float, float]  # left/right, as fractions of the digit height
    vertical: float  # where the number sits vertically, 0 = top, 1 = bottom


@dataclass(frozen=True)
class _Layer:
    """One digit: its ink and its halo, both in a padded array placed at (x, y) in frame coords."""

    ink: np.ndarray
    halo: np.ndarray | None
    x: int
    y: int


def _digit_count(rng: np.random.Generator, options: SynthOptions) -> int:
    counts = np.arange(options.min_digits, options.max_digits + 1)
    weights = np.array(
        [_DIGIT_COUNT_WEIGHTS[n - 1] if n <= 5 else 0.02 for n in counts], dtype=np.float64
    )
    return int(rng.choice(counts, p=weights / weights.sum()))


def _sample_style(rng: np.random.Generator, options: SynthOptions) -> _Style:
    fonts = available_fonts()
    height = round(
        math.exp(rng.uniform(math.log(options.min_height), math.log(options.max_height + 0.999)))
    )
    height = min(max(height, options.min_height), options.max_height)
    n = _digit_count(rng, options)
    digits = [int(d) for d in rng.integers(0, 10, n)]
    if n > 1 and digits[0] == 0 and rng.random() < 0.95:
        digits[0] = int(rng.integers(1, 10))
    font = fonts[int(rng.choice(len(fonts), p=_font_weights(fonts)))]
    aspect = rng.uniform(options.min_aspect, options.max_aspect)
    squeeze = float(np.clip((font.digit_height / font.digit_width) / aspect, 0.45, 1.4))
    gap = rng.uniform(0.03, 0.35) if rng.random() < 0.85 else rng.uniform(0.35, 0.8)
    gaps = gap + rng.uniform(-0.03, 0.03, max(n - 1, 0))
    halo = int(rng.integers(1, 3)) if rng.random() < options.halo_prob else 0
    return _Style(
        height=height,
        digits=digits,
        font=font,
        digit_fraction=float(rng.uniform(options.min_digit_fraction, options.max_digit_fraction)),
        squeeze=squeeze,
        gaps=gaps,
        jitter=rng.uniform(-0.03, 0.03, n),
        halo=halo,
        halo_dir=(float(rng.choice([-1.0, 1.0])), float(rng.choice([-1.0, 1.0]))),
        margins=(float(rng.uniform(0.12, 1.0) ** 1.3), float(rng.uniform(0.12, 1.0) ** 1.3)),
        vertical=float(rng.uniform(0.1, 0.9)),
    )


def _make_layer(
    ink: np.ndarray, style: _Style, digit_h: float
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Pad the ink for its halo; returns (ink, halo, pad)."""
    if style.halo == 0:
        return ink, None, 0
    if style.halo == 1:  # drop shadow
        off = max(1, round(digit_h * 0.05))
        pad = off
        padded = np.pad(ink, pad)
        halo = np.zeros_like(padded)
        dx, dy = int(style.halo_dir[0] * off), int(style.halo_dir[1] * off)
        h, w = ink.shape
        halo[pad + dy : pad + dy + h, pad + dx : pad + dx + w] = ink
        return padded, halo, pad
    width = max(1, round(digit_h * 0.04))  # outline
    padded = np.pad(ink, width)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return padded, cv2.dilate(padded, kernel), width


def _layout(style: _Style, scale: float) -> tuple[list[_Layer], float, float, float]:
    """Digit layers in number coordinates; returns (layers, width, top, bottom)."""
    digit_h = style.font.digit_height * scale
    layers: list[_Layer] = []
    x = 0.0
    for i, digit in enumerate(style.digits):
        glyph = _glyph(style.font.path, str(digit))
        assert glyph is not None  # the font was checked to draw every digit
        ink, halo, pad = _make_layer(_resized(glyph, scale, style.squeeze), style, digit_h)
        y = (glyph.top - style.font.digit_top) * scale + style.jitter[i] * digit_h
        layers.append(_Layer(ink, halo, round(x) - pad, round(y) - pad))
        x += ink.shape[1] - 2 * pad
        if i < len(style.gaps):
            x += max(1.0, style.gaps[i] * digit_h)
    left = min(layer.x for layer in layers)
    right = max(layer.x + layer.ink.shape[1] for layer in layers)
    top = min(layer.y for layer in layers)
    bottom = max(layer.y + layer.ink.shape[0] for layer in layers)
    shifted = [_Layer(la.ink, la.halo, la.x - left, la.y) for la in layers]
    return shifted, float(right - left), float(top), float(bottom)


def _place_number(style: _Style) -> tuple[list[_Layer], int, float]:
    """Digit layers in frame coordinates, the frame width and the digit height."""
    frame_h = style.height
    scale = style.digit_fraction * frame_h / style.font.digit_height
    layers, width, top, bottom = _layout(style, scale)
    if bottom - top > 0.92 * frame_h:  # descenders, jitter or a halo made it too tall
        scale *= 0.92 * frame_h / (bottom - top)
        layers, width, top, bottom = _layout(style, scale)
    digit_h = style.font.digit_height * scale
    left = max(2.0, style.margins[0] * digit_h)
    right = max(2.0, style.margins[1] * digit_h)
    frame_w = max(8, math.ceil(width + left + right))
    room = frame_h - (bottom - top) - 2.0
    y_shift = 1.0 + room * style.vertical - top
    placed = [_Layer(la.ink, la.halo, la.x + round(left), la.y + round(y_shift)) for la in layers]
    return placed, frame_w, digit_h


# --------------------------------------------------------------------------- geometry


def _quad_params(
    rng: np.random.Generator, options: SynthOptions
) -> tuple[float, float, np.ndarray]:
    """Rotation (degrees), shear and per-corner jitter of the view; applied by _source_quad."""
    limit = options.max_rotation
    rotation = float(np.clip(rng.normal(0.0, limit / 2.5), -limit, limit))
    shear = float(rng.uniform(-options.max_shear, options.max_shear)) if rng.random() < 0.6 else 0.0
    jitter = rng.uniform(-1.0, 1.0, (4, 2)).astype(np.float32) * options.perspective
    return rotation, shear, jitter


def _source_quad(
    w: int, h: int, params: tuple[float, float, np.ndarray], strength: float
) -> np.ndarray:
    """The frame's corners (frame coordinates) rotated, sheared and jittered by ``strength``."""
    rotation, shear, jitter = params
    angle = math.radians(rotation * strength)
    cos, sin = math.cos(angle), math.sin(angle)
    linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear * strength], [0.0, 1.0]])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    centre = np.array([w / 2, h / 2])
    quad = (corners - centre) @ linear.T + centre + jitter * strength * h
    return quad.astype(np.float32)


def _homography(quad: np.ndarray, w: int, h: int, pad_x: int, pad_y: int) -> np.ndarray:
    src = quad + np.array([pad_x, pad_y], dtype=np.float32)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    return cv2.getPerspectiveTransform(src, dst)


def _inside(matrix: np.ndarray, boxes: list[tuple[int, int, int, int]], w: int, h: int) -> bool:
    pts = np.array(
        [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)] for x0, y0, x1, y1 in boxes], dtype=np.float32
    ).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(pts, matrix).reshape(-1, 2)
    return bool(
        (mapped[:, 0] >= 1).all()
        and (mapped[:, 0] <= w - 1).all()
        and (mapped[:, 1] >= 1).all()
        and (mapped[:, 1] <= h - 1).all()
    )


# --------------------------------------------------------------------------- scene parts


def _draw_plate(
    rng: np.random.Generator,
    canvas: np.ndarray,
    number: tuple[float, float, float, float],
    digit_h: float,
    colours: tuple[np.ndarray, np.ndarray],
) -> None:
    """A (rounded) plate behind the number, maybe with a border and two screws."""
    plate_colour, ink_colour = colours
    x0, y0, x1, y1 = number
    pad_x, pad_y = rng.uniform(0.12, 0.6) * digit_h, rng.uniform(0.08, 0.3) * digit_h
    rect = (x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y)
    radius = rng.uniform(0.0, 0.35) * min(rect[2] - rect[0], rect[3] - rect[1])
    border = rng.random() < 0.5
    inset = rng.uniform(0.03, 0.12) * digit_h
    thickness = max(1, round(rng.uniform(0.03, 0.08) * digit_h))
    screws = rng.random() < 0.35
    mask = Image.new("L", (canvas.shape[1], canvas.shape[0]), 0)
    draw = ImageDraw.Draw(mask)
    draw.rounded_rectangle(rect, radius=radius, fill=255)
    _blend(canvas, np.asarray(mask, dtype=np.float32) / 255.0, 0, 0, plate_colour)
    extra = Image.new("L", mask.size, 0)
    draw = ImageDraw.Draw(extra)
    if border:
        inner = (rect[0] + inset, rect[1] + inset, rect[2] - inset, rect[3] - inset)
        if inner[2] - inner[0] > 2 * thickness and inner[3] - inner[1] > 2 * thickness:
            draw.rounded_rectangle(
                inner, radius=max(radius - inset, 0), outline=255, width=thickness
            )
    if screws and pad_x > 0.3 * digit_h:
        r = max(1.0, 0.06 * digit_h)
        cy = (rect[1] + rect[3]) / 2
        for cx in (rect[0] + pad_x / 2, rect[2] - pad_x / 2):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    if border or screws:
        _blend(canvas, np.asarray(extra, dtype=np.float32) / 255.0, 0, 0, ink_colour)


def _draw_shapes(
    rng: np.random.Generator,
    canvas: np.ndarray,
    frame: tuple[int, int, int, int],
    number: tuple[float, float, float, float],
    digit_h: float,
) -> None:
    """1-3 small non-digit shapes in the frame, away from the number."""
    fx, fy, fw, fh = frame
    nx0, ny0, nx1, ny1 = number
    margin = 0.1 * digit_h
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 4))
        size = rng.uniform(0.08, 0.35) * digit_h
        cx, cy = fx + rng.uniform(0, fw), fy + rng.uniform(0, fh)
        colour = _colour_with_luma(rng, float(rng.uniform(0, 1)))
        thickness = max(1, round(rng.uniform(0.02, 0.08) * digit_h))
        angle = rng.uniform(0, np.pi)
        if (
            nx0 - margin - size < cx < nx1 + margin + size
            and ny0 - margin - size < cy < ny1 + margin + size
        ):
            continue  # would cover the number
        mask = np.zeros(canvas.shape[:2], dtype=np.uint8)
        centre = (round(cx), round(cy))
        if kind == 0:
            cv2.circle(mask, centre, max(1, round(size / 2)), 255, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(mask, centre, max(2, round(size / 2)), 255, thickness, cv2.LINE_AA)
        elif kind == 2:
            dx, dy = math.cos(angle) * size, math.sin(angle) * size
            p0, p1 = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
            cv2.line(mask, p0, p1, 255, thickness, cv2.LINE_AA)
        else:
            half = max(1, round(size / 2))
            cv2.rectangle(
                mask,
                (centre[0] - half, centre[1] - half),
                (centre[0] + half, centre[1] + half),
                255,
                -1,
            )
        _blend(canvas, mask.astype(np.float32) / 255.0, 0, 0, colour)


def _draw_neighbours(
    rng: np.random.Generator,
    canvas: np.ndarray,
    frame: tuple[int, int, int, int],
    number: tuple[float, float, float, float],
    style: _Style,
    scale: float,
    colour: np.ndarray,
) -> None:
    """Characters of neighbouring text, mostly outside the frame (cut by its edges)."""
    fx, fy, fw, fh = frame
    nx0, ny0, nx1, ny1 = number
    digit_h = style.font.digit_height * scale
    gap = 0.15 * digit_h
    side = int(rng.integers(0, 4))  # 0 left, 1 right, 2 both, 3 above/below
    chars = [str(c) for c in rng.choice(list(_CLUTTER_CHARS), 4)]
    visible = rng.uniform(0.05, 0.3, 4)  # visible part of each character's width/height
    above = rng.random() < 0.5
    baseline = ny0 + rng.uniform(-0.1, 0.1) * digit_h
    masks = []
    for c in chars:
        glyph = _glyph(style.font.path, c)
        masks.append(None if glyph is None else (_resized(glyph, scale, style.squeeze), glyph))
    if side in (0, 2) and masks[0] is not None:
        ink, glyph = masks[0]
        x = fx + visible[0] * ink.shape[1] - ink.shape[1]
        if x + ink.shape[1] < nx0 - gap:
            y = baseline + (glyph.top - style.font.digit_top) * scale
            _blend(canvas, ink, round(x), round(y), colour)
    if side in (1, 2) and masks[1] is not None:
        ink, glyph = masks[1]
        x = fx + fw - visible[1] * ink.shape[1]
        if x > nx1 + gap:
            y = baseline + (glyph.top - style.font.digit_top) * scale
            _blend(canvas, ink, round(x), round(y), colour)
    if side == 3:  # a line of text above or below, cut by the top/bottom edge
        x = fx + rng.uniform(-0.5, 0.5) * fw
        for item in masks:
            if item is None:
                continue
            ink, _ = item
            y = (
                fy + visible[3] * ink.shape[0] - ink.shape[0]
                if above
                else fy + fh - visible[3] * ink.shape[0]
            )
            if (above and y + ink.shape[0] < ny0 - gap) or (not above and y > ny1 + gap):
                _blend(canvas, ink, round(x), round(y), colour)
            x += ink.shape[1] + 0.2 * digit_h


# --------------------------------------------------------------------------- image effects


def _post_process(rng: np.random.Generator, img: np.ndarray, options: SynthOptions) -> np.ndarray:
    """Lighting, blur, low resolution and noise on a float image; returns uint8 (maybe JPEG'd)."""
    h, w = img.shape[:2]
    if rng.random() < options.lighting_prob:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        strength = np.float32(rng.uniform(0.15, 0.5))
        img = img * (1.0 - strength * t)[..., None]
    if rng.random() < options.blur_prob:
        if rng.random() < 0.85:
            sigma = rng.uniform(0.3, 1.0) * math.sqrt(max(1.0, h / 64))
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        else:
            img = _motion_blur(rng, img)
    if rng.random() < options.lowres_prob:
        factor = rng.uniform(0.4, 0.75)
        small = (max(4, round(w * factor)), max(4, round(h * factor)))
        img = cv2.resize(
            cv2.resize(img, small, interpolation=cv2.INTER_AREA),
            (w, h),
            interpolation=cv2.INTER_LINEAR,
        )
    if rng.random() < options.noise_prob:
        sigma = np.float32(rng.uniform(0.004, 0.035))
        channels = 1 if rng.random() < 0.3 else 3
        img = img + rng.standard_normal((h, w, channels), dtype=np.float32) * sigma
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < options.jpeg_prob:
        quality = int(rng.integers(30, 86))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def _motion_blur(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    length = int(rng.integers(3, max(4, img.shape[0] // 16) + 1))
    kernel = np.zeros((length, length), dtype=np.float32)
    angle = rng.uniform(0, 180)
    c = (length - 1) / 2
    kernel[round(c), :] = 1.0
    rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(img, -1, kernel)


# --------------------------------------------------------------------------- one sample


def _mask_box(mask: np.ndarray) -> Box:
    """Bounding box of the mask's visible ink.

    Pixels above _BOX_THRESHOLDS[0] normally hold nearly all of a digit's mask; for tiny digits
    whose strokes are thinner than a pixel the threshold is lowered until the box holds
    _BOX_MASS of the mask.
    """
    row_peak, col_peak = mask.max(axis=1), mask.max(axis=0)
    total = float(mask.sum())
    box = (0, 0, mask.shape[1], mask.shape[0])
    for threshold in (*_BOX_THRESHOLDS, 0.5 * float(mask.max())):
        rows, cols = np.flatnonzero(row_peak > threshold), np.flatnonzero(col_peak > threshold)
        if rows.size == 0 or cols.size == 0:
            continue
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        if float(mask[box[1] : box[3], box[0] : box[2]].sum()) >= _BOX_MASS * total:
            break
    x0, y0, x1, y1 = box
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def render_layers(
    rng: np.random.Generator, options: SynthOptions = SynthOptions(), *, draw_digits: bool = True
) -> RenderedSample:
    """One image with its digit boxes, digits and warped digit masks.

    ``draw_digits=False`` leaves the digits' ink (and halo) out of the image but consumes the
    random stream identically, so the difference of the two images is exactly the digits' ink.
    """
    style = _sample_style(rng, options)
    fg_luma, surface_luma = _contrasting_lumas(rng, rng.random() < options.hard_fraction)
    fg = _colour_with_luma(rng, fg_luma)
    surface = _colour_with_luma(rng, surface_luma)
    halo_colour = _colour_with_luma(
        rng, float(np.clip(surface_luma + (surface_luma - fg_luma) * 0.6, 0, 1))
    )
    plate = rng.random() < options.plate_prob
    back = _colour_with_luma(rng, float(rng.uniform(0.05, 0.95))) if plate else surface

    layers, frame_w, digit_h = _place_number(style)
    frame_h = style.height
    scale = digit_h / style.font.digit_height
    params = _quad_params(rng, options)
    quad = _source_quad(frame_w, frame_h, params, 1.0)
    pad_x = math.ceil(max(0.0, -float(quad[:, 0].min()), float(quad[:, 0].max()) - frame_w)) + 2
    pad_y = math.ceil(max(0.0, -float(quad[:, 1].min()), float(quad[:, 1].max()) - frame_h)) + 2
    canvas_h, canvas_w = frame_h + 2 * pad_y, frame_w + 2 * pad_x
    boxes_canvas = [
        (la.x + pad_x, la.y + pad_y, la.x + pad_x + la.ink.shape[1], la.y + pad_y + la.ink.shape[0])
        for la in layers
    ]
    matrix = _homography(quad, frame_w, frame_h, pad_x, pad_y)
    for strength in (0.5, 0.25, 0.0):
        if _inside(matrix, boxes_canvas, frame_w, frame_h):
            break
        matrix = _homography(
            _source_quad(frame_w, frame_h, params, strength), frame_w, frame_h, pad_x, pad_y
        )

    number = (
        float(min(b[0] for b in boxes_canvas)),
        float(min(b[1] for b in boxes_canvas)),
        float(max(b[2] for b in boxes_canvas)),
        float(max(b[3] for b in boxes_canvas)),
    )
    frame = (pad_x, pad_y, frame_w, frame_h)
    canvas = _background(rng, canvas_h, canvas_w, frame_h, back)
    if plate:
        _draw_plate(rng, canvas, number, digit_h, (surface, fg))
    if rng.random() < options.shape_prob:
        _draw_shapes(rng, canvas, frame, number, digit_h)
    if rng.random() < options.clutter_prob:
        _draw_neighbours(rng, canvas, frame, number, style, scale, fg)

    stack = np.zeros((canvas_h, canvas_w, 3 + len(layers)), dtype=np.float32)
    for i, la in enumerate(layers):
        x, y = la.x + pad_x, la.y + pad_y
        h, w = la.ink.shape
        union = la.ink if la.halo is None else np.maximum(la.ink, la.halo)
        stack[y : y + h, x : x + w, 3 + i] = union
        if draw_digits:
            if la.halo is not None:
                _blend(canvas, la.halo, x, y, halo_colour)
            _blend(canvas, la.ink, x, y, fg)
    stack[..., :3] = canvas
    warped = cv2.warpPerspective(
        stack, matrix, (frame_w, frame_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )
    masks = [np.ascontiguousarray(warped[..., 3 + i]) for i in range(len(layers))]
    image = _post_process(rng, warped[..., :3], options)
    boxes = [_mask_box(m) for m in masks]
    return RenderedSample(image=image, boxes=boxes, digits=list(style.digits), masks=masks)


def render_sample(
    rng: np.random.Generator, options: SynthOptions = SynthOptions()
) -> tuple[Image.Image, list[Box], list[int]]:
    """One RGB image, its digit boxes [x, y, w, h] in pixels, and the digits (0-9) left to right."""
    sample = render_layers(rng, options)
    return Image.fromarray(sample.image, mode="RGB"), sample.boxes, sample.digits


# --------------------------------------------------------------------------- dataset writer


def split_index(name: str) -> int:
    """Stable seed component of a split: train=0, valid=1, test=2, others from a CRC32."""
    if name in STANDARD_SPLITS:
        return STANDARD_SPLITS[name]
    return 3 + zlib.crc32(name.encode("utf-8"))


def image_rng(seed: int, split: str, image_id: int) -> np.random.Generator:
    """The generator that draws image ``image_id`` of ``split``."""
    return np.random.default_rng([seed, split_index(split), image_id])


@dataclass(frozen=True)
class _Record:
    split: str
    image_id: int
    width: int
    height: int
    boxes: list[Box]
    digits: list[int]


def _make_image(out: Path, seed: int, options: SynthOptions, task: tuple[str, int]) -> _Record:
    split, image_id = task
    sample = render_layers(image_rng(seed, split, image_id), options)
    path = out / split / f"{image_id}.png"
    bgr = np.ascontiguousarray(sample.image[..., ::-1])
    if not cv2.imwrite(str(path), bgr, _PNG_PARAMS):
        raise DataError(f"{path}: could not write image")
    h, w = sample.image.shape[:2]
    return _Record(split, image_id, w, h, sample.boxes, sample.digits)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already
    available_fonts()


def _validate_counts(counts: Mapping[str, int]) -> dict[str, int]:
    if not counts:
        raise ValueError("counts is empty: name at least one split, e.g. {'train': 100}")
    checked: dict[str, int] = {}
    for name, count in counts.items():
        if not isinstance(name, str) or not _SPLIT_NAME.match(name):
            raise ValueError(f"split name {name!r} must match {_SPLIT_NAME.pattern}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise ValueError(f"count for split {name!r} must be a positive integer, got {count!r}")
        checked[name] = int(count)
    return checked


def _show_progress(progress: bool) -> bool:
    return progress and not os.environ.get("CI") and sys.stderr.isatty()


def _records(
    out: Path, seed: int, options: SynthOptions, tasks: list[tuple[str, int]], workers: int
) -> Iterator[_Record]:
    """The records of ``tasks`` in order, rendered in ``workers`` processes (1: in this one)."""
    make = partial(_make_image, out, seed, options)
    if workers <= 1:
        yield from map(make, tasks)
        return
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    # "spawn": forked children can inherit locks held by the caller's threads (OpenCV's or
    # torch's thread pools) and hang. Fresh interpreters start in well under a second, and
    # ProcessPoolExecutor reports workers that die instead of replacing them forever.
    executor = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    )
    try:
        yield from executor.map(make, tasks, chunksize=chunk)
    except BrokenProcessPool as error:
        raise DataError(
            "synthetic data worker processes died; a script that calls generate() with "
            'workers > 1 must do so under `if __name__ == "__main__":` (or pass workers=1)'
        ) from error
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _coco(records: Iterable[_Record]) -> dict[str, object]:
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for rec in records:
        images.append(
            {
                "id": rec.image_id,
                "file_name": f"{rec.image_id}.png",
                "width": rec.width,
                "height": rec.height,
            }
        )
        for (x, y, w, h), digit in zip(rec.boxes, rec.digits, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": rec.image_id,
                    "bbox": [x, y, w, h],
                    "category_id": digit + 1,
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}


def _write_json_atomic(path: Path, payload: object) -> None:
    text = json.dumps(payload, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def generate(
    out: Path,
    counts: Mapping[str, int],
    seed: int = 0,
    options: SynthOptions = SynthOptions(),
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write the splits named in counts (e.g. {"train": 2000, "valid": 300, "test": 300}).

    Images go to ``out/<split>/<id>.png`` (ids from 1), annotations to ``out/<split>.json``; the
    JSON files are written last. The output depends only on ``seed``, ``counts`` and ``options``.
    """
    checked = _validate_counts(counts)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    out = Path(out)
    try:
        for name in checked:
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / f"{name}.json").unlink(missing_ok=True)  # a stale JSON must not look finished
    except OSError as error:
        raise DataError(f"{out}: cannot prepare the output folder: {error}") from error
    available_fonts()  # fail early if matplotlib has no usable font
    tasks = [(name, i) for name, count in checked.items() for i in range(1, count + 1)]
    n_workers = min(workers or os.cpu_count() or 1, len(tasks))

    start = time.perf_counter()
    per_split: dict[str, list[_Record]] = {name: [] for name in checked}
    bar = tqdm(total=len(tasks), unit="img", desc="synth", disable=not _show_progress(progress))
    stream = contextlib.closing(_records(out, int(seed), options, tasks, n_workers))
    with bar, stream as records:
        for record in records:
            per_split[record.split].append(record)
            bar.update(1)
    summaries = []
    for name, split_records in per_split.items():
        _write_json_atomic(out / f"{name}.json", _coco(split_records))
        boxes = sum(len(r.boxes) for r in split_records)
        summaries.append(SplitSummary(name, len(split_records), boxes))
    return SynthSummary(out=out, splits=tuple(summaries), seconds=time.perf_counter() - start)
