"""Metric histories of many runs at once, for the report (100 runs x 20 epochs in seconds).

MLflow's public client has no bulk read: ``MlflowClient.get_metric_history`` asks for one run
and one key per call, one round trip each. Its stores do have bulk readers, reachable only
through the client's private ``_tracking_client.store``: the SQLAlchemy store (sqlite,
PostgreSQL) answers ``get_metric_history_bulk`` with one SQL query, and the REST store (a
tracking server) has ``get_metric_history_bulk_interval``. This module is the one place that
touches that private attribute; ``tests/test_tracking.py`` fails loudly when a new MLflow moves
it, so the report never silently drops to one call per run and key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from digitexp.tracking.records import last_per_step

History = dict[str, dict[str, list[tuple[int, float]]]]
"""``{run_id: {metric key: [(step, value), ...]}}``, one value per step, sorted by step."""

RUNS_PER_QUERY = 100


def bulk_reader(client: Any) -> Callable[[list[str], str], list[Any]] | None:
    """``read(run_ids, key) -> [MetricWithRunId]`` through the store's bulk endpoint, or None
    for stores without one."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    sql_bulk = getattr(store, "get_metric_history_bulk", None)
    if sql_bulk is not None:
        return lambda run_ids, key: sql_bulk(run_ids, key, 10_000_000)
    rest_bulk = getattr(store, "get_metric_history_bulk_interval", None)
    if rest_bulk is not None:
        return lambda run_ids, key: rest_bulk(run_ids, key, 10_000, None, None)
    return None


def bulk_metric_histories(
    client: Any, call: Callable[..., Any], run_ids: Sequence[str], keys: Iterable[str]
) -> History:
    """The histories of ``keys`` for ``run_ids``: one query per key and 100 runs where the
    store has a bulk reader, else one call per run and key. ``call`` wraps every store call
    (retries, one-line errors)."""
    from mlflow.entities.metric import MetricWithRunId

    out: History = {rid: {} for rid in run_ids}
    read = bulk_reader(client)
    for key in keys:
        for i in range(0, len(run_ids), RUNS_PER_QUERY):
            chunk = list(run_ids[i : i + RUNS_PER_QUERY])
            if read is not None:
                metrics = call(read, chunk, key)
            else:  # pragma: no cover - stores without a bulk endpoint
                metrics = [
                    MetricWithRunId(m, rid)
                    for rid in chunk
                    for m in call(client.get_metric_history, rid, key)
                ]
            for m in metrics:
                out[m.run_id].setdefault(key, []).append((int(m.step), float(m.value)))
    for per_run in out.values():
        for key, points in per_run.items():
            per_run[key] = last_per_step(points)
    return out
