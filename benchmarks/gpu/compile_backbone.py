"""``train.compile_backbone``: the trainer with torch.compile of the backbone, on and off.

Off first, then on, in one process, the same config and batches: images/s after a warm-up
(median of ``--rounds`` timed chunks) for each, and for compile on the time of its first
``--warmup`` steps (compilation, recompilations as new image sizes arrive) against the same
steps uncompiled. ``train.compile_backbone`` applies on CUDA only (the CPU dry run measures the
uncompiled path twice). The default of ``train.compile_backbone`` follows ``speedup`` here.
Last line: a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.gpu import common
from digitexp.data import load_data
from digitexp.engine import Trainer


def measure(trainer: Trainer, warmup: int, steps: int, rounds: int) -> tuple[float, list[float]]:
    """Seconds of the first ``warmup`` steps, and images/s of each timed round after them."""
    common.sync(trainer.device)
    start = time.perf_counter()
    trainer.train_epoch(1, steps=warmup)
    common.sync(trainer.device)
    first = time.perf_counter() - start
    rates = [common.steady_rate(trainer, 2 + 2 * r, 5, steps) for r in range(rounds)]
    return first, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=20, help="steps before timing")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = common.device_of(args.device)
    results = {}
    with tempfile.TemporaryDirectory(prefix="compile-") as tmp:
        root = common.data_root(args.data, {"train": args.images, "valid": 8, "test": 8}, Path(tmp))
        data = None
        for on in (False, True):
            overrides = {
                **common.limits(args.images, 8, 8),
                "train.compile_backbone": on,
                "train.log_every": 50,
            }
            cfg = common.experiment(args.model, root, device, args.weights, overrides)
            data = data or load_data(cfg.data)
            trainer = Trainer(cfg, data, Path(tmp) / f"run-{on}", progress=False)
            first, rates = measure(trainer, args.warmup, args.steps, args.rounds)
            trainer.close()
            results[on] = (first, common.median(rates), rates)
            common.say(
                f"compile {'on' if on else 'off'}: first {args.warmup} steps {first:.1f} s, "
                f"then {results[on][1]:.1f} images/s {[round(r, 1) for r in rates]}"
            )
    off, on = results[False], results[True]
    common.emit(
        {
            "device": common.device_name(device),
            "model": args.model,
            "applies": device.type == "cuda",
            "images_per_s_off": round(off[1], 2),
            "images_per_s_on": round(on[1], 2),
            "speedup": round(on[1] / off[1], 3),
            "first_steps": args.warmup,
            "first_steps_seconds_off": round(off[0], 1),
            "first_steps_seconds_on": round(on[0], 1),
            "compile_seconds_estimate": round(max(0.0, on[0] - off[0]), 1),
            "rounds_off": [round(x, 2) for x in off[2]],
            "rounds_on": [round(x, 2) for x in on[2]],
        }
    )


if __name__ == "__main__":
    main()
