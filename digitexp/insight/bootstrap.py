"""Paired bootstrap over validation images: could a difference between two variants be noise?

A resample draws the split's images with replacement (``resample_counts``: how many times
each image is drawn); both variants are scored on the *same* resamples, so the spread of
the difference reflects which images happen to be validated on, and nothing else.

:class:`ResampleScorer` scores one run's detections on many resamples without building them.
Scoring a resample equals pycocotools on the resample materialized: every drawn copy of an
image becomes an image of its own, numbered in ascending original id (the copies of one image
consecutively), with that image's detections and ground truth. Reusing the precomputed
matching of :class:`digitexp.metrics.CandidatePool` (per image and category, which
detection is a true positive at each IoU threshold does not depend on the resample), a
resample only changes how often each detection and each ground truth box counts:

- per category, pycocotools sorts the detections of all images by score (a stable sort over
  images in id order), so a detection drawn m times appears as m consecutive copies, and the
  precision at its copies rises from the first to the last: the last copy carries the
  running counts (true positives K, detections W, both weighted by m) that the 101-point
  interpolated precision needs;
- detections of one image and category with the *same* score and different outcomes are the
  exception: the materialized copies interleave them (d1 d2 d1 d2, not d1 d1 d2 d2), so such
  tie groups are expanded copy by copy (rare: exact score ties inside one image);
- the number of ground truth boxes per category is the weighted count; Task-2 accuracy is the
  weighted share of images read right (:mod:`digitexp.metrics.numbers`).

The tests check equality with pycocotools on materialized resamples, ties included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from digitexp.common.progress import Progress
from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.metrics import CandidatePool, Detections, PoolDetections
from digitexp.metrics.numbers import predicted_number, read_number
from digitexp.metrics.pool import IOU_THRS, REC_THRS

DEFAULT_RESAMPLES = 1000
# 10x the default: about a minute for an HW2-sized split, and (resamples x images) counts that
# fit in memory (10,000 x 3,340 images: 0.13 GB of int32)
MAX_RESAMPLES = 10_000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
NUM_DIGITS = 10
_BIG = 1 << 40  # separates the rows of the flattened true-positive table in one sorted key


def resample_counts(num_images: int, resamples: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """(resamples, num_images) int32: how many times each image is drawn in each resample
    (num_images draws with replacement). The same seed and size give the same resamples, so
    every run scored on the same images is scored on the same resamples (paired)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    flat = (draws + np.arange(resamples)[:, None] * num_images).ravel()
    counts = np.bincount(flat, minlength=resamples * num_images)
    return counts.reshape(resamples, num_images).astype(np.int32)


def pool_detections(
    image_ids: Sequence[int], detections: Mapping[int, Detections]
) -> PoolDetections:
    """One split's detections as a candidate pool: image-major in ``image_ids`` order, inside
    an image in pycocotools' order (a stable sort by descending score)."""
    image, boxes, scores, labels = [], [], [], []
    for index, image_id in enumerate(image_ids):
        det = detections.get(image_id)
        if det is None or len(det.scores) == 0:
            continue
        order = np.argsort(-det.scores.astype(np.float64), kind="stable")
        image.append(np.full(len(order), index, dtype=np.int64))
        boxes.append(det.boxes[order].astype(np.float64))
        scores.append(det.scores[order].astype(np.float64))
        labels.append(det.labels[order].astype(np.int64))
    if not image:
        return PoolDetections(
            np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        )
    return PoolDetections(
        np.concatenate(image), np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
    )


@dataclass(frozen=True)
class ResampleScores:
    """One run's metrics on each resample (and on the split itself)."""

    map: np.ndarray  # (B,)
    number_acc: np.ndarray  # (B,)


class ResampleScorer:
    """COCO mAP (and AP per digit) and Task-2 accuracy of one run's detections on any
    resample of its split, given as per-image draw counts."""

    def __init__(self, split: Split, detections: Mapping[int, Detections], cfg: EvalConfig) -> None:
        self.image_ids = np.array(sorted(r.id for r in split.images), dtype=np.int64)
        self.num_images = len(self.image_ids)
        dets = pool_detections(self.image_ids.tolist(), detections)
        gt_boxes = [split.boxes[int(i)] for i in self.image_ids]
        gt_labels = [split.labels[int(i)] for i in self.image_ids]
        # ground truth boxes per image and digit (npig of a resample = counts @ gt_counts)
        self.gt_counts = np.zeros((self.num_images, NUM_DIGITS), dtype=np.int64)
        for i, labels in enumerate(gt_labels):
            self.gt_counts[i] = np.bincount(labels - 1, minlength=NUM_DIGITS)[:NUM_DIGITS]
        self.number_right = np.array(
            [
                predicted_number(
                    detections.get(int(image_id)) or Detections.empty(int(image_id)), cfg
                )
                == read_number(gt_boxes[i], gt_labels[i])
                for i, image_id in enumerate(self.image_ids)
            ],
            dtype=np.float64,
        )
        if len(dets.scores):
            pool = CandidatePool(split, self.image_ids.tolist(), dets)
            counted, sub, matched = pool.coco_matches(np.ones(pool.n, dtype=bool))
            # the evaluated detections per category, in pycocotools' accumulation order
            seq = pool.order_category[counted[pool.order_category]]
            tp = np.zeros((len(IOU_THRS), pool.n), dtype=bool)
            tp[:, sub] = matched
            self._prepare(dets, seq, tp[:, seq])
        else:
            self._prepare(dets, np.zeros(0, np.int64), np.zeros((len(IOU_THRS), 0), bool))

    # ----------------------------------------------------------------- set-up

    def _prepare(self, dets: PoolDetections, seq: np.ndarray, tp: np.ndarray) -> None:
        """``seq``: the evaluated detections per category in pycocotools' accumulation order;
        ``tp`` (T, len(seq)): true positive at each IoU threshold."""
        self.seq_image = dets.image[seq]
        labels = dets.labels[seq]
        self.category_start = np.searchsorted(labels, np.arange(1, NUM_DIGITS + 2))
        self.seq_category = labels - 1
        self.any_detection = len(seq) > 0
        # tie groups: consecutive detections of one category and image with the same score;
        # those whose outcomes differ at some threshold are expanded copy by copy
        scores = dets.scores[seq]
        new_group = np.ones(len(seq), dtype=bool)
        new_group[1:] = (
            (labels[1:] != labels[:-1])
            | (self.seq_image[1:] != self.seq_image[:-1])
            | (scores[1:] != scores[:-1])
        )
        group = np.cumsum(new_group) - 1
        group_start = np.flatnonzero(new_group)
        group_size = np.diff(np.r_[group_start, len(seq)])
        mixed_group = np.zeros(len(group_start), dtype=bool)
        if len(seq):
            for t in range(len(IOU_THRS)):
                hits = np.add.reduceat(tp[t].astype(np.int64), group_start)
                mixed_group |= (hits > 0) & (hits < group_size)
        self.mixed = mixed_group[group]
        self.tp = tp
        self.group = group
        self.group_start = group_start
        self.group_size = group_size
        self._layouts: dict[int, _Layout] = {}

    def _layout(self, max_count: int) -> _Layout:
        """The padded table of true-positive atoms per (IoU threshold, digit) row."""
        copies = max_count if self.mixed.any() else 1
        if copies not in self._layouts:
            self._layouts[copies] = _Layout.build(self, copies)
        return self._layouts[copies]

    # ----------------------------------------------------------------- scoring

    def ap_per_digit(self, counts: np.ndarray | None = None) -> np.ndarray:
        """(10,) AP of each digit on the resample ``counts`` (all ones: the split itself);
        NaN for a digit without ground truth in it."""
        counts = np.ones(self.num_images, np.int64) if counts is None else counts
        return self._ap(
            np.asarray(counts, dtype=np.int64), self._layout(int(counts.max(initial=1)))
        )

    def score(self, counts: np.ndarray) -> tuple[float, float]:
        """(mAP, Task-2 accuracy) of the resample ``counts`` (per image, how often drawn)."""
        counts = np.asarray(counts, dtype=np.int64)
        return self._map(counts, self._layout(int(counts.max(initial=1)))), self._number(counts)

    def scores(self, counts: np.ndarray, progress: Progress | None = None) -> ResampleScores:
        """Both metrics on each resample of ``counts`` (B, num_images)."""
        counts = np.asarray(counts, dtype=np.int64)
        layout = self._layout(int(counts.max(initial=1)))
        maps = np.empty(len(counts))
        for b, row in enumerate(counts):
            maps[b] = self._map(row, layout)
            if progress is not None:
                progress.update(1)
        totals = counts.sum(axis=1)
        numbers = np.where(totals > 0, counts @ self.number_right / np.maximum(totals, 1), 0.0)
        return ResampleScores(maps, numbers)

    def _number(self, counts: np.ndarray) -> float:
        total = int(counts.sum())
        return float(counts @ self.number_right) / total if total else 0.0

    def _map(self, counts: np.ndarray, layout: _Layout) -> float:
        ap = self._ap(counts, layout)
        valid = ~np.isnan(ap)
        if not valid.any() or not self._any_counted(counts):
            return 0.0
        return float(np.mean(ap[valid]))

    def _any_counted(self, counts: np.ndarray) -> bool:
        return self.any_detection and bool(counts[self.seq_image].any())

    def _ap(self, counts: np.ndarray, layout: _Layout) -> np.ndarray:
        npig = counts @ self.gt_counts  # (10,)
        if not self._any_counted(counts):
            return np.where(npig > 0, 0.0, np.nan)
        # weighted detections before each one (W) inside its category
        w = counts[self.seq_image]
        w_incl = np.cumsum(w)
        base = np.r_[0, w_incl][self.category_start[:-1]]
        w_incl = w_incl - base[self.seq_category]
        w_excl = w_incl - w
        weights = np.append(counts, 0)  # the padding atoms point at a last image drawn 0 times
        inc = weights[layout.image]
        if layout.mixed_pos.size:
            m = counts[layout.mixed_image]
            inc.flat[layout.mixed_pos] = layout.mixed_copy < m
        k = np.cumsum(inc, axis=1)
        n = np.append(w_incl, 0)[layout.seq]
        if layout.mixed_pos.size:
            n.flat[layout.mixed_pos] = w_excl[layout.mixed_first] + np.where(
                layout.mixed_copy < m,
                layout.mixed_copy * layout.mixed_size + layout.mixed_offset + 1,
                m * layout.mixed_size,
            )
        # pycocotools' float operations: tp / (fp + tp + eps), then the running maximum from
        # the end (the interpolated precision); the padding reads 0
        tps = k.astype(np.float64)
        fps = (n - k).astype(np.float64)
        precision = np.where(layout.pad, 0.0, tps / (fps + tps + np.spacing(1)))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # for each recall threshold, the first atom whose true-positive count reaches it
        needed = _first_count_reaching(npig)  # (10, 101)
        key = np.where(layout.pad, _BIG - 1, k) + layout.row_offset
        queries = needed[layout.row_digit] + layout.row_offset
        at = np.searchsorted(key.ravel(), queries.ravel()).reshape(queries.shape)
        q = precision.ravel()[at]  # (rows, 101)
        per_row = q.mean(axis=1).reshape(len(IOU_THRS), NUM_DIGITS)
        ap = per_row.mean(axis=0)
        return np.where(npig > 0, ap, np.nan)


def _first_count_reaching(npig: np.ndarray) -> np.ndarray:
    """(10, 101): per digit, the smallest true-positive count K with K / npig >= r for each
    recall threshold r, in pycocotools' float division (``rc = tp / npig``)."""
    n = np.maximum(npig, 1).astype(np.float64)[:, None]
    r = REC_THRS[None, :]
    k = np.ceil(r * n)
    k = np.where((k >= 1) & ((k - 1) / n >= r), k - 1, k)
    k = np.where(k / n < r, k + 1, k)
    return k.astype(np.int64)


@dataclass(frozen=True)
class _Layout:
    """Per row (IoU threshold t, digit d): the true-positive atoms in accumulation order,
    padded to one width (at least one padding atom per row)."""

    seq: np.ndarray  # (rows, L) index into the detection sequence (len(seq) = padding)
    image: np.ndarray  # (rows, L) image index (num_images = padding, drawn 0 times)
    pad: np.ndarray  # (rows, L) bool
    row_digit: np.ndarray  # (rows,) digit of each row
    row_offset: np.ndarray  # (rows, 1) int64
    mixed_pos: np.ndarray  # flat positions of expanded tie-group atoms
    mixed_image: np.ndarray
    mixed_first: np.ndarray  # sequence index of the group's first detection
    mixed_size: np.ndarray
    mixed_offset: np.ndarray  # offset of the atom's detection inside its group
    mixed_copy: np.ndarray  # which copy of the group

    @classmethod
    def build(cls, scorer: ResampleScorer, copies: int) -> _Layout:
        # atoms of a row, sorted by (position in the sequence, copy, offset in the group): a
        # plain atom is (s, 0, 0), an expanded group's atoms share the group's first position
        rows: list[np.ndarray] = []  # (atoms, 4): position, copy (-1 plain), offset, seq index
        for t in range(len(IOU_THRS)):
            for d in range(NUM_DIGITS):
                start, end = scorer.category_start[d], scorer.category_start[d + 1]
                hits = start + np.flatnonzero(scorer.tp[t, start:end])
                mixed = scorer.mixed[hits]
                plain = hits[~mixed]
                parts = [np.stack([plain, np.full_like(plain, -1), 0 * plain, plain], axis=1)]
                expanded = hits[mixed]
                if expanded.size:
                    first = scorer.group_start[scorer.group[expanded]]
                    for c in range(copies):
                        parts.append(
                            np.stack(
                                [first, np.full_like(first, c), expanded - first, expanded], axis=1
                            )
                        )
                atoms = np.concatenate(parts)
                atoms = atoms[np.lexsort((atoms[:, 2], atoms[:, 1], atoms[:, 0]))]
                rows.append(atoms)
        width = max(len(a) for a in rows) + 1
        pad_seq = len(scorer.seq_image)
        seq = np.full((len(rows), width), pad_seq, dtype=np.int64)
        copy = np.full((len(rows), width), -1, dtype=np.int64)
        offset = np.zeros((len(rows), width), dtype=np.int64)
        for r, atoms in enumerate(rows):
            seq[r, : len(atoms)] = atoms[:, 3]
            copy[r, : len(atoms)] = atoms[:, 1]
            offset[r, : len(atoms)] = atoms[:, 2]
        pad = seq == pad_seq
        image = np.append(scorer.seq_image, scorer.num_images)[seq]
        mixed_pos = np.flatnonzero(copy.ravel() >= 0)
        mixed_group = scorer.group[seq.ravel()[mixed_pos]]
        return cls(
            seq=seq,
            image=image,
            pad=pad,
            row_digit=np.tile(np.arange(NUM_DIGITS), len(IOU_THRS)),
            row_offset=(np.arange(len(rows), dtype=np.int64) * _BIG)[:, None],
            mixed_pos=mixed_pos,
            mixed_image=image.ravel()[mixed_pos],
            mixed_first=scorer.group_start[mixed_group],
            mixed_size=scorer.group_size[mixed_group],
            mixed_offset=offset.ravel()[mixed_pos],
            mixed_copy=copy.ravel()[mixed_pos],
        )


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Comparison:
    """b - a of one metric between two variants, each with one or more seeds.

    ``delta`` is the difference of the seed means on the split. ``boot_low``/``boot_high``:
    the percentile interval of that difference over the paired resamples (which validation
    images: the only noise a single seed shows). With several seeds the training seed is a
    second, independent source: the interval used (``low``/``high``) is then
    delta ± z·√(SE_boot² + SE_seed²), SE_boot the standard deviation of the resampled
    differences, SE_seed² = s_a²/n_a + s_b²/n_b from the seeds' values on the split (a side
    with one seed borrows the other side's s²). With one seed each it is the percentile
    interval itself.
    """

    delta: float
    low: float
    high: float
    boot_low: float
    boot_high: float
    p_positive: float  # share of resamples where b beats a
    resamples: int
    seeds_a: int
    seeds_b: int
    seed_std_a: float | None
    seed_std_b: float | None

    @property
    def combined(self) -> bool:
        """The interval adds the seed-to-seed spread."""
        return max(self.seeds_a, self.seeds_b) > 1

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def compare(
    observed_a: Sequence[float],
    observed_b: Sequence[float],
    resampled_a: Sequence[np.ndarray],
    resampled_b: Sequence[np.ndarray],
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Variant b against variant a: per seed, a run's value on the split (``observed_*``) and
    on each of the same resamples (``resampled_*``)."""
    obs_a, obs_b = np.asarray(observed_a, np.float64), np.asarray(observed_b, np.float64)
    diff = np.mean(np.asarray(resampled_b, np.float64), axis=0) - np.mean(
        np.asarray(resampled_a, np.float64), axis=0
    )
    delta = float(obs_b.mean() - obs_a.mean())
    tail = (1 - confidence) / 2
    boot_low, boot_high = (float(v) for v in np.quantile(diff, [tail, 1 - tail]))
    std_a = float(np.std(obs_a, ddof=1)) if len(obs_a) > 1 else None
    std_b = float(np.std(obs_b, ddof=1)) if len(obs_b) > 1 else None
    low, high = boot_low, boot_high
    if std_a is not None or std_b is not None:
        var_a = (std_a if std_a is not None else std_b) ** 2  # type: ignore[operator]
        var_b = (std_b if std_b is not None else std_a) ** 2  # type: ignore[operator]
        se_seed2 = var_a / len(obs_a) + var_b / len(obs_b)
        se_boot2 = float(np.var(diff, ddof=1)) if len(diff) > 1 else 0.0
        half = NormalDist().inv_cdf(1 - tail) * math.sqrt(se_seed2 + se_boot2)
        low, high = delta - half, delta + half
    return Comparison(
        delta=delta,
        low=low,
        high=high,
        boot_low=boot_low,
        boot_high=boot_high,
        p_positive=float(np.mean(diff > 0)),
        resamples=len(diff),
        seeds_a=len(obs_a),
        seeds_b=len(obs_b),
        seed_std_a=std_a,
        seed_std_b=std_b,
    )
