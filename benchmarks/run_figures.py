"""What the figures every training run logs (figures/curves.png, figures/val_predictions.png)
add to a run, against one training epoch of the same run, on the demo preset.

A synthetic set (train/valid as given) trains one epoch with the demo preset (the reference),
then the run's figures are drawn exactly as :class:`digitexp.figures.hook.RunFigures` draws
them, from that epoch's history and validation detections. Last line: a JSON object whose
``ratio`` is figure seconds / epoch seconds (the demo trains 5 epochs per run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from digitexp import presets
from digitexp.config import apply_overrides, seed_config
from digitexp.data import load_data
from digitexp.data.synth import generate
from digitexp.engine import Trainer
from digitexp.figures import curves, predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--valid", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate(root, {"train": args.train, "valid": args.valid}, seed=0, progress=False)
        cfg = apply_overrides(seed_config(), {**presets.DEMO, "data.root": str(root)})
        trainer = Trainer(cfg, load_data(cfg.data), Path(tmp) / "work", progress=False)
        start = time.perf_counter()
        metrics = trainer.train_epoch(1)
        val, detections = trainer.validate()
        epoch = time.perf_counter() - start
        metrics.update({f"val_{k}": v for k, v in val.items()})
        trainer.remember(metrics)
        by_id = {d.image_id: d for d in detections}
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            curves.draw(trainer.history, 1, Path(tmp) / f"c{i}.png", "benchmark")
            predictions.draw(
                trainer.sets["valid"].split, by_id, cfg.eval, Path(tmp) / f"p{i}.png", "benchmark"
            )
            times.append(time.perf_counter() - start)
        figures = statistics.median(times)
        sizes = [(Path(tmp) / f"{k}0.png").stat().st_size for k in ("c", "p")]
    result = {
        "benchmark": "run_figures",
        "train_images": args.train,
        "valid_images": args.valid,
        "epoch_seconds": round(epoch, 2),
        "figures_seconds": round(figures, 2),
        "ratio": round(figures / epoch, 3),
        "share_of_a_5_epoch_run": round(figures / (5 * epoch + figures), 3),
        "png_kb": [round(s / 1024) for s in sizes],
    }
    print(f"one demo epoch {epoch:.1f} s; the run's figures {figures:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
