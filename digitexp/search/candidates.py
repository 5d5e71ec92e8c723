"""Cached candidate detections of a trained run: the network runs once over a split.

The RoI heads' thresholds act only after the network. So the network runs once with the score
threshold at 0, no NMS and a generous per-image cap, and each image's candidates (boxes,
scores, labels, in torchvision's order) are cached; :mod:`.replay` then applies any threshold
pair to them. Small boxes (< 1e-2) are removed here, as ``postprocess_detections`` does,
since that step does not depend on the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from digitexp.common import files
from digitexp.common.progress import Progress
from digitexp.data import DigitDataset
from digitexp.data.transforms import prepare_batch
from digitexp.engine.inference import eval_loader
from digitexp.engine.runtime import autocast
from digitexp.errors import DigitexpError
from digitexp.metrics import PoolDetections

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

        return files.write_with(path, write)

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
