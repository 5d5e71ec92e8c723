"""A trained run as a model to serve: its best checkpoint called on images, and registered in
MLflow's model registry as a pyfunc model that ``mlflow.pyfunc.load_model`` loads.

    model = mlflow.pyfunc.load_model("models:/digits/1")
    model.predict(["house.png", rgb_array])      # -> pandas DataFrame, one row per detection

Input: image file paths, RGB uint8 arrays (H, W, 3), a batch array (N, H, W, 3), or a pandas
DataFrame with an ``image`` column of either. Output columns: ``image`` (the input's index),
``x``, ``y``, ``w``, ``h`` (COCO box in the image's pixels), ``score``, ``category_id``
(1..10) and ``digit`` (0..9): the detections of the model as trained (its own score and NMS
thresholds), the best checkpoint's weights.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitexp.config import apply_overrides
from digitexp.data.categories import digit_of
from digitexp.data.transforms import decode_image, prepare_batch, static_transform, to_tensor
from digitexp.engine.checkpoints import checkpoint_config, load_checkpoint
from digitexp.engine.trained import download_best_checkpoint
from digitexp.errors import DigitexpError, WeightsError, first_line
from digitexp.model import build_model
from digitexp.tracking import TrackingStore

COLUMNS = ("image", "x", "y", "w", "h", "score", "category_id", "digit")


class ServingError(DigitexpError):
    """Images a served model cannot read."""


class Predictor:
    """A checkpoint on the CPU, called on images (see the module's docstring)."""

    def __init__(self, checkpoint: Path) -> None:
        state = load_checkpoint(checkpoint)
        cfg = checkpoint_config(state, checkpoint)
        self.cfg = apply_overrides(cfg, {"model.weights": "none", "train.device": "cpu"})
        try:
            self.model = build_model(self.cfg.model)
            self.model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise WeightsError(
                f"{checkpoint}: the weights do not fit the model its config describes "
                f"({first_line(exc)[:160]})"
            ) from None
        self.model.eval()

    def _image(self, item: Any) -> np.ndarray:
        if isinstance(item, str | Path):
            rgb = decode_image(Path(item))
        else:
            rgb = np.asarray(item)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ServingError(
                    f"an image array must be RGB uint8 of shape (H, W, 3), got {rgb.dtype} "
                    f"{rgb.shape}"
                )
            if not rgb.flags.writeable:  # torch wants writable memory (np.asarray of a PIL image)
                rgb = rgb.copy()
        return static_transform(rgb, self.cfg.data)

    def _items(self, images: Any) -> Sequence[Any]:
        if hasattr(images, "columns"):  # a pandas DataFrame
            if "image" not in images.columns:
                raise ServingError("a DataFrame input needs an 'image' column (paths or arrays)")
            return list(images["image"])
        if isinstance(images, np.ndarray) and images.ndim == 3:
            return [images]
        if isinstance(images, str | Path):
            return [images]
        return list(images)

    @torch.inference_mode()
    def __call__(self, images: Any) -> Any:
        import pandas as pd

        items = self._items(images)
        rows: list[tuple[Any, ...]] = []
        batch_size = self.cfg.train.eval_batch_size
        device = torch.device("cpu")
        for start in range(0, len(items), batch_size):
            chunk = [to_tensor(self._image(i)) for i in items[start : start + batch_size]]
            outputs = self.model(prepare_batch(chunk, device, self.cfg.data.pre_normalize))
            for offset, out in enumerate(outputs):
                boxes = out["boxes"].float().numpy()
                for (x1, y1, x2, y2), score, label in zip(
                    boxes, out["scores"].tolist(), out["labels"].tolist(), strict=True
                ):
                    w, h = float(x2 - x1), float(y2 - y1)
                    rows.append(
                        (start + offset, float(x1), float(y1), w, h, score, label, digit_of(label))
                    )
        return pd.DataFrame(rows, columns=list(COLUMNS))


def load_predictor(checkpoint: str) -> Predictor:
    """What the registered pyfunc model calls when MLflow loads it."""
    return Predictor(Path(checkpoint))


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    model_uri: str  # models:/NAME/VERSION


def register_run(store: TrackingStore, run_id: str, name: str) -> Registered:
    """Log run ``run_id``'s best checkpoint as an MLflow pyfunc model of that run and register
    it as a new version of model ``name``."""
    from digitexp.tracking.models import log_checkpoint_model

    run = store.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="digitexp-register-") as tmp:
        path = download_best_checkpoint(store, run, Path(tmp))
        Predictor(path)  # refuse a checkpoint that does not load before anything is logged
        version = log_checkpoint_model(
            store,
            run_id,
            name,
            path,
            load_predictor,
            package=Path(__file__).resolve().parents[1],
            description=f"digitexp detector: {run.experiment} / {run.name}",
        )
    return Registered(name, version, run_id, f"models:/{name}/{version}")
