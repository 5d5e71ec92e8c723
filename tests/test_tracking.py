"""The tracking contract against docs/architecture.md, and MLflow's private bulk reader."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO
from mlflow.tracking import MlflowClient

from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names
from digitexp.tracking.histories import bulk_reader

DOC = REPO / "docs" / "architecture.md"


def contract_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Tracking contract")
    return text[start : text.index("\n## ", start + 1)]


def test_the_documented_tags_are_the_contracts() -> None:
    documented = set(re.findall(r"`(digitexp\.[a-z_]+)`", contract_section()))
    defined = {
        value
        for key, value in vars(names).items()
        if key.startswith("TAG_") and isinstance(value, str)
    }
    assert documented == defined
    assert f"`{names.PARENT_TAG}`" in contract_section()


def test_the_documented_metrics_and_artifacts_are_the_contracts() -> None:
    section = contract_section()
    for metric in (*names.EPOCH_METRICS, *names.SUMMARY_METRICS):
        assert f"`{metric}`" in section, metric
    for key in ("map50", "map75", "digit_acc", "number_acc"):
        assert f"`{names.at_best_metric(key)}`" in section
    for metric in names.COMPARISON_METRICS:
        assert f"`{metric}`" in section, metric
    for artifact in (names.CURVES_FIGURE, names.PREDICTIONS_FIGURE):
        assert f"`{artifact}`" in section, artifact
    for artifact in (
        names.CONFIG_JSON,
        names.SPEC_PY,
        names.BEST_CHECKPOINT,
        names.LAST_CHECKPOINT,
        names.VAL_PREDICTIONS,
        f"{names.TEST_PREDICTIONS}/pred.json",
        f"{names.TEST_PREDICTIONS}/pred.csv",
        names.VAL_INFERENCE,
        names.TEST_INFERENCE,
    ):
        assert f"`{artifact}`" in section, artifact
    assert "`candidates/{split}-cap{cap}.npz`" in section
    for name in (*names.ANALYSIS_METRICS, *names.ANALYSIS_ARTIFACTS):
        assert f"`{name}`" in section, name


def test_the_analysis_metrics_are_the_analysis_values() -> None:
    """Every value digitexp.insight logs has its name in the contract, and back."""
    from digitexp.insight.analysis import value_keys

    assert {names.analysis_metric(k) for k in value_keys()} == set(names.ANALYSIS_METRICS)
    assert all(a.startswith(f"{names.ANALYSIS}/") for a in names.ANALYSIS_ARTIFACTS)
    assert names.candidates_artifact("valid", 300) == "candidates/valid-cap300.npz"


def test_metric_histories_read_in_bulk_equal_per_run_reads(store_uri: str, tmp_path: Path) -> None:
    """The report reads histories through the store's bulk endpoint, reached through MLflow's
    private ``_tracking_client.store``: if a new MLflow moves it, this fails loudly instead of
    the report silently slowing down to one call per run and key."""
    store = TrackingStore(store_uri)
    assert bulk_reader(store.client) is not None, "MLflow's sqlite store lost its bulk reader"
    client = MlflowClient(store_uri)
    exp = client.create_experiment("bulk")
    run_ids = []
    for r in range(3):
        run = client.create_run(exp)
        for step in range(1, 5):
            client.log_metric(run.info.run_id, "val_map", r + step / 10, step=step)
        run_ids.append(run.info.run_id)
    bulk = store.metric_histories(run_ids, ["val_map", "absent"])
    for rid in run_ids:
        history = client.get_metric_history(rid, "val_map")
        assert bulk[rid]["val_map"] == sorted((m.step, m.value) for m in history)
        assert "absent" not in bulk[rid]
