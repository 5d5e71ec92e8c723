"""Concurrent runs on one machine: aggregate training images/s of 1, 2, 4 ... runs at once.

Each run is its own process with its own Trainer (as several ``run`` commands or queue workers
would be), on the same synthetic set. The processes build their trainers, warm up, wait for
each other, then train for ``--seconds`` in short chunks; the aggregate is the sum of their
images/s over that common window. ``--threads`` sets ``train.threads`` in every run: ``auto``
(the allotment of digitexp/engine/cpus.py), ``torch`` (torch's own default, every core in
every run: how runs behaved before the allotment), or a number.

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


def worker(args: argparse.Namespace) -> None:
    """One run: build, warm up, wait for the others, train for the window, print JSON."""
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
    with tempfile.TemporaryDirectory(prefix="packing-") as tmp:
        trainer = Trainer(cfg, load_data(cfg.data), Path(tmp), progress=False)
        trainer.train_epoch(1, steps=args.warmup)
        ready = Path(args.ready)
        (ready / f"{os.getpid()}.ready").touch()
        deadline = time.monotonic() + 600
        while len(list(ready.glob("*.ready"))) < args.n:
            if time.monotonic() > deadline:
                raise SystemExit("the other runs never became ready")
            time.sleep(0.01)
        chunk = max(1, min(args.chunk, trainer.steps_per_epoch - 1 or 1))
        images, epoch = 0, 1
        common.sync(device)
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            epoch += 1
            trainer.sampler.set_epoch(epoch)
            batches = iter(trainer.sampler)  # the chunk's batches, to count its images
            images += sum(len(next(batches)) for _ in range(chunk))
            trainer.train_epoch(epoch, steps=chunk)
        common.sync(device)
        seconds = time.perf_counter() - start
        threads, workers = torch.get_num_threads(), trainer.workers
    print(
        json.dumps({"images": images, "seconds": seconds, "threads": threads, "workers": workers})
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
            "--chunk",
            str(args.chunk),
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
    rates = [r["images"] / r["seconds"] for r in runs]
    return {
        "aggregate": round(sum(rates), 2),
        "per_run": [round(r, 2) for r in rates],
        "threads": [r["threads"] for r in runs],
        "workers": [r["workers"] for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--runs", default="1,2,4", help="how many runs at once, e.g. 1,2,4")
    parser.add_argument("--threads", default="auto", help="train.threads: auto, torch, N (list)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the timed window")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (median)")
    parser.add_argument("--images", type=int, default=2000, help="training images per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps")
    parser.add_argument("--chunk", type=int, default=10, help="steps per trainer call")
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
