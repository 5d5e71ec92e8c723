"""COCO mAP@[.5:.95], AP50 and AP75 (bbox, maxDets 100) through pycocotools or faster-coco-eval."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

from digitexp.config import CocoBackend
from digitexp.errors import ConfigError


def coco_map(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], backend: CocoBackend
) -> dict[str, float]:
    """mAP@[.5:.95], AP50, AP75 (bbox, maxDets 100) through pycocotools or faster-coco-eval."""
    if not results or not gt.get("annotations"):
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        match backend:
            case "pycocotools":
                from pycocotools.coco import COCO
                from pycocotools.cocoeval import COCOeval

                coco_gt = COCO()
                coco_gt.dataset = dict(gt)
                coco_gt.createIndex()
                coco_dt = coco_gt.loadRes(list(results))
                evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
            case "faster_coco_eval":
                try:
                    from faster_coco_eval import COCO as FastCOCO
                    from faster_coco_eval import COCOeval_faster
                except ImportError:
                    raise ConfigError(
                        "eval.coco_backend=faster_coco_eval needs the package: "
                        "pip install 'digitexp[fast]'"
                    ) from None
                coco_gt = FastCOCO(dict(gt))
                coco_dt = coco_gt.loadRes(list(results))
                evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}
