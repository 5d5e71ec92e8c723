"""``search RUN_ID``: Optuna search of the RoI heads' thresholds on a trained run."""

from __future__ import annotations

import argparse
from typing import Any

from digitexp.cli.output import EXIT_OK, positive_int, runs_url_line, seed_int


def cmd_search(args: argparse.Namespace) -> int:
    from digitexp.search import SearchRequest, parse_space, run_search
    from digitexp.tracking import TrackingStore, mask_uri

    request = SearchRequest(
        run_id=args.run_id,
        trials=args.trials,
        objective=args.objective,
        sampler=args.sampler,
        seed=args.seed,
        space=parse_space(args.space),
        storage=args.storage,
        study=args.study,
        split=args.split,
        cap=args.cap,
        device=args.device,
        batch_size=args.batch_size,
        data_root=args.data,
    )
    store = TrackingStore()
    outcome = run_search(request, store)
    how = (
        f"reused from search run {outcome.reused_cache}"
        if outcome.reused_cache
        else (f"one inference pass, {outcome.inference_seconds:.1f} s")
    )
    print(
        f"study {outcome.study} in {mask_uri(outcome.storage)}: {outcome.trials_new} new trial(s),"
        f" {outcome.trials_total} in all; candidates: {how}; "
        f"{outcome.trial_seconds * 1000:.1f} ms per trial"
    )
    d = outcome.defaults
    print(f"spec's thresholds: val mAP {d['map']:.4f}, val Task-2 {d['number_acc']:.4f}")
    for choice in outcome.choices:
        m = choice.metrics
        print(
            f"{choice.label} (trial {choice.number}): val mAP {m['map']:.4f}, val Task-2 "
            f"{m['number_acc']:.4f}\n  {choice.set_line()}"
        )
    print(f"MLflow run {outcome.run_id} (under the run it searched)")
    print(runs_url_line(store, outcome.experiment))
    print(f"watch the study: optuna-dashboard {mask_uri(outcome.storage)}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("search", help="Optuna search of NMS / score thresholds on a trained run")
    p.add_argument("run_id", help="a training run (child run) with checkpoints/best.pt")
    p.add_argument(
        "--trials", type=positive_int, default=200, help="new trials to run (default 200)"
    )
    p.add_argument("--objective", choices=["map", "number_acc", "both"], default="both")
    p.add_argument("--sampler", choices=["tpe", "grid", "qmc"], default="tpe")
    p.add_argument("--seed", type=seed_int, help="sampler seed (repeatable single-process search)")
    p.add_argument(
        "--space",
        nargs="*",
        metavar="KEY=LOW:HIGH[:STEP]",
        help="e.g. box_nms_thresh=0.1:0.9 box_score_thresh=0.0:0.95 (step 0.01)",
    )
    p.add_argument("--storage", help="Optuna storage URL (default: optuna.db beside the store)")
    p.add_argument("--study", help="study name (default: thresholds-RUN-SPLIT-OBJECTIVE)")
    p.add_argument("--split", help="default: the run's validation split")
    p.add_argument(
        "--cap", type=positive_int, default=300, help="candidates kept per image (default 300)"
    )
    p.add_argument("--device", help="device for the one inference pass")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size")
    p.add_argument("--data", help="data root, if it moved since training")
    p.set_defaults(func=cmd_search)
