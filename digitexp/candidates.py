"""Cached candidate detections of a trained run, and torchvision's post-processing on them.

The RoI heads' thresholds act only after the network. So the network runs once over a split
with the score threshold at 0, no NMS and a generous per-image cap, and each image's
candidates (boxes, scores, labels, in torchvision's order) are cached. A threshold pair then
costs only :class:`ThresholdEngine.select`, which does what ``RoIHeads.postprocess_detections``
does with those thresholds:

1. keep scores > ``box_score_thresh``;
2. remove boxes smaller than 1e-2 (done once, when the cache is built: it does not depend on
   the thresholds);
3. per-class greedy NMS at ``box_nms_thresh`` in descending score order;
4. keep the first ``box_detections_per_img``;

and the boxes are rescaled to the original image size as ``GeneralizedRCNNTransform`` does.

Greedy NMS over a score-sorted list decides each box from the boxes before it only, so a
trial only looks at the same-class pairs whose later box passes the score threshold. It is
computed for all images at once by the Cluster-NMS fixed point (Zheng et al. 2020), which is
exactly greedy NMS, with each pair's IoU computed in torchvision's float32 operations on the
coordinates its ``batched_nms`` would use. The result equals torchvision's CPU
post-processing wherever the cap does not bind (up to the order of exactly tied scores):
:meth:`ThresholdEngine.capped_images` counts the images where the cap might bind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from digitexp import fsutil
from digitexp.data.coco import DigitDataset
from digitexp.data.transforms import prepare_batch
from digitexp.errors import DigitexpError
from digitexp.evaluate import Detections
from digitexp.fasteval import PoolDetections
from digitexp.predict import autocast, eval_loader
from digitexp.progress import Progress

CACHE_VERSION = 1


@dataclass(frozen=True)
class CandidateCache:
    """Every image's candidates, image-major (ascending image id), descending score inside.

    ``boxes`` are in the network's input (resized) coordinates, where torchvision runs NMS;
    ``boxes_original`` are the same boxes rescaled to the original image, as returned.
    """

    image_ids: np.ndarray  # (I,) ascending
    image: np.ndarray  # (N,) index into image_ids
    boxes: np.ndarray  # (N, 4) float32, resized coordinates
    boxes_original: np.ndarray  # (N, 4) float32, original coordinates
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64, 1..10
    truncated: np.ndarray  # (I,) bool: the image had more candidates than the cap
    cap: int

    def save(self, path: Path) -> Path:
        def write(fh: object) -> None:
            np.savez_compressed(
                fh,
                version=np.array(CACHE_VERSION),
                image_ids=self.image_ids,
                image=self.image,
                boxes=self.boxes,
                boxes_original=self.boxes_original,
                scores=self.scores,
                labels=self.labels,
                truncated=self.truncated,
                cap=np.array(self.cap),
            )

        return fsutil.write_with(path, write)

    @classmethod
    def load(cls, path: Path) -> CandidateCache:
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["version"]) != CACHE_VERSION:
                    raise DigitexpError(f"{path}: candidate cache of another version")
                return cls(
                    image_ids=data["image_ids"],
                    image=data["image"],
                    boxes=data["boxes"],
                    boxes_original=data["boxes_original"],
                    scores=data["scores"],
                    labels=data["labels"],
                    truncated=data["truncated"],
                    cap=int(data["cap"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise DigitexpError(f"{path}: not a candidate cache ({exc})") from None

    def pool(self) -> PoolDetections:
        return PoolDetections(
            image=self.image,
            boxes=self.boxes_original.astype(np.float64),
            scores=self.scores.astype(np.float64),
            labels=self.labels,
        )


# --------------------------------------------------------------------------- the one pass


def _candidates(
    model: FasterRCNN,
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: list[torch.Tensor],
    image_shapes: list[tuple[int, int]],
    cap: int,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]]:
    """RoIHeads.postprocess_detections with score threshold 0 and no NMS, top ``cap``."""
    heads = model.roi_heads
    num_classes = class_logits.shape[-1]
    pred_boxes = heads.box_coder.decode(box_regression, proposals)
    pred_scores = F.softmax(class_logits, -1)
    per_image = [p.shape[0] for p in proposals]
    out = []
    for boxes, scores, shape in zip(
        pred_boxes.split(per_image, 0), pred_scores.split(per_image, 0), image_shapes, strict=True
    ):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
        boxes, scores, labels = boxes[:, 1:], scores[:, 1:], labels[:, 1:]
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
        inds = torch.where(scores > 0.0)[0]
        boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        # the order NMS walks: descending score, stable (as torchvision's NMS kernel sorts)
        order = torch.sort(scores, stable=True, descending=True)[1]
        truncated = bool(order.numel() > cap)
        order = order[:cap]
        out.append((boxes[order], scores[order], labels[order], truncated))
    return out


@torch.inference_mode()
def build_cache(
    model: FasterRCNN,
    dataset: DigitDataset,
    *,
    device: torch.device,
    cap: int,
    batch_size: int,
    pre_normalize: bool,
    amp_dtype: torch.dtype | None = None,
    workers: int = 0,
    progress: bool | None = None,
) -> CandidateCache:
    """Run the network once over ``dataset`` and cache every image's candidates."""
    model.eval()
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = {}
    loader = eval_loader(dataset, batch_size, workers, pin=device.type == "cuda")
    with Progress(len(dataset), "candidates", enabled=progress, unit="img") as bar:
        for images, targets in loader:
            batch = prepare_batch(images, device, pre_normalize)
            original = [tuple(img.shape[-2:]) for img in batch]
            with autocast(device, amp_dtype):
                inputs, _ = model.transform(batch)
                features = model.backbone(inputs.tensors)
                proposals, _ = model.rpn(inputs, features)
                heads = model.roi_heads
                feats = heads.box_roi_pool(features, proposals, inputs.image_sizes)
                logits, regression = heads.box_predictor(heads.box_head(feats))
            found = _candidates(
                model, logits.float(), regression.float(), proposals, inputs.image_sizes, cap
            )
            for (boxes, scores, labels, truncated), size, orig, target in zip(
                found, inputs.image_sizes, original, targets, strict=True
            ):
                rescaled = resize_boxes(boxes, size, orig)
                rows[int(target["image_id"])] = (
                    boxes.float().cpu().numpy(),
                    rescaled.float().cpu().numpy(),
                    scores.float().cpu().numpy(),
                    labels.cpu().numpy().astype(np.int64),
                    truncated,
                )
            bar.update(len(images))
    return _assemble(rows, cap)


def _assemble(
    rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]], cap: int
) -> CandidateCache:
    ids = sorted(rows)
    parts = [rows[i] for i in ids]
    counts = [len(p[2]) for p in parts]
    return CandidateCache(
        image_ids=np.array(ids, dtype=np.int64),
        image=np.repeat(np.arange(len(ids)), counts).astype(np.int64),
        boxes=np.concatenate([p[0] for p in parts]).reshape(-1, 4).astype(np.float32),
        boxes_original=np.concatenate([p[1] for p in parts]).reshape(-1, 4).astype(np.float32),
        scores=np.concatenate([p[2] for p in parts]).astype(np.float32),
        labels=np.concatenate([p[3] for p in parts]).astype(np.int64),
        truncated=np.array([p[4] for p in parts], dtype=bool),
        cap=cap,
    )


# --------------------------------------------------------------------------- trials


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


class ThresholdEngine:
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


def image_ids_of(dataset: DigitDataset) -> Sequence[int]:
    return sorted(r.id for r in dataset.split.images)
