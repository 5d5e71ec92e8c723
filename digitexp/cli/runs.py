"""``runs``: every training run with its true state, and how to resume the unfinished."""

from __future__ import annotations

import argparse
import time
from typing import Any

from digitexp.cli.output import EXIT_OK, table


def cmd_runs(args: argparse.Namespace) -> int:
    from digitexp.tracking import TrackingStore, run_state
    from digitexp.tracking import contract as names

    store = TrackingStore()
    experiments = [args.experiment] if args.experiment else None
    runs = [
        r
        for r in store.runs(experiments)
        if r.tag(names.TAG_KIND, names.KIND_TRAIN) == names.KIND_TRAIN and r.parent_id
    ]
    if not runs:
        where = f"experiment {args.experiment!r}" if args.experiment else store.masked_uri
        print(f"no training runs in {where}")
        return EXIT_OK
    rows, resumable = [], []
    on_slurm = any(run.tag(names.TAG_SLURM_JOB) for run in runs)
    for run in runs:
        state = run_state(run)
        text = state.name + (f": {state.reason[:60]}" if state.reason else "")
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.start_time / 1000))
        rows.append(
            [run.run_id, run.experiment, run.name, text, run.tag(names.TAG_EPOCH) or "–", started]
        )
        if on_slurm:  # the Slurm array job and task that trained it: JOB_TASK
            job, task = run.tag(names.TAG_SLURM_JOB), run.tag(names.TAG_SLURM_TASK)
            rows[-1].append(f"{job}_{task}" if job and task else "–")
        if state.name in ("failed", "killed", "stale"):
            spec = run.tag(names.TAG_SPEC) or run.experiment
            spec_path = run.tag(names.TAG_SPEC_PATH) or f"ablations/{spec}.py"
            where = "" if run.experiment == spec else f" --experiment {run.experiment}"
            resumable.append(f"python -m digitexp run {spec_path}{where} --resume {run.run_id}")
    header = ["run id", "experiment", "name", "state", "epochs", "started"]
    print(table(rows, header + ["slurm"] * on_slurm))
    if resumable:
        print("\nto resume:")
        for line in resumable:
            print(f"  {line}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("runs", help="list training runs with their true state (stale, failed...)")
    p.add_argument("--experiment", help="only this MLflow experiment")
    p.set_defaults(func=cmd_runs)
