"""One epoch of the report's seed configuration (ResNet-50 FPN, 512/1024, batch 8) on
synthetic data: a smoke test of the full-size path on a GPU (weights from the torch hub cache
when there, else from scratch). Last line: a JSON object with the epoch's figures."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from digitexp.config import apply_overrides, seed_config
from digitexp.data.synth import generate
from digitexp.engine import fit
from digitexp.errors import WeightsError
from digitexp.model import check_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--valid", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seed_epoch_") as tmp:
        root = Path(tmp) / "data"
        generate(root, {"train": args.train, "valid": args.valid}, seed=7, progress=False)
        overrides = {
            "data.root": str(root),
            "data.cache_images": True,
            "data.group_by_aspect_ratio": True,
            "train.epochs": 1,
            "train.device": args.device,
            "train.channels_last": True,
            "train.workers": -1,
            "train.log_every": 50,
        }
        cfg = apply_overrides(seed_config(), overrides)
        try:
            check_weights(cfg.model)
            weights = "DEFAULT"
        except WeightsError as exc:
            print(f"no pretrained weights here ({exc}); training from scratch")
            cfg = apply_overrides(cfg, {"model.weights": "none"})
            weights = "none"
        start = time.perf_counter()
        result = fit(cfg, workdir=Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - start
    history = result.history
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "weights": weights,
        "train_images": args.train,
        "train_loss": round(history["train_loss"][0], 4),
        "train_images_per_s": round(history["train_images_per_s"][0], 1),
        "epoch_seconds": round(history["epoch_seconds"][0], 1),
        "val_map": round(result.val["map"], 4),
        "total_seconds": round(seconds, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
