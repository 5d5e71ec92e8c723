"""Batch samplers: batches that depend only on (seed, epoch), optionally within aspect-ratio
groups; one process's share of them under data-parallel training."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from digitexp.data.dataset import DigitDataset


def aspect_ratio_groups(dataset: DigitDataset, num_groups: int = 3) -> list[int]:
    """Group id per image: aspect-ratio (w/h) quantile bins."""
    ratios = np.array(
        [w / h for h, w in (dataset.get_height_and_width(i) for i in range(len(dataset)))]
    )
    if len(ratios) == 0:
        return []
    edges = np.quantile(ratios, np.linspace(0, 1, num_groups + 1)[1:-1])
    return [int(g) for g in np.searchsorted(edges, ratios, side="right")]


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches that depend only on (seed, epoch), optionally within aspect-ratio groups.

    ``set_epoch`` picks the epoch, so a resumed run sees the batches an uninterrupted run would.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        groups: Sequence[int] | None = None,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.groups = list(groups) if groups is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        return iter(batches_of(order, self.batch_size, self.groups))

    def __len__(self) -> int:
        if self.groups is None:
            return math.ceil(self.size / self.batch_size)
        counts: dict[int, int] = {}
        for g in self.groups:
            counts[g] = counts.get(g, 0) + 1
        return sum(math.ceil(n / self.batch_size) for n in counts.values())


class DistributedBatches(Sampler[list[int]]):
    """One data-parallel process's batches: ``DistributedSampler`` order (seeded,
    ``set_epoch``), cut into batches, optionally only within aspect-ratio groups (as
    torchvision's detection reference does)."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        num_replicas: int,
        rank: int,
        groups: Sequence[int] | None = None,
    ) -> None:
        self.sampler = DistributedSampler(
            range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        self.batch_size = batch_size
        self.groups = list(groups) if groups is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(batches_of(list(self.sampler), self.batch_size, self.groups))

    def __len__(self) -> int:
        """Batches every rank trains per epoch: the same on all ranks (DDP needs that). With
        groups an epoch yields at least this many (leftover partial batches are extra)."""
        return -(-len(self.sampler) // self.batch_size)


def batches_of(
    order: Sequence[int], batch_size: int, groups: Sequence[int] | None
) -> list[list[int]]:
    """``order`` cut into batches; with ``groups``, each batch from one group only (a group's
    batch is emitted when full, the partial ones last, in group order)."""
    if groups is None:
        return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    buckets: dict[int, list[int]] = {}
    batches: list[list[int]] = []
    for index in order:
        bucket = buckets.setdefault(groups[index], [])
        bucket.append(index)
        if len(bucket) == batch_size:
            batches.append(bucket.copy())
            bucket.clear()
    batches.extend(b for _, b in sorted(buckets.items()) if b)
    return batches
