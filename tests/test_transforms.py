"""Preprocessing: the adaptive binarization matches OpenCV's definition; device preparation."""

from __future__ import annotations

import numpy as np
import torch

from digitexp.config import DataConfig
from digitexp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    binarize,
    color_augment,
    prepare_batch,
    static_transform,
)


def _reference_binary_inv(gray: np.ndarray, block: int, c: float) -> np.ndarray:
    """cv2.adaptiveThreshold(MEAN_C, THRESH_BINARY_INV) written out: the block mean with
    replicated borders, rounded to uint8, and 255 where src - mean <= -floor(C)."""
    pad = block // 2
    padded = np.pad(gray.astype(np.float64), pad, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (block, block))
    mean = np.rint(windows.mean(axis=(2, 3)))
    return np.where(gray.astype(np.float64) - mean > -np.floor(c), 0, 255).astype(np.uint8)


def _fixed_image() -> np.ndarray:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:41, 0:67]
    base = 120 + 60 * np.sin(xx / 6.0) + 30 * np.cos(yy / 5.0)
    gray = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    gray[10:30, 20:26] = 20  # a dark stroke, like a digit
    return np.repeat(gray[:, :, None], 3, axis=2)  # R = G = B, so the grey value is exact


def test_binarization_matches_opencvs_definition_on_a_fixed_image() -> None:
    rgb = _fixed_image()
    out = binarize(rgb, block_size=11, c=2.0)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    expected = _reference_binary_inv(rgb[:, :, 0], 11, 2.0)
    assert np.array_equal(out[:, :, 0], expected)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])
    # the dark stroke's inner pixels (darker than their neighbourhood) come out white
    assert out[12:28, 21:25, 0].mean() > 200


def test_constant_image_binarizes_to_black() -> None:
    rgb = np.full((20, 20, 3), 128, np.uint8)
    assert binarize(rgb).max() == 0


def test_static_transform_modes() -> None:
    rgb = _fixed_image()
    assert static_transform(rgb, DataConfig(preprocess="none")) is rgb
    assert static_transform(rgb, DataConfig(preprocess="color")) is rgb  # random, per load
    binary = static_transform(rgb, DataConfig(preprocess="binary", binary_block_size=15))
    assert np.array_equal(binary, binarize(rgb, 15, 2.0))


def test_color_augment_keeps_shape_and_dtype() -> None:
    torch.manual_seed(0)
    img = torch.from_numpy(_fixed_image()).permute(2, 0, 1).contiguous()
    out = color_augment(DataConfig())(img)
    assert out.shape == img.shape and out.dtype == torch.uint8


def test_prepare_batch_scales_and_normalizes() -> None:
    img = torch.full((3, 4, 5), 255, dtype=torch.uint8)
    (plain,) = prepare_batch([img], torch.device("cpu"), pre_normalize=False)
    assert plain.dtype == torch.float32 and torch.allclose(plain, torch.ones_like(plain))
    (norm,) = prepare_batch([img], torch.device("cpu"), pre_normalize=True)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(norm[:, 0, 0], expected)
    assert img.max() == 255  # the source image is untouched
