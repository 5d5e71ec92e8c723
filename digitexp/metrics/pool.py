"""The metrics of :func:`digitexp.metrics.evaluate`, for many subsets of one candidate pool.

The threshold search scores hundreds of detection subsets (one per trial) drawn from the same
cached candidates of one split. :class:`CandidatePool` precomputes everything that does not
depend on the subset (detection/ground-truth IoUs, the digit-accuracy match of every
candidate, the ground-truth numbers) and :meth:`CandidatePool.score` then returns exactly
what :func:`digitexp.metrics.evaluate` returns for those detections:

- COCO mAP / AP50 / AP75 replicate pycocotools' ``COCOeval`` for bbox (area "all",
  maxDets 100, no crowd ground truth): per image and category the detections are taken in
  stable score order and greedily matched to the unmatched ground truth of highest IoU >= t
  (ties to the later one), then accumulated per category in pycocotools' concatenation
  order with the same 101-point interpolated precision.
- digit accuracy as docs/architecture.md defines it: the class-agnostic NMS of each image's
  subset replayed exactly (torchvision's greedy NMS in its float32 operations, stable score
  order) as the fixed point of one suppression step over the pairs that overlap enough,
  then the precomputed match of every candidate;
- Task-2 number accuracy as docs/architecture.md defines it.

The tests check equality with pycocotools on random pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.metrics.detections import Detections
from digitexp.metrics.digits import UNDEFINED, best_matches, counts
from digitexp.metrics.numbers import above_threshold, predicted_number, read_number

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 100
_MAX_EXACT = 10**17  # below this a running number * 10 + digit stays exact in int64
_PAIRS_PER_CHUNK = 2_000_000  # candidate pairs per padded array of the digit-NMS set-up


def _coco_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou for xywh boxes (no crowd), in the same float64 operations."""
    dx, dy, dw, dh = (d[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (g[None, :, i] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = dw * dh + gw * gh - inter
    return np.where((w > 0) & (h > 0), inter / union, 0.0)


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    """[x, y, w, h] as coco_results / Split.coco_gt write them: w = x2 - x1 in float64."""
    b = xyxy.astype(np.float64)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


@dataclass(frozen=True)
class PoolDetections:
    """Candidates of one split, image-major (ascending image id), score-descending inside."""

    image: np.ndarray  # (N,) index into image_ids
    boxes: np.ndarray  # (N, 4) xyxy, the float32 values as float64
    scores: np.ndarray  # (N,) float64
    labels: np.ndarray  # (N,) int64, 1..10


class CandidatePool:
    """Precomputed scoring of any subset of a fixed set of candidate detections."""

    def __init__(self, split: Split, image_ids: Sequence[int], dets: PoolDetections) -> None:
        self.split = split
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        if np.any(np.diff(self.image_ids) <= 0):
            raise ValueError("image_ids must be strictly ascending")
        self.dets = dets
        self.n = len(dets.scores)
        self.num_images = len(self.image_ids)
        self._prepare_ground_truth()
        self._prepare_coco()
        self._prepare_digit_match()

    # ----------------------------------------------------------------- set-up

    def _prepare_ground_truth(self) -> None:
        self.gt_boxes = [self.split.boxes[int(i)] for i in self.image_ids]
        self.gt_labels = [self.split.labels[int(i)] for i in self.image_ids]
        numbers = [
            read_number(b, lab) for b, lab in zip(self.gt_boxes, self.gt_labels, strict=True)
        ]
        self.gt_number_overflow = any(n >= _MAX_EXACT for n in numbers)
        self.gt_number = np.array([min(n, _MAX_EXACT) for n in numbers], dtype=np.int64)
        # ground truth per category over the split (npig in pycocotools)
        all_labels = np.concatenate(self.gt_labels) if self.gt_labels else np.zeros(0, np.int64)
        self.npig = np.bincount(all_labels, minlength=11)

    def _prepare_coco(self) -> None:
        """IoU of every candidate with the same-category ground truth of its image."""
        d = self.dets
        per_group: dict[tuple[int, int], np.ndarray] = {}
        gmax = 1
        for i, (boxes, labels) in enumerate(zip(self.gt_boxes, self.gt_labels, strict=True)):
            for cat in np.unique(labels):
                xywh = _xywh(boxes[labels == cat])
                per_group[(i, int(cat))] = xywh
                gmax = max(gmax, len(xywh))
        self.coco_iou = np.full((self.n, gmax), -1.0)
        dt_xywh = _xywh(d.boxes)
        order = np.lexsort((d.labels, d.image))
        keys = np.stack([d.image[order], d.labels[order]], axis=1)
        # a new group where (image, category) changes (no candidate: no group)
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        starts = starts[starts < len(order)]
        ends = np.r_[starts[1:], len(order)][: len(starts)]
        for s, e in zip(starts, ends, strict=True):
            idx = order[s:e]
            gt = per_group.get((int(d.image[idx[0]]), int(d.labels[idx[0]])))
            if gt is not None:
                self.coco_iou[idx, : len(gt)] = _coco_iou(dt_xywh[idx], gt)
        self.coco_best = self.coco_iou.max(axis=1)
        # (image, category) group of every candidate; the pool in group order (stable, so
        # score order inside a group) and in category-then-score order (stable, so ties
        # keep image order): a trial filters these orders instead of sorting
        self.group = d.image * 11 + d.labels
        self.order_group = np.argsort(self.group, kind="stable")
        by_score = np.argsort(-d.scores, kind="stable")
        self.order_category = by_score[np.argsort(d.labels[by_score], kind="stable")]

    def _prepare_digit_match(self) -> None:
        """Digit accuracy: each candidate's best-IoU ground truth in its image (any digit)."""
        d = self.dets
        self.digit_has_gt = np.zeros(self.n, dtype=bool)
        self.digit_best_iou = np.zeros(self.n, dtype=np.float32)
        self.digit_label_ok = np.zeros(self.n, dtype=bool)
        self.bounds = np.searchsorted(d.image, np.arange(self.num_images + 1))
        self._nms_pairs: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for i in range(self.num_images):
            s, e = self.bounds[i], self.bounds[i + 1]
            gt_boxes, gt_labels = self.gt_boxes[i], self.gt_labels[i]
            if s == e or len(gt_labels) == 0:
                continue
            best_iou, label_ok = best_matches(d.boxes[s:e], d.labels[s:e], gt_boxes, gt_labels)
            self.digit_has_gt[s:e] = True
            self.digit_best_iou[s:e] = best_iou
            self.digit_label_ok[s:e] = label_ok

    def _digit_nms_pairs(self, nms_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(earlier, later, later's score) for the candidate pairs of one image whose IoU (in
        the float32 operations of torchvision's NMS kernel) is > ``nms_iou``, "earlier" in
        the stable float32 score order ``nms`` sorts by: a kept earlier box suppresses the
        later one. Sorted by the later box's score, descending, so that the pairs a trial
        can use are a prefix. Computed once per IoU, images of similar candidate counts
        together (one padded array per chunk)."""
        if nms_iou in self._nms_pairs:
            return self._nms_pairs[nms_iou]
        d = self.dets
        scores = d.scores.astype(np.float32)
        boxes = d.boxes.astype(np.float32)
        by_score = np.lexsort((-scores, d.image))  # per image, nms's stable score order
        threshold = _float32_below(nms_iou)
        sizes = np.diff(self.bounds)
        images = np.flatnonzero(sizes >= 2)
        images = images[np.argsort(sizes[images], kind="stable")]
        src_parts, dst_parts = [], []
        start = 0
        while start < len(images):
            stop = start + 1
            while stop < len(images) and (stop - start + 1) * int(sizes[images[stop]]) ** 2 <= (
                _PAIRS_PER_CHUNK
            ):
                stop += 1
            chunk = images[start:stop]
            width = int(sizes[chunk].max())
            order = np.zeros((len(chunk), width), dtype=np.int64)
            valid = np.zeros((len(chunk), width), dtype=bool)
            for row, image in enumerate(chunk):
                s, e = self.bounds[image], self.bounds[image + 1]
                order[row, : e - s] = by_score[s:e]
                valid[row, : e - s] = True
            overlap = _nms_overlaps(boxes[order]) > threshold
            overlap &= valid[:, None, :]  # a padded later box is never suppressed
            overlap &= np.triu(np.ones((width, width), dtype=bool), k=1)[None]
            rows, a, b = np.nonzero(overlap)
            src_parts.append(order[rows, a])
            dst_parts.append(order[rows, b])
            start = stop
        src = np.concatenate(src_parts) if src_parts else np.zeros(0, dtype=np.int64)
        dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, dtype=np.int64)
        by_score = np.argsort(-scores[dst], kind="stable")
        pairs = (src[by_score], dst[by_score], scores[dst[by_score]])
        self._nms_pairs[nms_iou] = pairs
        return pairs

    def _after_digit_nms(self, selected: np.ndarray, nms_iou: float) -> np.ndarray:
        """The mask ``selected`` after each image's class-agnostic NMS: greedy NMS keeps a box
        unless a kept earlier box overlaps it, whose unique fixed point is found by iterating
        that rule from "all kept" (Cluster-NMS, Zheng et al. 2020)."""
        chosen = np.flatnonzero(selected)
        if chosen.size < 2:
            return selected
        src, dst, dst_score = self._digit_nms_pairs(nms_iou)
        lowest = self.dets.scores[chosen].astype(np.float32).min()
        usable = int(np.searchsorted(-dst_score, -lowest, side="right"))
        src, dst = src[:usable], dst[:usable]
        active = selected[src] & selected[dst]
        src, dst = src[active], dst[active]
        keep = selected
        while src.size:
            suppressed = np.zeros(self.n, dtype=bool)
            suppressed[dst[keep[src]]] = True
            new = selected & ~suppressed
            if np.array_equal(new, keep):
                break
            keep = new
        return keep

    # ----------------------------------------------------------------- scoring

    def prepare(self, cfg: EvalConfig) -> None:
        """Compute now what :meth:`score` with ``cfg`` needs once (the candidate pairs of the
        digit-accuracy NMS), so that the first score is as fast as the others."""
        self._digit_nms_pairs(cfg.digit_nms_iou)

    def score(self, selected: np.ndarray, cfg: EvalConfig) -> dict[str, float]:
        """The metrics of the detections ``selected`` (a boolean mask over the pool)."""
        idx = np.flatnonzero(selected)
        metrics = self._coco(selected)
        kept = np.flatnonzero(self._after_digit_nms(selected, cfg.digit_nms_iou))
        metrics["digit_acc"] = self._digit_accuracy(kept, cfg.digit_iou)
        metrics["number_acc"] = self._number_accuracy(idx, cfg)
        return metrics

    def _coco(self, selected: np.ndarray) -> dict[str, float]:
        if not selected.any() or self.npig.sum() == 0:
            return {"map": 0.0, "map50": 0.0, "map75": 0.0}
        counted, sub, matched = self.coco_matches(selected)
        return self._accumulate(counted, sub, matched)

    def coco_matches(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pycocotools' per-image matching of the detections ``selected`` (a boolean mask):
        ``counted`` (n,) the detections it evaluates (at most MAX_DETS per image and
        category, by score), ``sub`` the indices of those that reach IoU 0.5 with some
        ground truth, ``matched`` (len(IOU_THRS), len(sub)) whether each of them is a true
        positive at each IoU threshold."""
        # per (image, category): detections in score order (the precomputed group order
        # filtered by the mask, no sort per trial), at most MAX_DETS
        idx = self.order_group[selected[self.order_group]]
        group = self.group[idx]
        keep = _rank_in_runs(group) < MAX_DETS
        idx, group = idx[keep], group[keep]
        counted = np.zeros(self.n, dtype=bool)
        counted[idx] = True
        # only detections reaching IoU 0.5 with some ground truth can match: the greedy
        # matching runs over those alone (the others never take a ground truth)
        can = self.coco_best[idx] >= IOU_THRS[0]
        sub, sub_group = idx[can], group[can]
        matched = self._match(sub, sub_group, _rank_in_runs(sub_group))
        return counted, sub, matched

    def _match(self, idx: np.ndarray, group: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """(T, n) bool: detection matched at each IoU threshold (pycocotools' greedy rule)."""
        n, gmax = len(idx), self.coco_iou.shape[1]
        thr = np.minimum(IOU_THRS, 1 - 1e-10)
        matched = np.zeros((len(IOU_THRS), n), dtype=bool)
        _, group_id = np.unique(group, return_inverse=True)
        taken = np.zeros((group_id.max() + 1 if n else 0, len(IOU_THRS), gmax), dtype=bool)
        ious_all = self.coco_iou[idx]
        for r in range(int(rank.max()) + 1 if n else 0):
            at = np.flatnonzero(rank == r)
            g = group_id[at]
            ious = ious_all[at][:, None, :]  # (m, 1, G)
            eligible = (ious >= thr[None, :, None]) & ~taken[g]  # (m, T, G)
            values = np.where(eligible, ious, -np.inf)
            last_best = gmax - 1 - np.argmax(values[:, :, ::-1], axis=2)  # ties -> later gt
            hit = eligible.any(axis=2)
            rows, ts = np.nonzero(hit)
            taken[g[rows], ts, last_best[rows, ts]] = True
            matched[:, at] = hit.T
        return matched

    def _accumulate(
        self, counted: np.ndarray, sub: np.ndarray, matched: np.ndarray
    ) -> dict[str, float]:
        """pycocotools' accumulate + summarize for area 'all', maxDets 100.

        pycocotools concatenates, per category, the images' detections in ascending image id
        and sorts them by score with a stable mergesort: the precomputed category order,
        filtered by the mask, is exactly that. Only the matched detections (``sub`` where
        ``matched``) raise precision, so the interpolated precision is computed at their
        positions in that order.
        """
        order = self.order_category[counted[self.order_category]]
        labels = self.dets.labels[order]
        bounds = np.searchsorted(labels, np.arange(1, 12))
        position = np.empty(self.n, dtype=np.int64)
        position[order] = np.arange(len(order)) - bounds[labels - 1]
        sub_labels = self.dets.labels[sub]
        sub_position = position[sub]
        precision = -np.ones((len(IOU_THRS), len(REC_THRS), 10))
        for k, cat in enumerate(range(1, 11)):
            npig = int(self.npig[cat])
            if npig == 0:
                continue
            nd = int(bounds[k + 1] - bounds[k])
            mine = sub_labels == cat
            for t in range(len(IOU_THRS)):
                tp_positions = np.sort(sub_position[mine][matched[t, mine]])
                precision[t, :, k] = _interpolated_precision(tp_positions, nd, npig)

        def mean(s: np.ndarray) -> float:
            return float(np.mean(s[s > -1])) if np.any(s > -1) else -1.0

        t50 = np.where(IOU_THRS == 0.5)[0]
        t75 = np.where(IOU_THRS == 0.75)[0]
        return {
            "map": mean(precision),
            "map50": mean(precision[t50]),
            "map75": mean(precision[t75]),
        }

    def _digit_accuracy(self, idx: np.ndarray, iou: float) -> float:
        has_gt = self.digit_has_gt[idx]
        matched = has_gt & counts(self.digit_best_iou[idx], iou)
        counted = int((~has_gt).sum() + matched.sum())
        correct = int((matched & self.digit_label_ok[idx]).sum())
        return correct / counted if counted else UNDEFINED

    def _number_accuracy(self, idx: np.ndarray, cfg: EvalConfig) -> float:
        if self.num_images == 0:
            return 0.0
        if cfg.agnostic_nms or self.gt_number_overflow:
            return self._number_accuracy_per_image(idx, cfg)
        d = self.dets
        # as evaluate() compares: the float32 score, as a double, against the threshold
        idx = idx[above_threshold(d.scores[idx].astype(np.float32), cfg.score_thresh)]
        image = d.image[idx]
        order = np.lexsort((d.boxes[idx, 0], image))  # by image, then x_min (stable)
        idx, image = idx[order], image[order]
        value = np.full(self.num_images, -1, dtype=np.int64)
        overflow = np.zeros(self.num_images, dtype=bool)
        if idx.size:
            pos = _rank_in_runs(image)
            value[np.unique(image)] = 0
            digits = d.labels[idx] - 1
            for p in range(int(pos.max()) + 1):
                at = pos == p
                img = image[at]
                overflow[img] |= value[img] >= _MAX_EXACT
                value[img] = np.where(overflow[img], value[img], value[img] * 10 + digits[at])
        # a number of more than 17 significant digits never equals a house number
        right = (value == self.gt_number) & ~overflow
        return float(right.sum()) / self.num_images

    def _number_accuracy_per_image(self, idx: np.ndarray, cfg: EvalConfig) -> float:
        d = self.dets
        bounds = np.searchsorted(d.image[idx], np.arange(self.num_images + 1))
        right = 0
        for i in range(self.num_images):
            sel = idx[bounds[i] : bounds[i + 1]]
            det = Detections(
                int(self.image_ids[i]),
                d.boxes[sel].astype(np.float32),
                d.scores[sel].astype(np.float32),
                d.labels[sel],
            )
            truth = read_number(self.gt_boxes[i], self.gt_labels[i])
            right += int(predicted_number(det, cfg) == truth)
        return right / self.num_images


def _nms_overlaps(boxes: np.ndarray) -> np.ndarray:
    """(B, M, M) IoU of B sets of M float32 xyxy boxes, in the float32 operations of
    torchvision's CPU NMS kernel: ``inter / (area_i + area_j - inter)``."""
    x1, y1, x2, y2 = (boxes[..., k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    zero = np.float32(0)
    w = np.minimum(x2[:, :, None], x2[:, None]) - np.maximum(x1[:, :, None], x1[:, None])
    h = np.minimum(y2[:, :, None], y2[:, None]) - np.maximum(y1[:, :, None], y1[:, None])
    inter = np.maximum(zero, w) * np.maximum(zero, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area[:, :, None] + area[:, None] - inter)


def _float32_below(value: float) -> np.float32:
    """The largest float32 <= ``value``: for a float32 x, ``x > value`` (the kernel compares
    a float with a double) is exactly ``x > _float32_below(value)``."""
    low = np.float32(value)
    return np.nextafter(low, np.float32(-np.inf)) if float(low) > value else low


def _interpolated_precision(tp_positions: np.ndarray, nd: int, npig: int) -> np.ndarray:
    """pycocotools' 101-point interpolated precision of one category at one IoU threshold,
    from the sorted positions of the true positives among its ``nd`` detections.

    A false positive never raises precision, so the running maximum from the end is attained
    at true positives; the values are computed with pycocotools' float operations.
    """
    q = np.zeros(len(REC_THRS))
    if nd == 0 or tp_positions.size == 0:
        return q
    count = np.arange(1, tp_positions.size + 1)
    tp = count.astype(dtype=float)
    fp = (tp_positions + 1 - count).astype(dtype=float)
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(rc, REC_THRS, side="left")
    valid = inds < len(rc)
    q[valid] = pr[inds[valid]]
    return q


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal consecutive keys."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.r_[True, keys[1:] != keys[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))
    return np.arange(len(keys)) - start
