"""The whole suite's time on one device, projected from measured figures.

The suite is every spec in ``ablations/``, every variant x seed, each for its configured
epochs (``train.epochs``: 20) with no early stop. One run costs ``epochs x (HW2 train split /
images per second at its batch size + validation of the HW2 valid split)`` plus its fixed
cost (start, data checks, image cache, test predictions, error analysis), as measured by the
kit's end-to-end part. Variants are assumed to cost what the final config costs at the same
batch size (anchors, thresholds and RoI levels change little of the work; the ``color`` and
``binary`` preprocessing add CPU work that the loader workers absorb).

``python -m benchmarks.gpu.suite --rate8 250 --rate4 180 --valid-seconds 12 --run-overhead 60``
prints the projection; the kit computes it from its own figures.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from benchmarks.gpu import common
from digitexp.launch import plan_runs
from digitexp.spec import load_spec

ABLATIONS = common.REPO / "ablations"


def suite_runs(folder: Path = ABLATIONS) -> list[dict[str, object]]:
    """Every run of the suite: spec, variant, seed, epochs, batch size."""
    runs = []
    for path in sorted(folder.glob("*.py")):
        for plan in plan_runs(load_spec(path)):
            runs.append(
                {
                    "spec": plan.spec.name,
                    "variant": plan.variant,
                    "seed": plan.seed,
                    "epochs": plan.cfg.train.epochs,
                    "batch_size": plan.cfg.train.batch_size,
                }
            )
    return runs


def project(
    rates: dict[int, float],
    valid_seconds: float,
    run_overhead: float,
    runs: list[dict[str, object]] | None = None,
) -> dict[str, object]:
    """Hours for the whole suite on one device, one run at a time. ``rates``: training
    images/s by batch size (a batch size without a rate takes the nearest one's)."""
    runs = suite_runs() if runs is None else runs
    train = common.HW2["train"]
    total = 0.0
    epochs = 0
    for run in runs:
        batch = int(run["batch_size"])  # type: ignore[arg-type]
        rate = rates.get(batch) or rates[min(rates, key=lambda b: abs(b - batch))]
        n = int(run["epochs"])  # type: ignore[arg-type]
        epochs += n
        total += n * (train / rate + valid_seconds) + run_overhead
    by_batch = Counter(int(r["batch_size"]) for r in runs)  # type: ignore[arg-type]
    return {
        "runs": len(runs),
        "epochs": epochs,
        "runs_by_batch_size": {str(b): c for b, c in sorted(by_batch.items())},
        "hw2_epoch_seconds": {
            str(b): round(train / r + valid_seconds, 1) for b, r in sorted(rates.items())
        },
        "hours_one_run_at_a_time": round(total / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate8", type=float, required=True, help="images/s at batch 8")
    parser.add_argument("--rate4", type=float, help="images/s at batch 4 (default: rate8)")
    parser.add_argument("--valid-seconds", type=float, required=True)
    parser.add_argument("--run-overhead", type=float, default=0.0)
    args = parser.parse_args()
    rates = {8: args.rate8, 4: args.rate4 or args.rate8}
    common.emit(project(rates, args.valid_seconds, args.run_overhead))


if __name__ == "__main__":
    main()
