"""Anchor coverage, before any training: do a variant's anchors fit its digits?

For each ground-truth box of a split, after the model's own resize (torchvision's
``GeneralizedRCNNTransform``: scale = min(min_size / shorter side, max_size / longer side),
image size floor(side x scale), boxes scaled by new/old size in float32), the best IoU any
anchor of the model reaches with it. The anchors are the RPN's (:func:`digitexp.model.
anchor_generator`: torchvision's rounded base anchors per FPN level), laid on each level's grid
as torchvision lays them for the image alone (padded to a multiple of 32: a map of stride s
has ceil(P / s) cells, spaced P // cells apart, from 0).

The best IoU over a grid needs no search: the overlap in x depends only on the anchor's x
position and is largest at the grid position nearest the box centre (the same for y), and
IoU grows with the overlap. The RPN trains a box as foreground from anchors with IoU >=
``model.rpn_fg_iou_thresh`` (0.7); below ``model.rpn_bg_iou_thresh`` (0.3) an anchor is
background, so a box whose best anchor stays under it is learnt only through torchvision's
low-quality match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from digitexp.config import ExperimentConfig, ModelConfig
from digitexp.data import Split, load_split
from digitexp.model import FEATURE_MAPS, FEATURE_STRIDES, anchor_generator

SIZE_DIVISIBLE = 32  # GeneralizedRCNNTransform.batch_images


@dataclass(frozen=True)
class AnchorShapes:
    """The base anchors of one FPN level: widths and heights in resized pixels."""

    level: str
    stride: int
    half_extent: np.ndarray  # (A, 4) the rounded base anchors x1, y1, x2, y2 (centred at 0)

    @property
    def widths(self) -> np.ndarray:
        return self.half_extent[:, 2] - self.half_extent[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.half_extent[:, 3] - self.half_extent[:, 1]


@dataclass(frozen=True)
class Coverage:
    """Anchor coverage of one model config on one split."""

    fg_thresh: float
    bg_thresh: float
    best_iou: np.ndarray  # (N,) per ground-truth box
    sizes: np.ndarray  # (N, 2) width, height after the resize
    levels: tuple[AnchorShapes, ...]

    @property
    def boxes(self) -> int:
        return len(self.best_iou)

    @property
    def share_fg(self) -> float | None:
        return float(np.mean(self.best_iou >= self.fg_thresh)) if self.boxes else None

    @property
    def share_bg(self) -> float | None:
        return float(np.mean(self.best_iou >= self.bg_thresh)) if self.boxes else None

    @property
    def mean_iou(self) -> float | None:
        return float(np.mean(self.best_iou)) if self.boxes else None


def anchor_shapes(cfg: ModelConfig) -> tuple[AnchorShapes, ...]:
    """Per FPN level, torchvision's base anchors of this config."""
    generator = anchor_generator(cfg)
    return tuple(
        AnchorShapes(level, stride, cell.numpy().astype(np.float64))
        for level, stride, cell in zip(
            FEATURE_MAPS[cfg.arch], FEATURE_STRIDES[cfg.arch], generator.cell_anchors, strict=True
        )
    )


def resized(height: int, width: int, cfg: ModelConfig) -> tuple[int, int]:
    """The image size after GeneralizedRCNNTransform's resize (evaluation: min_size)."""
    scale = min(float(cfg.min_size) / min(height, width), float(cfg.max_size) / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def padded(size: int) -> int:
    return int(math.ceil(size / SIZE_DIVISIBLE) * SIZE_DIVISIBLE)


def resize_boxes(boxes: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """torchvision's resize_boxes in float32: x * (new_w / old_w), y * (new_h / old_h)."""
    ratio_h = np.float32(new[0]) / np.float32(old[0])
    ratio_w = np.float32(new[1]) / np.float32(old[1])
    b = boxes.astype(np.float32)
    return np.stack([b[:, 0] * ratio_w, b[:, 1] * ratio_h, b[:, 2] * ratio_w, b[:, 3] * ratio_h], 1)


def _best_overlap(
    lo: np.ndarray, hi: np.ndarray, a_lo: float, a_hi: float, step: np.ndarray, cells: np.ndarray
) -> np.ndarray:
    """Largest overlap in one axis of [lo, hi] with the anchors [k step + a_lo, k step + a_hi],
    k = 0..cells-1: at the k nearest the centre (floor or ceil), clamped to the grid."""
    centre = ((lo + hi) / 2 - (a_lo + a_hi) / 2) / step
    best = np.zeros_like(lo)
    for k in (np.floor(centre), np.ceil(centre)):
        at = np.clip(k, 0, cells - 1) * step
        overlap = np.minimum(hi, at + a_hi) - np.maximum(lo, at + a_lo)
        best = np.maximum(best, np.clip(overlap, 0, None))
    return best


def best_anchor_iou(
    boxes: np.ndarray, padded_sizes: np.ndarray, levels: tuple[AnchorShapes, ...]
) -> np.ndarray:
    """(N,) the best IoU of each box (resized pixels, xyxy) with any anchor of its image;
    ``padded_sizes`` (N, 2) is the padded height and width of each box's image."""
    b = boxes.astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    best = np.zeros(len(b))
    height, width = padded_sizes[:, 0], padded_sizes[:, 1]
    for level in levels:
        cells_y = -(-height // level.stride)  # ceil
        cells_x = -(-width // level.stride)
        step_y, step_x = height // cells_y, width // cells_x
        for x1, y1, x2, y2 in level.half_extent:
            ox = _best_overlap(b[:, 0], b[:, 2], x1, x2, step_x, cells_x)
            oy = _best_overlap(b[:, 1], b[:, 3], y1, y2, step_y, cells_y)
            inter = ox * oy
            union = area + (x2 - x1) * (y2 - y1) - inter
            best = np.maximum(best, np.where(union > 0, inter / np.where(union > 0, union, 1), 0))
    return best


def resized_boxes(split: Split, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every ground-truth box of ``split`` after the model's resize (N, 4), and the padded
    size of its image (N, 2)."""
    boxes, sizes = [], []
    for record in split.images:
        gt = split.boxes.get(record.id)
        if gt is None or len(gt) == 0:
            continue
        new = resized(record.height, record.width, cfg)
        boxes.append(resize_boxes(gt, (record.height, record.width), new))
        sizes.append(np.tile([padded(new[0]), padded(new[1])], (len(gt), 1)))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, 2), np.int64)
    return np.concatenate(boxes), np.concatenate(sizes).astype(np.int64)


def anchor_coverage(split: Split, cfg: ModelConfig) -> Coverage:
    """Coverage of every ground-truth box of ``split`` by the anchors of ``cfg``."""
    levels = anchor_shapes(cfg)
    boxes, sizes = resized_boxes(split, cfg)
    b = boxes.astype(np.float64)
    return Coverage(
        fg_thresh=cfg.rpn_fg_iou_thresh,
        bg_thresh=cfg.rpn_bg_iou_thresh,
        best_iou=best_anchor_iou(boxes, sizes, levels),
        sizes=np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1),
        levels=levels,
    )


COVERAGE_SPLITS = ("train", "valid")


def coverage_split(
    cfg: ExperimentConfig,
    which: str = "train",
    cache: MutableMapping[tuple[str, str, int, bool], Split] | None = None,
) -> Split:
    """The split of ``cfg`` whose boxes coverage counts: ``train`` (what the RPN learns
    from) or ``valid``, with the config's image limit."""
    d = cfg.data
    name, limit = (
        (d.train_split, d.train_limit) if which == "train" else (d.valid_split, d.valid_limit)
    )
    key = (d.root, name, limit, d.clip_boxes)
    if cache is not None and key in cache:
        return cache[key]
    split = load_split(Path(d.root), name, clip_boxes=d.clip_boxes, limit=limit)
    if cache is not None:
        cache[key] = split
    return split


def variant_coverages(
    configs: Mapping[str, ExperimentConfig],
    which: str = "train",
    cache: MutableMapping[tuple[str, str, int, bool], Split] | None = None,
) -> dict[str, Coverage]:
    """Anchor coverage of each variant's model on its own data (splits loaded once)."""
    cache = {} if cache is None else cache
    return {
        name: anchor_coverage(coverage_split(cfg, which, cache), cfg.model)
        for name, cfg in configs.items()
    }


def anchors_text(cfg: ModelConfig) -> str:
    """``sizes 4 8 12 24 48, h/w 0.25 0.5 1, resize 512/1024``."""
    sizes = " ".join(f"{s:g}" for s in cfg.anchor_sizes)
    ratios = " ".join(f"{r:g}" for r in cfg.aspect_ratios)
    return f"sizes {sizes}, h/w {ratios}, resize {cfg.min_size}/{cfg.max_size}"


def coverage_frame(
    coverages: Mapping[str, Coverage], configs: Mapping[str, ExperimentConfig]
) -> pd.DataFrame:
    """One row per variant: boxes, anchors, the shares reaching the RPN's thresholds, the
    mean best IoU."""
    rows = []
    for name, cov in coverages.items():
        rows.append(
            {
                "variant": name,
                "boxes": cov.boxes,
                "anchors": anchors_text(configs[name].model),
                "share_fg": None if cov.share_fg is None else round(cov.share_fg, 6),
                "share_bg": None if cov.share_bg is None else round(cov.share_bg, 6),
                "mean_best_iou": None if cov.mean_iou is None else round(cov.mean_iou, 6),
                "fg_thresh": cov.fg_thresh,
                "bg_thresh": cov.bg_thresh,
            }
        )
    return pd.DataFrame(rows)
