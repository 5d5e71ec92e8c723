"""The torch side of a split: a decode-once image cache, the Dataset, and batch collation.

Images travel as uint8 (3, H, W) tensors; the device turns them into floats
(:func:`digitexp.data.transforms.prepare_batch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from digitexp.config import DataConfig
from digitexp.data import transforms
from digitexp.data.splits import Split


class ImageCache:
    """Every image of a split decoded once into one contiguous uint8 buffer.

    Built in the main process before loader workers start, so forked workers share the pages
    instead of decoding again. An HW2-sized train split (30k small images) takes a few
    hundred MB.
    """

    def __init__(self, buffer: np.ndarray, starts: np.ndarray, shapes: np.ndarray) -> None:
        self.buffer = buffer
        self.starts = starts
        self.shapes = shapes

    @classmethod
    def build(
        cls,
        paths: Sequence[Path],
        decode: Callable[[Path], np.ndarray],
        progress: Callable[[int], None] | None = None,
    ) -> ImageCache:
        shapes = np.zeros((len(paths), 3), dtype=np.int64)
        arrays: list[np.ndarray] = []
        workers = min(8, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, arr in enumerate(pool.map(decode, paths, chunksize=32)):
                shapes[i] = arr.shape
                arrays.append(arr)
                if progress is not None:
                    progress(1)
        sizes = shapes.prod(axis=1)
        starts = np.concatenate([[0], np.cumsum(sizes)])[: len(paths)].astype(np.int64)
        buffer = np.empty(int(sizes.sum()), dtype=np.uint8)
        for start, arr in zip(starts, arrays, strict=True):
            buffer[start : start + arr.size] = arr.reshape(-1)
        return cls(buffer, starts, shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def nbytes(self) -> int:
        return int(self.shapes.prod(axis=1).sum())

    def subset(self, indices: Sequence[int]) -> ImageCache:
        """Some of the images, sharing this buffer (no copy)."""
        index = np.asarray(indices, dtype=np.int64)
        return ImageCache(self.buffer, self.starts[index], self.shapes[index])

    def get(self, index: int) -> np.ndarray:
        start = self.starts[index]
        shape = tuple(self.shapes[index])
        return self.buffer[start : start + int(np.prod(shape))].reshape(shape)


# --------------------------------------------------------------------------- dataset


Target = dict[str, torch.Tensor]


class DigitDataset(Dataset[tuple[torch.Tensor, Target]]):
    """Images as uint8 (3, H, W) tensors and targets {boxes xyxy float32, labels, image_id}."""

    def __init__(
        self,
        split: Split,
        cfg: DataConfig,
        *,
        train: bool,
        cache: ImageCache | None = None,
    ) -> None:
        self.split = split
        self.cfg = cfg
        self.train = train
        self.cache = cache
        self.augment = color_augment_for(cfg, train)

    def __len__(self) -> int:
        return len(self.split.images)

    def get_height_and_width(self, index: int) -> tuple[int, int]:
        record = self.split.images[index]
        return record.height, record.width

    def decode(self, path: Path) -> np.ndarray:
        return transforms.static_transform(transforms.decode_image(path), self.cfg)

    def load_image(self, index: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache.get(index)
        return self.decode(self.split.path(self.split.images[index]))

    def shard(self, rank: int, world_size: int) -> DigitDataset:
        """Every ``world_size``-th image from ``rank`` (one data-parallel process's share)."""
        images = self.split.images[rank::world_size]
        part = Split(
            self.split.name,
            self.split.image_dir,
            self.split.json_path,
            images,
            self.split.boxes,
            self.split.labels,
            self.split.clipped_boxes,
        )
        shard = DigitDataset(part, self.cfg, train=self.train)
        if self.cache is not None:
            shard.cache = self.cache.subset(range(rank, len(self.split.images), world_size))
        return shard

    def build_cache(self, progress: Callable[[int], None] | None = None) -> ImageCache:
        paths = [self.split.path(r) for r in self.split.images]
        self.cache = ImageCache.build(paths, self.decode, progress)
        return self.cache

    def target(self, index: int) -> Target:
        record = self.split.images[index]
        boxes = self.split.boxes.get(record.id)
        labels = self.split.labels.get(record.id)
        return {
            "boxes": torch.from_numpy(boxes if boxes is not None else np.zeros((0, 4), np.float32)),
            "labels": torch.from_numpy(labels if labels is not None else np.zeros(0, np.int64)),
            "image_id": torch.tensor(record.id, dtype=torch.int64),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image = transforms.to_tensor(self.load_image(index))
        if self.augment is not None:
            image = self.augment(image)
        return image, self.target(index)


def color_augment_for(
    cfg: DataConfig, train: bool
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if train and cfg.preprocess == "color":
        return transforms.color_augment(cfg)
    return None


def collate(
    batch: Sequence[tuple[torch.Tensor, Target]],
) -> tuple[list[torch.Tensor], list[Target]]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
