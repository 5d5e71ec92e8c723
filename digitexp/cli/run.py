"""``show SPEC`` and ``run SPEC``: a spec's variants, and training them into MLflow."""

from __future__ import annotations

import argparse
from typing import Any

from digitexp.cli import slurm
from digitexp.cli.outcomes import print_outcomes
from digitexp.cli.output import (
    EXIT_OK,
    add_config_args,
    fmt,
    overrides,
    positive_float,
    seed_int,
)
from digitexp.errors import ConfigError


def cmd_show(args: argparse.Namespace) -> int:
    from digitexp.config import flatten
    from digitexp.spec import load_spec

    spec = load_spec(args.spec, preset=args.preset, sets=overrides(args))
    print(f"{spec.name}: {spec.question}")
    print(f"file {spec.path} · seeds {', '.join(map(str, spec.seeds))} · preset {args.preset}")
    for name, variant in spec.variants.items():
        flat = flatten(spec.config(name))
        report = f"   (report: {variant.report_run})" if variant.report_run else ""
        print(f"\nvariant {name}{report}")
        if args.resolved:
            for key, value in flat.items():
                print(f"  {key} = {value!r}")
        else:
            for key in variant.overrides:
                print(f"  {key} = {flat[key]!r}")
            if not variant.overrides:
                print("  (BASE as is)")
        if variant.published:
            parts = [f"{k} {fmt(v)}" for k, v in variant.published.items()]
            print(f"  published: {' · '.join(parts)}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from digitexp.config import flatten
    from digitexp.launch import plan_runs
    from digitexp.spec import load_spec
    from digitexp.tracking.models import model_name_problem

    slurm.check_arguments(args)
    sets = overrides(args)
    spec = load_spec(args.spec, preset=args.preset, sets=sets)
    seeds = list(dict.fromkeys(args.seed)) if args.seed else None
    variants = list(dict.fromkeys(args.variant)) if args.variant else None
    plans = plan_runs(spec, variants=variants, seeds=seeds)
    experiment = args.experiment or spec.name
    if args.launcher == "slurm":
        return slurm.run_slurm(args, spec, plans, experiment, sets)
    if args.dry_run:
        from digitexp.tracking import default_uri, mask_uri

        print(f"would run {len(plans)} run(s) of {spec.path} into experiment {experiment!r}")
        print(f"store: {mask_uri(default_uri())}")
        if args.preset:
            print(f"preset {args.preset} applies before each variant's overrides")
        if sets:
            print("--set: " + ", ".join(f"{k}={v!r}" for k, v in sets.items()))
        for plan in plans:
            flat = flatten(plan.cfg)
            keys = spec.variants[plan.variant].overrides
            shown = ", ".join(f"{k}={flat[k]!r}" for k in keys) or "BASE as is"
            print(f"  {plan.name}: {shown}")
        return EXIT_OK
    from digitexp.engine import distributed

    ctx = distributed.from_env()
    try:
        if ctx is not None and (args.resume is not None or args.queue):
            raise ConfigError("--resume and --queue under torchrun: use one process per worker")
        if args.queue and args.resume is not None:
            raise ConfigError("--queue resumes by itself: drop --resume")
        if args.register is not None and (problem := model_name_problem(args.register)):
            raise ConfigError(f"--register {args.register!r}: {problem}")
        if ctx is not None and not ctx.is_main:
            from digitexp.launch import follow

            follow(plans, ctx)
            return EXIT_OK
        return _run_main(args, spec, plans, experiment, ctx)
    finally:
        distributed.shutdown()


def _run_main(args: argparse.Namespace, spec: Any, plans: Any, experiment: str, ctx: Any) -> int:
    from digitexp.tracking import TrackingStore

    store = TrackingStore()
    if args.queue:
        from digitexp.launch import work

        outcomes = work(
            args.queue,
            plans,
            store,
            experiment=experiment,
            heartbeat=args.heartbeat,
            poll=min(5.0, args.heartbeat),
        )
    elif args.resume is not None:
        from digitexp.launch import resume

        outcomes = resume(spec, store, experiment=experiment, run_ids=args.resume, plans=plans)
    else:
        from digitexp.launch import execute

        outcomes = execute(plans, store, experiment=experiment, ctx=ctx)
    return print_outcomes(outcomes, store, experiment, register=args.register)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="train a spec's variants x seeds, logged to MLflow")
    p.add_argument("spec", help="spec file, e.g. ablations/anchors.py (spec files are code)")
    p.add_argument("--variant", action="append", help="only this variant (repeatable)")
    p.add_argument(
        "--seed", action="append", type=seed_int, help="only this seed (repeatable), 0..2**32-1"
    )
    add_config_args(p)
    p.add_argument("--experiment", help="MLflow experiment (default: the spec's name)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run (with --launcher slurm: the job script), run nothing",
    )
    p.add_argument(
        "--resume",
        nargs="*",
        metavar="RUN_ID",
        help="continue these unfinished runs from their last checkpoint (no id: every "
        "unfinished run of the spec's latest invocation)",
    )
    p.add_argument(
        "--queue",
        metavar="STORAGE_URL",
        help="work through the variants x seeds as a shared Optuna queue (e.g. "
        "postgresql://user@host/db); start this on any number of machines",
    )
    p.add_argument(
        "--register",
        metavar="NAME",
        help="register the best finished run's checkpoint as a new version of MLflow model "
        "NAME (load it with mlflow.pyfunc.load_model('models:/NAME/VERSION'))",
    )
    p.add_argument(
        "--heartbeat",
        type=positive_float,
        default=60.0,
        help="queue: seconds between heartbeats; a worker silent for 3x this is retried",
    )
    slurm.add_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("show", help="print a spec's question, variants and published numbers")
    p.add_argument("spec")
    add_config_args(p)
    p.add_argument("--resolved", action="store_true", help="each variant's full config")
    p.set_defaults(func=cmd_show)
