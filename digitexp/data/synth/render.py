"""Rendering one synthetic house-number image with exact per-digit boxes.

Every digit is drawn into its own mask layer; the image and all the layers are warped with the
same homography in one call, and a digit's box is the bounding box of its warped mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from digitexp.data.categories import DIGITS
from digitexp.data.synth.fonts import (
    FontInfo,
    Glyph,
    available_fonts,
    font_weights,
    glyph_of,
)
from digitexp.data.synth.options import SynthOptions

Box = tuple[float, float, float, float]

_CLUTTER_CHARS = "ABCDEFHKLMNPRSTUXZabdehknrst-#/&" + DIGITS
_DIGIT_COUNT_WEIGHTS = (0.20, 0.36, 0.28, 0.11, 0.05)  # 1..5 digits; 0.02 for each beyond
_BOX_THRESHOLDS = (0.35, 0.25, 0.15, 0.08)  # mask levels tried for a digit's box
_BOX_MASS = 0.9  # share of a digit's mask its box must hold
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class RenderedSample:
    """One rendered image with its per-digit masks (after the geometric warp)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: list[Box]  # [x, y, w, h] in pixels, left to right
    digits: list[int]
    masks: list[np.ndarray]  # (H, W) float32 in [0, 1], one per digit, same order


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


def _resized(glyph: Glyph, scale: float, squeeze: float) -> np.ndarray:
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
    font = fonts[int(rng.choice(len(fonts), p=font_weights(fonts)))]
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
        glyph = glyph_of(style.font.path, str(digit))
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
        glyph = glyph_of(style.font.path, c)
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
    rng: np.random.Generator, options: SynthOptions | None = None, *, draw_digits: bool = True
) -> RenderedSample:
    """One image with its digit boxes, digits and warped digit masks (default options when
    ``options`` is None).

    ``draw_digits=False`` leaves the digits' ink (and halo) out of the image but consumes the
    random stream identically, so the difference of the two images is exactly the digits' ink.
    """
    options = options if options is not None else SynthOptions()
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
    rng: np.random.Generator, options: SynthOptions | None = None
) -> tuple[Image.Image, list[Box], list[int]]:
    """One RGB image, its digit boxes [x, y, w, h] in pixels, and the digits (0-9) left to right."""
    sample = render_layers(rng, options)
    return Image.fromarray(sample.image, mode="RGB"), sample.boxes, sample.digits
