"""Image preprocessing: decode, the report's three modes, and normalization.

Images travel as uint8 tensors (C, H, W) from the loader to the device, where they become
float and are normalized; boxes are never touched by these transforms.

- ``none``: the image as decoded.
- ``color``: ColorJitter(brightness, contrast, saturation, hue) + RandomGrayscale(p), training
  images only, a new draw every time an image is loaded.
- ``binary``: OpenCV adaptive mean threshold (block size, C, THRESH_BINARY_INV) on the
  grayscale image, replicated to three channels, on every split (it is deterministic, so it is
  applied once at decode time and cached with the image).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from digitexp.config import DataConfig
from digitexp.data.images import decode_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_image(path: Path) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3) (:func:`.images.decode_rgb`);
    DataError names a bad file."""
    return decode_rgb(path)


def binarize(rgb: np.ndarray, block_size: int = 11, c: float = 2.0) -> np.ndarray:
    """The report's adaptive binarization, as OpenCV computes it, replicated to 3 channels."""
    import cv2

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    thresh = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block_size, c
    )
    return np.ascontiguousarray(np.repeat(thresh[:, :, None], 3, axis=2))


def static_transform(rgb: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """The deterministic part of preprocessing, applied once per decode (cacheable)."""
    if cfg.preprocess == "binary":
        return binarize(rgb, cfg.binary_block_size, cfg.binary_c)
    return rgb


def color_augment(cfg: DataConfig) -> v2.Compose:
    """ColorJitter + RandomGrayscale on uint8 tensors (training images, ``color`` mode)."""
    return v2.Compose(
        [
            v2.ColorJitter(
                brightness=cfg.color_brightness,
                contrast=cfg.color_contrast,
                saturation=cfg.color_saturation,
                hue=cfg.color_hue,
            ),
            v2.RandomGrayscale(p=cfg.grayscale_p),
        ]
    )


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor (a view when possible)."""
    return torch.from_numpy(rgb).permute(2, 0, 1)


@functools.lru_cache(maxsize=8)
def _imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std as (3, 1, 1) tensors on ``device``, made once per device."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1)
    return mean, std


def prepare_batch(
    images: Sequence[torch.Tensor],
    device: torch.device,
    pre_normalize: bool,
) -> list[torch.Tensor]:
    """uint8 (3, H, W) tensors -> float tensors on ``device`` in [0, 1], optionally normalized.

    The copy is non-blocking (pinned memory makes it asynchronous on CUDA) and the conversion
    and normalization run on the device.
    """
    out: list[torch.Tensor] = []
    mean = std = None
    if pre_normalize:
        mean, std = _imagenet_stats(device)
    for img in images:
        x = img.to(device, non_blocking=True).float().div_(255.0)
        if mean is not None and std is not None:
            x = x.sub_(mean).div_(std)
        out.append(x)
    return out
