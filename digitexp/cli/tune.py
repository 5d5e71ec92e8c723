"""``tune SPEC --space KEY=SPACE ...``: an Optuna study over training settings, each trial a
nested MLflow run, hopeless trials pruned from their per-epoch validation metric."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from digitexp.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    add_config_args,
    fmt,
    overrides,
    runs_url_line,
    table,
)


def cmd_tune(args: argparse.Namespace) -> int:
    from digitexp.spec import load_spec
    from digitexp.tracking import TrackingStore, default_uri, mask_uri
    from digitexp.tracking import contract as names
    from digitexp.tune import TuneRequest, plan_tune, tune
    from digitexp.tune.space import value_text

    sets = overrides(args)
    spec = load_spec(args.spec, preset=args.preset, sets=sets)
    request = TuneRequest(
        space=tuple(args.space),
        trials=args.trials,
        objective=args.objective,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        study=args.study,
        variant=args.variant,
        experiment=args.experiment,
        sampler_seed=args.sampler_seed,
        startup_trials=args.startup_trials,
        warmup_epochs=args.warmup_epochs,
        heartbeat=args.heartbeat,
        sets=sets,
    )
    plan = plan_tune(spec, request, default_uri())  # every check, before anything exists
    print(f"study {plan.study} in {mask_uri(plan.storage)}")
    print(f"space: {plan.space.text()} · pruner {plan.pruner} · sampler {args.sampler}")
    store = TrackingStore()
    outcome = tune(plan, request, store)
    keys = outcome.space.keys
    rows = []
    for r in outcome.records:
        state = r.state.lower() + (f" {r.note}" if r.state == "PRUNED" and r.note else "")
        if r.retry_of is not None:
            state += f" (retry of {r.retry_of})"
        rows.append(
            [
                r.number,
                *(value_text(r.values[k]) for k in keys),
                fmt(r.val_map),
                fmt(r.val_number_acc),
                r.epochs,
                f"{r.minutes:.1f}",
                state,
                (r.run_id or "–")[:8],
            ]
        )
    header = ["trial", *keys, "val mAP", "val Task-2", "epochs", "min", "state", "run"]
    print(table(rows, header))
    t = outcome.totals
    print(
        f"\nstudy {outcome.study}: {outcome.trials_total} trial(s) in all: "
        f"{t[names.TRIALS_COMPLETE]:.0f} complete, {t[names.TRIALS_PRUNED]:.0f} pruned, "
        f"{t[names.TRIALS_FAILED]:.0f} failed; pruning left {t[names.EPOCHS_PRUNED]:.0f} "
        f"epoch(s) untrained (about {t[names.PRUNED_SECONDS] / 60:.1f} min of "
        f"{t[names.TRAIN_SECONDS] / 60:.1f} min trained)"
    )
    for best in outcome.best:
        print(
            f"{best.label}: trial {best.number} (val mAP {fmt(best.val_map)}, val Task-2 "
            f"{fmt(best.val_number_acc)})\n  {best.set_line()}\n  {best.variant_line()}"
        )
    print(f"MLflow run of the study: {outcome.parent_run} (experiment {outcome.experiment})")
    print(runs_url_line(store, outcome.experiment))
    print(f"watch the study: optuna-dashboard {mask_uri(outcome.storage)}")
    failed = [r for r in outcome.records if r.state == "FAIL"]
    for r in failed:
        print(f"error: trial {r.number} ({r.run_id or 'no run'}): {r.note}", file=sys.stderr)
    if outcome.records and len(failed) == len(outcome.records):
        return EXIT_FAILED
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="Optuna search over training settings: each trial a nested MLflow run, pruned "
        "from its per-epoch val metric",
    )
    p.add_argument("spec", help="spec file (spec files are code); trials start from its BASE")
    p.add_argument(
        "--space",
        action="extend",
        nargs="+",
        required=True,
        metavar="KEY=SPACE",
        help="e.g. train.lr=log:1e-5:1e-2 train.batch_size=int:2:8 "
        "'train.scheduler=choice:step|cosine' 'model.anchor_sizes=choice:(4,8,16,32,64)|"
        "(4,8,12,24,48)' (float:LOW:HIGH[:STEP], log:LOW:HIGH, int:LOW:HIGH[:STEP], choice:A|B)",
    )
    p.add_argument("--trials", type=int, default=20, help="new trials for this worker (default 20)")
    p.add_argument("--objective", choices=["map", "number_acc", "both"], default="map")
    p.add_argument("--sampler", choices=["tpe", "random", "qmc", "grid"], default="tpe")
    p.add_argument(
        "--pruner",
        choices=["median", "hyperband", "none"],
        help="default: median (none with --objective both: Optuna cannot prune two objectives)",
    )
    p.add_argument(
        "--startup-trials",
        type=int,
        default=3,
        dest="startup_trials",
        help="median: prune only once this many trials completed (default 3)",
    )
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=1,
        dest="warmup_epochs",
        help="never prune during a trial's first N epochs (default 1)",
    )
    p.add_argument("--sampler-seed", type=int, dest="sampler_seed", help="repeatable sampling")
    p.add_argument("--storage", help="Optuna storage URL (default: optuna.db beside the store)")
    p.add_argument("--study", help="study name (default: tune-SPEC-VARIANT-OBJECTIVE-HASH)")
    p.add_argument("--variant", help="start from this variant's config (default: the spec's BASE)")
    add_config_args(p)
    p.add_argument("--experiment", help="MLflow experiment of a new study (default: the spec's)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--heartbeat",
        type=float,
        default=60.0,
        help="seconds between trial heartbeats; a trial silent for 3x this is retried",
    )
    p.set_defaults(func=cmd_tune)
