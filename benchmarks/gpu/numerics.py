"""Numerics of mixed precision: the trainer in bf16 autocast against fp32 on the same batches.

Two trainers from the same seed (same initial weights, same batches: a run's batches depend
only on its seed and the epoch) train ``--steps`` steps each, one step per call, the loss read
back every step. The fp32 side turns TF32 off (a true fp32 reference). The agreement:

- no non-finite loss on either side;
- the first step (same weights, same batch: only rounding differs, and the proposals sampled
  from it) within ``--first-tol`` relative difference;
- the mean loss over the last ``--window`` steps within ``--window-tol`` relative difference
  (the two trajectories part as training goes; their level should not).

On the CPU there is no autocast (digitexp runs the CPU in fp32), so both sides are fp32: the
dry run checks the kit, not the numerics. Last line: a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.gpu import common
from digitexp.config import ExperimentConfig
from digitexp.data import DataBundle, load_data
from digitexp.engine import Trainer
from digitexp.errors import TrainingError


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for matrix products and convolutions, restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def losses(
    cfg: ExperimentConfig, data: DataBundle, steps: int, workdir: Path
) -> tuple[list[float], str]:
    """The loss of each of the first ``steps`` steps (NaN from a non-finite step on)."""
    trainer = Trainer(cfg, data, workdir, progress=False)
    amp = str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32"
    out: list[float] = []
    try:
        for step in range(1, steps + 1):
            try:
                out.append(trainer.train_epoch(step, steps=1)["train_loss"])
            except TrainingError:
                out += [math.nan] * (steps - len(out))
                break
            if step % 50 == 0:
                common.say(f"{amp}: step {step}, loss {out[-1]:.4f}")
    finally:
        trainer.close()
    return out, amp


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--images", type=int, default=2000, help="training images")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--window", type=int, default=50, help="steps averaged at the end")
    parser.add_argument("--first-tol", type=float, default=0.05)
    parser.add_argument("--window-tol", type=float, default=0.10)
    args = parser.parse_args()
    device = common.device_of(args.device)
    with tempfile.TemporaryDirectory(prefix="numerics-") as tmp:
        root = common.data_root(args.data, {"train": args.images, "valid": 8, "test": 8}, Path(tmp))
        # the loader in the main process: the batches are the same either way, and a worker
        # pool started for every one-step call would cost more than the step
        overrides = {**common.limits(args.images, 8, 8), "train.workers": 0, "train.log_every": 1}
        mixed_cfg = common.experiment(args.model, root, device, args.weights, overrides)
        fp32_cfg = common.experiment(
            args.model, root, device, args.weights, {**overrides, "train.amp": False}
        )
        data = load_data(mixed_cfg.data)
        with strict_fp32():
            reference, _ = losses(fp32_cfg, data, args.steps, Path(tmp) / "fp32")
        mixed, amp = losses(mixed_cfg, data, args.steps, Path(tmp) / "amp")
    finite = {
        "fp32": all(math.isfinite(x) for x in reference),
        amp if amp != "fp32" else "amp": all(math.isfinite(x) for x in mixed),
    }
    window = min(args.window, args.steps)
    first_rel = relative(mixed[0], reference[0])
    end_mixed = sum(mixed[-window:]) / window
    end_ref = sum(reference[-window:]) / window
    window_rel = relative(end_mixed, end_ref)
    start = min(20, args.steps)
    figures: dict[str, object] = {
        "device": common.device_name(device),
        "model": args.model,
        "weights": mixed_cfg.model.weights,
        "amp": amp,
        "steps": args.steps,
        "finite": finite,
        "first_step_loss": {"amp": round(mixed[0], 5), "fp32": round(reference[0], 5)},
        "first_step_relative_difference": round(first_rel, 5),
        "first_step_tolerance": args.first_tol,
        f"last_{window}_mean_loss": {"amp": round(end_mixed, 5), "fp32": round(end_ref, 5)},
        "last_window_relative_difference": round(window_rel, 5),
        "last_window_tolerance": args.window_tol,
        f"first_{start}_mean_loss": {
            "amp": round(sum(mixed[:start]) / start, 5),
            "fp32": round(sum(reference[:start]) / start, 5),
        },
        "agree": all(finite.values())
        and first_rel <= args.first_tol
        and window_rel <= args.window_tol,
        "loss_amp": [round(x, 5) for x in mixed],
        "loss_fp32": [round(x, 5) for x in reference],
        "tf32_in_fp32_reference": False,
    }
    common.emit(figures)


if __name__ == "__main__":
    main()
