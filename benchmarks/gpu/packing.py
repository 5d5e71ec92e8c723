"""Concurrent runs on one machine: aggregate training images/s of 1, 2, 4 ... runs at once.

Each run is its own process with its own Trainer (as several ``run`` commands or queue workers
would be), on the same synthetic set. The processes build their trainers and warm up; side by
side they gauge their speed; then, started together, each trains about ``--seconds`` worth of
steps in whole epochs (each ``train_epoch`` call counts the runs and sets its threads); the
aggregate is every image over the union of their windows. ``--threads`` sets ``train.threads``
in every run: ``auto`` (the allotment of digitexp/engine/cpus.py), ``torch`` (torch's own
default, every core in every run: how runs behaved before the allotment), or a number.

On a GPU (the kit's "packing" part): how many runs to put on one card. On the CPU (``make
bench``: the demo config, 1 and 2 runs, ``--threads torch,auto``): what the CPU allotment does
to two runs side by side. Last line: a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.gpu import common
from digitexp.config import TrainConfig
from digitexp.data import load_data
from digitexp.engine import Trainer


def barrier(folder: Path, stage: str, n: int) -> None:
    """Wait until the ``n`` runs reached ``stage``."""
    (folder / f"{os.getpid()}.{stage}").touch()
    deadline = time.monotonic() + 900
    while len(list(folder.glob(f"*.{stage}"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the other runs never reached {stage}")
        time.sleep(0.01)


def worker(args: argparse.Namespace) -> None:
    """One run: build and warm up; with the others, gauge its speed; then, all together,
    train about ``--seconds`` worth of steps (whole ``train_epoch`` calls, as a run does)."""
    device = common.device_of(args.device)
    overrides: dict[str, object] = {
        **common.limits(args.images, 8, 8),
        "train.batch_size": args.batch_size,
        "train.log_every": 1000,
    }
    if args.threads == "torch":
        if "threads" in {f.name for f in dataclasses.fields(TrainConfig)}:
            overrides["train.threads"] = torch.get_num_threads()  # torch's default, untouched
    else:
        overrides["train.threads"] = args.threads if args.threads == "auto" else int(args.threads)
    cfg = common.experiment(args.model, args.data, device, args.weights, overrides)
    ready = Path(args.ready)
    with tempfile.TemporaryDirectory(prefix="packing-") as tmp:
        trainer = Trainer(cfg, load_data(cfg.data), Path(tmp), progress=False)
        trainer.train_epoch(1, steps=args.warmup)
        barrier(ready, "warm", args.n)
        gauge = trainer.train_epoch(2, steps=args.warmup)["train_images_per_s"]
        target = max(args.warmup, round(args.seconds * gauge / cfg.train.batch_size))
        barrier(ready, "go", args.n)
        images, done, epoch = 0, 0, 2
        start = time.time()  # wall clock: the parent compares the runs' windows
        while done < target:
            epoch += 1
            steps = min(target - done, trainer.steps_per_epoch)
            images += common.batch_images(trainer, epoch, steps)
            trainer.train_epoch(epoch, steps=steps)
            done += steps
        end = time.time()
        threads, workers = torch.get_num_threads(), trainer.workers
    print(
        json.dumps(
            {"images": images, "start": start, "end": end, "threads": threads, "workers": workers}
        )
    )


def measure(args: argparse.Namespace, root: Path, n: int, threads: str) -> dict[str, object]:
    """Start ``n`` runs at once; their aggregate images/s."""
    with tempfile.TemporaryDirectory(prefix="packing-ready-") as ready:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.gpu.packing",
            "--worker",
            "--ready",
            ready,
            "--n",
            str(n),
            "--threads",
            threads,
            "--data",
            str(root),
            "--device",
            args.device,
            "--model",
            args.model,
            "--weights",
            args.weights,
            "--images",
            str(args.images),
            "--batch-size",
            str(args.batch_size),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
        ]
        procs = [
            subprocess.Popen(cmd, cwd=common.REPO, stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        codes = [p.returncode for p in procs]
        raise SystemExit(f"{n} runs, threads {threads}: a run failed (exit codes {codes})")
    runs = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    rates = [r["images"] / (r["end"] - r["start"]) for r in runs]
    window = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {
        # every image over the union of the windows: a run that ends early does not inflate it
        "aggregate": round(sum(r["images"] for r in runs) / window, 2),
        "window_seconds": round(window, 1),
        "per_run": [round(r, 2) for r in rates],
        "threads": [r["threads"] for r in runs],
        "workers": [r["workers"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--runs", default="1,2,4", help="how many runs at once, e.g. 1,2,4")
    parser.add_argument("--threads", default="auto", help="train.threads: auto, torch, N (list)")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="about how long the runs train together"
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (median)")
    parser.add_argument("--images", type=int, default=2000, help="training images per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5, help="warm-up (and gauge) steps")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    device = common.device_of(args.device)
    counts = [int(x) for x in args.runs.split(",")]
    modes = args.threads.split(",")
    with tempfile.TemporaryDirectory(prefix="packing-data-") as tmp:
        root = common.data_root(args.data, {"train": args.images, "valid": 8, "test": 8}, Path(tmp))
        table: dict[str, dict[int, list[dict[str, object]]]] = {
            m: {n: [] for n in counts} for m in modes
        }
        for r in range(args.rounds):
            for mode in modes:
                for n in counts:
                    got = measure(args, root, n, mode)
                    table[mode][n].append(got)
                    common.say(
                        f"round {r + 1}, threads {mode}, {n} run(s): {got['aggregate']} "
                        f"images/s (per run {got['per_run']}, threads {got['threads']}, "
                        f"workers {got['workers']})"
                    )
    figures: dict[str, object] = {
        "device": common.device_name(device),
        "model": args.model,
        "cpus": common.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": args.seconds,
        "rounds": args.rounds,
        "unit": "images/s (sum over the runs)",
    }
    for mode in modes:
        medians = {n: common.median([m["aggregate"] for m in table[mode][n]]) for n in counts}
        figures[f"threads_{mode}"] = {
            str(n): {
                "aggregate": round(medians[n], 2),
                "vs_one_run": round(medians[n] / medians[counts[0]], 3),
                "threads": table[mode][n][-1]["threads"],
                "workers": table[mode][n][-1]["workers"],
            }
            for n in counts
        }
    if len(modes) == 2 and len(counts) > 1:
        before, after = modes
        n = counts[-1]
        figures[f"{after}_vs_{before}_{n}_runs"] = round(
            figures[f"threads_{after}"][str(n)]["aggregate"]  # type: ignore[index]
            / figures[f"threads_{before}"][str(n)]["aggregate"],  # type: ignore[index]
            3,
        )
    common.emit(figures)


if __name__ == "__main__":
    main()
