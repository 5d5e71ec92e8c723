"""``run SPEC --launcher slurm`` (its flags, the submission, ``--wait``) and ``slurm-task``, the
command every array task runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from digitexp.cli.outcomes import print_outcomes
from digitexp.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from digitexp.errors import ConfigError

SLURM_FLAGS = (
    "partition",
    "gpus_per_task",
    "cpus_per_task",
    "mem",
    "time",
    "account",
    "qos",
    "max_parallel",
    "signal_lead",
    "sbatch",
    "wait",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--launcher`` and the Slurm flags of ``run``."""
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: train here, one run after another (default); slurm: submit the variants "
        "x seeds as one Slurm job array and return",
    )
    g = p.add_argument_group("Slurm (--launcher slurm; each maps to an #SBATCH line)")
    g.add_argument("--partition", help="--partition")
    g.add_argument(
        "--gpus-per-task",
        type=int,
        metavar="N",
        help="--gpus-per-task; N > 1 trains each run with DDP under torchrun inside its task",
    )
    g.add_argument("--cpus-per-task", type=int, metavar="N", help="--cpus-per-task")
    g.add_argument("--mem", metavar="SIZE", help="--mem, per node (e.g. 16G)")
    g.add_argument("--time", metavar="HH:MM:SS", help="--time, the limit of each task")
    g.add_argument("--account", help="--account")
    g.add_argument("--qos", help="--qos")
    g.add_argument("--max-parallel", type=int, metavar="K", help="--array=0-N%%K: K tasks at once")
    g.add_argument(
        "--signal-lead",
        type=int,
        metavar="S",
        help="--signal=B:USR1@S: warn S seconds before the time limit (default 120); the task "
        "then stops at a safe point and requeues itself",
    )
    g.add_argument(
        "--sbatch",
        action="append",
        metavar="OPTION",
        help="any other sbatch option, e.g. --sbatch=--constraint=a100 (repeatable)",
    )
    g.add_argument(
        "--slurm-dir",
        default="slurm",
        metavar="DIR",
        help="where job folders go (job.sh, manifest.json, logs/); on the shared file system "
        "(default: ./slurm)",
    )
    g.add_argument(
        "--wait",
        action="store_true",
        help="follow the job until every task ended, then print the results table",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Slurm flags without ``--launcher slurm`` are a mistake, not something to ignore."""
    if args.launcher == "slurm":
        return
    given = [f for f in SLURM_FLAGS if getattr(args, f) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} is a Slurm option: add --launcher slurm")


def options_of(args: argparse.Namespace) -> Any:
    from digitexp.launch.slurm import SlurmOptions

    lead = {} if args.signal_lead is None else {"signal_lead": args.signal_lead}
    return SlurmOptions(
        partition=args.partition,
        gpus_per_task=args.gpus_per_task or 0,
        cpus_per_task=args.cpus_per_task,
        mem=args.mem,
        time=args.time,
        account=args.account,
        qos=args.qos,
        max_parallel=args.max_parallel,
        extra=tuple(args.sbatch or ()),
        **lead,
    )


def shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_slurm(
    args: argparse.Namespace,
    spec: Any,
    plans: Any,
    experiment: str,
    sets: dict[str, Any],
) -> int:
    """Submit (or with ``--dry-run`` print) the job array; with ``--wait``, follow it."""
    from digitexp.launch import slurm
    from digitexp.tracking import TrackingStore, default_uri, mask_uri

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--launcher slurm under torchrun: submit from one process")
    if args.resume is not None or args.queue:
        raise ConfigError(
            "--launcher slurm submits new runs: drop --resume/--queue (a requeued task "
            "resumes by itself; see the job script for running tasks again)"
        )
    options = options_of(args)
    root = Path(args.slurm_dir)
    if args.dry_run:
        script = slurm.preview(
            plans,
            experiment=experiment,
            options=options,
            sets=sets,
            tracking_uri=default_uri(),
            root=root,
        )
        print(script, end="")
        print(
            f"dry run: nothing submitted ({len(plans)} task(s), store {mask_uri(default_uri())})",
            file=sys.stderr,
        )
        return EXIT_OK
    store = TrackingStore()
    sub = slurm.submit(plans, store, experiment=experiment, options=options, sets=sets, root=root)
    variants = len({p.variant for p in plans})
    seeds = len({p.seed for p in plans})
    print(
        f"submitted Slurm job {sub.job_id}: {len(plans)} task(s) of {spec.path} "
        f"({variants} variant(s) x {seeds} seed(s)) into experiment {experiment!r}"
    )
    print(f"job folder:  {shown(sub.folder)}  (job.sh, manifest.json, logs/)")
    print(f"parent run:  {sub.manifest.parent_run_id} · store: {store.masked_uri}")
    print(f"follow:      squeue -j {sub.job_id}")
    print(f"logs:        {shown(sub.log_path())}")
    print(f"runs:        python -m digitexp runs --experiment {experiment}")
    if not args.wait:
        return EXIT_OK
    try:
        outcomes = slurm.follow(sub.manifest, spec, store)
    except KeyboardInterrupt:
        print(
            f"stopped following; Slurm job {sub.job_id} goes on (squeue -j {sub.job_id})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print()
    return print_outcomes(outcomes, store, experiment)


def cmd_slurm_task(args: argparse.Namespace) -> int:
    from digitexp.engine import distributed, preemption
    from digitexp.launch.slurm import read_manifest, run_task

    # Slurm's warning (--signal=B:USR1@S): stop at the next safe point and requeue
    signal.signal(signal.SIGUSR1, preemption.request_stop)
    manifest = read_manifest(Path(args.folder).resolve())
    os.chdir(manifest.workdir)  # where `run` was called: relative paths mean the same
    ctx = distributed.from_env()
    try:
        result = run_task(manifest, args.task, ctx=ctx)
    finally:
        distributed.shutdown()
    if ctx is not None and not ctx.is_main:
        return EXIT_OK
    name, run = result.entry.name, result.run_id
    if result.preempted:
        if result.requeued:
            print(f"{name}: preempted, requeued (run {run} resumes after its last epoch)")
            return EXIT_OK
        print(
            f"{name}: preempted, not requeued; resume with: sbatch --array={result.entry.task} "
            f"{Path(args.folder) / 'job.sh'}  (or run --resume {run})"
        )
        return EXIT_INTERRUPTED
    if result.outcome is None:
        print(f"{name}: already finished (run {run})")
        return EXIT_OK
    print(f"{name}: {result.outcome.status} (run {run})")
    if result.outcome.status != "FINISHED":
        print(f"error: {name} ({run}): {result.outcome.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "slurm-task",
        help="train one task of a Slurm job array (what job.sh runs; runnable by hand)",
    )
    p.add_argument("folder", help="the job folder (slurm/<spec>-<time>/)")
    p.add_argument(
        "--task",
        type=int,
        help="the array task id (default: SLURM_ARRAY_TASK_ID); runs it here, in the folder "
        "the job was submitted from",
    )
    p.set_defaults(func=cmd_slurm_task)
