"""The results table of launched runs (``run``, ``run --launcher slurm --wait``): one row per
variant x seed, where the runs are, the best one registered on request, and the exit status."""

from __future__ import annotations

import sys
from typing import Any

from digitexp.cli.output import EXIT_FAILED, EXIT_OK, fmt, runs_url_line, table


def print_outcomes(
    outcomes: Any, store: Any, experiment: str, *, register: str | None = None
) -> int:
    """The results table, where the runs are, and the exit status: 1 when a run did not
    finish. ``register``: register the best finished run under this model name."""
    rows = []
    for o in outcomes:
        r = o.result
        rows.append(
            [
                o.plan.variant,
                o.plan.seed,
                fmt(r.best_val_map if r else None),
                fmt(r.val["number_acc"] if r else None),
                r.epochs if r else "–",
                f"{o.minutes:.1f}",
                o.status,
                o.run_id[:8],
            ]
        )
    header = ["variant", "seed", "best val mAP", "val Task-2", "epochs", "min", "status", "run"]
    print(table(rows, header))
    if register:
        _register_best(store, outcomes, register)
    print(f"\nstore: {store.masked_uri}")
    print(runs_url_line(store, experiment))
    if not store.uri.startswith(("http://", "https://")):
        print("(serve the UI first: make ui, or python -m digitexp ui)")
    failed = [o for o in outcomes if o.status != "FINISHED"]
    for o in failed:
        print(f"error: {o.plan.name} ({o.run_id}): {o.error}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _register_best(store: Any, outcomes: Any, name: str) -> None:
    """Register the best finished run of this invocation (highest best val mAP)."""
    from digitexp.engine.serving import register_run

    finished = [o for o in outcomes if o.status == "FINISHED" and o.result is not None]
    if not finished:
        print(f"\nnothing registered as {name}: no run finished")
        return
    best = max(finished, key=lambda o: o.result.best_val_map)
    registered = register_run(store, best.run_id, name)
    print(
        f"\nregistered {best.plan.name} ({best.run_id[:8]}, best val mAP "
        f"{best.result.best_val_map:.4f}) as {registered.model_uri}"
    )
