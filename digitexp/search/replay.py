"""torchvision's ``RoIHeads.postprocess_detections`` replayed on cached candidates, for any
pair of thresholds, fast and exactly.

For a threshold pair, :meth:`PostprocessReplay.select` does what torchvision does:

1. keep scores > ``box_score_thresh``;
2. (small boxes were removed when the cache was built);
3. per-class greedy NMS at ``box_nms_thresh`` in descending score order;
4. keep the first ``box_detections_per_img``;

and the boxes come back rescaled to the original image size as ``GeneralizedRCNNTransform``
does. Greedy NMS over a score-sorted list decides each box from the boxes before it only, so
a trial only looks at the same-class pairs whose later box passes the score threshold. It is
computed for all images at once by the Cluster-NMS fixed point (Zheng et al. 2020), which is
exactly greedy NMS, with each pair's IoU computed in torchvision's float32 operations on the
coordinates its ``batched_nms`` would use. The result equals torchvision's CPU
post-processing wherever the cap does not bind (up to the order of exactly tied scores):
:meth:`PostprocessReplay.capped_images` counts the images where the cap might bind.
"""

from __future__ import annotations

import numpy as np

from digitexp.metrics import Detections
from digitexp.search.candidates import CandidateCache

VANILLA_NMS_ABOVE = 1000  # torchvision's CPU batched_nms: per-class loop above 4000 numbers


def _kernel_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box pairs (float32) in the operations of torchvision's CPU NMS kernel."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    zero = np.float32(0)
    w = np.maximum(zero, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    h = np.maximum(zero, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = w * h
    return inter / (area_a + area_b - inter)


def _segment_starts(image: np.ndarray, images: int) -> np.ndarray:
    return np.searchsorted(image, np.arange(images + 1))


class PostprocessReplay:
    """Applies (score, NMS) threshold pairs to a :class:`CandidateCache`, fast and exactly.

    Per trial, only the same-class pairs whose later box passes the score threshold are
    looked at, with their IoU computed as torchvision's ``batched_nms`` computes it for that
    set of boxes (coordinates offset per class by the largest coordinate, below 1000 boxes;
    plain per-class NMS above).
    """

    def __init__(self, cache: CandidateCache, detections_per_img: int, min_nms: float = 0.0):
        self.cache = cache
        self.k = detections_per_img
        self.min_nms = min_nms
        self.n = len(cache.scores)
        self.num_images = len(cache.image_ids)
        self.bounds = _segment_starts(cache.image, self.num_images)
        self._prefix_max()
        self._edges()

    def _band(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Per pair, a bound on |IoU on offset coordinates - plain IoU|: offsets reach
        10 x (largest coordinate + 1), where float32 spacing is ``ulp``; an IoU moves by at
        most a few ulp over the shortest side of the two boxes (thin boxes move most)."""
        c = self.cache
        top = float(c.boxes.max()) if self.n else 0.0
        ulp = float(np.spacing(np.float32(11 * (top + 1))))
        sides = np.minimum(
            np.minimum(c.boxes[src, 2] - c.boxes[src, 0], c.boxes[src, 3] - c.boxes[src, 1]),
            np.minimum(c.boxes[dst, 2] - c.boxes[dst, 0], c.boxes[dst, 3] - c.boxes[dst, 1]),
        ).astype(np.float64)
        return 8 * ulp / np.maximum(sides, 1e-6) + 1e-6

    def _prefix_max(self) -> None:
        """Per candidate: the largest coordinate among its image's candidates up to it."""
        c = self.cache
        top = c.boxes.max(axis=1).astype(np.float64) if self.n else np.zeros(0)
        lift = c.image.astype(np.float64) * 1e7  # coordinates are < 1e7: segments stay apart
        self.prefix_max = (np.maximum.accumulate(top + lift) - lift).astype(np.float32)

    def _edges(self) -> None:
        """Same-image, same-class pairs (earlier -> later in score order) that could ever
        suppress, ordered by the later box's score (descending): the pairs of a trial are a
        prefix. Each keeps its plain IoU; the IoU torchvision computes on offset coordinates
        differs from it by float rounding only, so it is recomputed only near a threshold."""
        c = self.cache
        group = c.image * 16 + c.labels
        order = np.lexsort((np.arange(self.n), group))  # by group, keeping score order
        sorted_group = group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
        ends = np.r_[starts[1:], self.n]
        src_parts, dst_parts = [], []
        for s, e in zip(starts, ends, strict=True):
            m = e - s
            if m < 2:
                continue
            i, j = np.triu_indices(m, k=1)
            src_parts.append(order[s + i])
            dst_parts.append(order[s + j])
        if src_parts:
            src = np.concatenate(src_parts)
            dst = np.concatenate(dst_parts)
            plain = _kernel_iou(c.boxes[src], c.boxes[dst])
            band = self._band(src, dst)
            keep = plain.astype(np.float64) + band > self.min_nms  # may suppress at some NMS
            src, dst, plain, band = src[keep], dst[keep], plain[keep], band[keep]
        else:
            src = dst = np.zeros(0, dtype=np.int64)
            plain = np.zeros(0, dtype=np.float32)
            band = np.zeros(0)
        by_dst = np.argsort(dst, kind="stable")  # candidate index order = score order per image
        by_score = by_dst[np.argsort(-c.scores[dst[by_dst]], kind="stable")]
        self.src = src[by_score].astype(np.int64)
        self.dst = dst[by_score].astype(np.int64)
        self.plain_iou = plain[by_score].astype(np.float64)
        self.band = band[by_score]
        self.dst_score = c.scores[self.dst]

    @property
    def edges(self) -> int:
        return len(self.src)

    def _suppresses(
        self, active: int, passes: np.ndarray, nms: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The active pairs (src, dst) whose earlier box suppresses the later one at ``nms``:
        decided by the plain IoU where it is surely on one side, computed exactly near it."""
        plain, band = self.plain_iou[:active], self.band[:active]
        hits = plain - band > nms
        near = np.flatnonzero((plain + band > nms) & ~hits)
        if near.size:
            hits[near] = self._exact_iou(near, passes) > float(nms)
        return self.src[:active][hits], self.dst[:active][hits]

    def _exact_iou(self, pairs: np.ndarray, passes: np.ndarray) -> np.ndarray:
        """IoU of the given pairs as torchvision's batched_nms computes it for the boxes that
        pass: coordinates offset by label * (largest coordinate + 1) below 1000 boxes."""
        c = self.cache
        src, dst = self.src[pairs], self.dst[pairs]
        count = np.bincount(c.image[passes], minlength=self.num_images)
        image = c.image[dst]
        last = self.bounds[image] + count[image] - 1
        trick = count[image] <= VANILLA_NMS_ABOVE
        offset = np.where(
            trick,
            c.labels[dst].astype(np.float32) * (self.prefix_max[last] + np.float32(1)),
            np.float32(0),
        ).astype(np.float32)[:, None]
        iou = _kernel_iou(c.boxes[src] + offset, c.boxes[dst] + offset)
        return iou.astype(np.float64)

    def select(self, score_thresh: float, nms_thresh: float) -> np.ndarray:
        """Mask of the candidates torchvision would return with these thresholds."""
        if nms_thresh < self.min_nms:
            raise ValueError(f"box_nms_thresh {nms_thresh} is below this engine's {self.min_nms}")
        c = self.cache
        s = np.float32(score_thresh)
        passes = c.scores > s
        active = int(np.searchsorted(-self.dst_score, -s, side="left"))
        src, dst = self._suppresses(active, passes, nms_thresh)
        keep = passes.copy()
        while True:  # Cluster-NMS: iterate to the fixed point, which is greedy NMS
            suppressed = np.zeros(self.n, dtype=bool)
            suppressed[dst[keep[src]]] = True
            new = passes & ~suppressed
            if np.array_equal(new, keep):
                break
            keep = new
        rank = np.cumsum(keep)
        before = np.r_[0, rank][self.bounds[:-1]]  # kept candidates of earlier images
        return keep & ((rank - 1 - before[c.image]) < self.k)

    def capped_images(self, score_thresh: float) -> int:
        """Images where the cap may have changed the result of :meth:`select`: the cache was
        truncated and its last candidate passes the score threshold, so boxes beyond the cap
        pass too (they could be returned, and they change the NMS offsets and the box count
        that picks torchvision's NMS path)."""
        c = self.cache
        last = self.bounds[1:] - 1
        last_passes = np.zeros(self.num_images, dtype=bool)
        has = self.bounds[1:] > self.bounds[:-1]
        last_passes[has] = c.scores[last[has]] > np.float32(score_thresh)
        return int((c.truncated & last_passes).sum())

    def detections(self, score_thresh: float, nms_thresh: float) -> list[Detections]:
        """The selected detections per image, as the model would return them."""
        c = self.cache
        mask = self.select(score_thresh, nms_thresh)
        out = []
        bounds = self.bounds
        for i, image_id in enumerate(c.image_ids):
            sel = np.flatnonzero(mask[bounds[i] : bounds[i + 1]]) + bounds[i]
            out.append(
                Detections(int(image_id), c.boxes_original[sel], c.scores[sel], c.labels[sel])
            )
        return out
