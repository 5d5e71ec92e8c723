"""How long `digitexp report` takes over a store of 100 runs x 20 epochs.

Builds a throw-away sqlite MLflow store holding 100 finished training runs (spread over the
seven specs' variants and seeds, 20 epochs of every per-epoch metric each), then times
``report.generate`` (reading runs, bulk metric histories, tables and curve figures). For
reference it also times the naive read: one ``get_metric_history`` call per metric per run.
Last line: a JSON object with ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from digitexp import report
from digitexp.report.selection import HISTORY_KEYS
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

REPO = Path(__file__).resolve().parents[1]
KEYS = names.EPOCH_METRICS


def populate(uri: str, runs: int, epochs: int) -> list[str]:
    client = MlflowClient(uri)
    specs = report.load_specs(REPO / "ablations")
    slots = [(s, v, seed) for s in specs for v in s.variants for seed in range(10)]
    slots = sorted(slots, key=lambda t: (t[2], t[0].name, t[1]))[:runs]
    parents: dict[str, str] = {}
    ids = []
    for i, (spec, variant, seed) in enumerate(slots):
        if spec.name not in parents:
            exp = client.get_experiment_by_name(spec.name)
            exp_id = exp.experiment_id if exp else client.create_experiment(spec.name)
            parents[spec.name] = client.create_run(exp_id).info.run_id
        exp_id = client.get_experiment_by_name(spec.name).experiment_id
        tags = {
            names.PARENT_TAG: parents[spec.name],
            names.TAG_SPEC: spec.name,
            names.TAG_VARIANT: variant,
            names.TAG_SEED: str(seed),
            names.TAG_PRESET: "bench",
            names.TAG_KIND: names.KIND_TRAIN,
        }
        rid = client.create_run(exp_id, tags=tags, run_name=f"{variant}/s{seed}").info.run_id
        metrics = [
            Metric(k, 0.3 + 0.01 * ((i + e + j) % 17), 1000 + e, e)
            for e in range(1, epochs + 1)
            for j, k in enumerate(KEYS)
        ]
        metrics += [
            Metric(names.BEST_VAL_MAP, 0.4 + 0.001 * i, 5000, 0),
            Metric(names.BEST_EPOCH, float(epochs - 2), 5000, 0),
            Metric(names.FINAL_TRAIN_LOSS, 0.2, 5000, 0),
        ]
        for k in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[k : k + 1000])
        client.log_batch(rid, params=[Param("data.root", "/nonexistent")])
        client.set_terminated(rid, "FINISHED")
        ids.append(rid)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        t = time.perf_counter()
        ids = populate(uri, args.runs, args.epochs)
        setup = time.perf_counter() - t
        store = TrackingStore(uri)
        t = time.perf_counter()
        summary = report.generate(store, Path(tmp) / "reports", ablations=REPO / "ablations")
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        for rid in ids:
            for key in HISTORY_KEYS:
                store.client.get_metric_history(rid, key)
        naive_history = time.perf_counter() - t
        t = time.perf_counter()
        store.metric_histories(ids, HISTORY_KEYS)
        bulk_history = time.perf_counter() - t
    print(f"populated {len(ids)} runs x {args.epochs} epochs in {setup:.1f} s")
    print(f"report: {summary.runs} runs counted in {seconds:.2f} s")
    print(
        json.dumps(
            {
                "runs": summary.runs,
                "epochs": args.epochs,
                "seconds": round(seconds, 3),
                "history_bulk_seconds": round(bulk_history, 3),
                "history_per_metric_seconds": round(naive_history, 3),
                "history_ratio": round(naive_history / bulk_history, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
