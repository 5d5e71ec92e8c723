"""`digitexp report` against a real MLflow store holding runs with known metric values."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from conftest import ABLATIONS
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from PIL import Image

from digitexp.report import Section, build_section, plot_curves, select_runs
from digitexp.spec import load_spec
from digitexp.tracking import TrackingStore, contract

SPEC = "roi_levels"
VARIANTS = ("levels_0_1_2_3", "levels_0_1")
SEEDS = (0, 1, 2)
EPOCHS = 4


def curve(v: int, seed: int, epoch: int) -> dict[str, float]:
    """Known per-epoch values; val mAP peaks at epoch 3."""
    peak = {1: 0.30, 2: 0.40, 3: 0.50, 4: 0.45}[epoch]
    base = peak + 0.05 * v + 0.01 * seed
    return {
        "train_loss": 1.0 / epoch + 0.1 * v + 0.01 * seed,
        "val_map": base,
        "val_map50": base + 0.3,
        "val_number_acc": base + 0.2,
        "val_digit_acc": base + 0.1,
    }


def log_run(
    client: MlflowClient,
    exp_id: str,
    parent: str,
    v: int,
    seed: int,
    start: int,
    status: str = "FINISHED",
    offset: float = 0.0,
) -> str:
    variant = VARIANTS[v]
    tags = {
        contract.PARENT_TAG: parent,
        contract.TAG_SPEC: SPEC,
        contract.TAG_VARIANT: variant,
        contract.TAG_SEED: str(seed),
        contract.TAG_PRESET: "smoke",
        contract.TAG_KIND: "train",
    }
    run = client.create_run(
        exp_id, start_time=start, tags=tags, run_name=f"{SPEC}/{variant}/s{seed}"
    )
    rid = run.info.run_id
    metrics = []
    for epoch in range(1, EPOCHS + 1):
        for key, value in curve(v, seed, epoch).items():
            metrics.append(Metric(key, value + offset, start + epoch, epoch))
    best = curve(v, seed, 3)
    summary = {
        "best_val_map": best["val_map"] + offset,
        "best_epoch": 3.0,
        "final_train_loss": curve(v, seed, EPOCHS)["train_loss"] + offset,
        "test_map": best["val_map"] - 0.02 + offset,
        "test_number_acc": best["val_number_acc"] - 0.02 + offset,
    }
    metrics += [Metric(k, val, start + 10, 0) for k, val in summary.items()]
    params = [Param("data.root", "/nowhere"), Param("model.roi_levels", "(0, 1)")]
    client.log_batch(rid, metrics=metrics, params=params, tags=[RunTag("x", "y")])
    if status != "FINISHED":
        client.set_tag(rid, contract.TAG_ERROR, "non-finite loss (nan) in epoch 2")
    client.set_terminated(rid, status)
    return rid


@pytest.fixture
def known_store(store_uri: str) -> MlflowClient:
    client = MlflowClient(store_uri)
    exp = client.create_experiment(SPEC)
    parent = client.create_run(
        exp, start_time=1000, tags={contract.TAG_KIND: "invocation"}
    ).info.run_id
    t = 2000
    # an older run of (levels_0_1_2_3, seed 1) that a newer FINISHED run supersedes
    log_run(client, exp, parent, 0, 1, start=t, offset=-0.2)
    for v in range(2):
        for seed in SEEDS:
            t += 100
            log_run(client, exp, parent, v, seed, start=t)
    # a newer FAILED attempt of (levels_0_1, seed 0): left out, the FINISHED one counts
    log_run(client, exp, parent, 1, 0, start=t + 500, status="FAILED", offset=0.3)
    client.set_terminated(parent, "FINISHED")
    return client


def expected(v: int, key: str) -> tuple[float, float]:
    if key == "val_map":
        xs = [curve(v, s, 3)["val_map"] for s in SEEDS]
    elif key == "final_train_loss":
        xs = [curve(v, s, EPOCHS)["train_loss"] for s in SEEDS]
    elif key == "test_map":
        xs = [curve(v, s, 3)["val_map"] - 0.02 for s in SEEDS]
    else:
        xs = [curve(v, s, 3)[key] for s in SEEDS]
    return statistics.fmean(xs), statistics.stdev(xs)


def test_tables_equal_the_logged_values(known_store: MlflowClient, tmp_path: Path, cli) -> None:
    out = tmp_path / "reports"
    result = cli("report", "--out", out, "--spec", SPEC, "--ablations", ABLATIONS)
    assert result.code == 0, result.err
    rows = list(csv.DictReader((out / "tables" / f"{SPEC}.csv").open()))
    assert [r["variant"] for r in rows] == list(VARIANTS)
    for v, row in enumerate(rows):
        assert row["n"] == "3"
        for key in (
            "val_map",
            "val_map50",
            "val_number_acc",
            "val_digit_acc",
            "test_map",
            "final_train_loss",
        ):
            mean, std = expected(v, key)
            assert float(row[f"{key}_mean"]) == pytest.approx(mean, rel=1e-5), key
            assert float(row[f"{key}_std"]) == pytest.approx(std, rel=1e-4), key
        assert float(row["best_epoch_mean"]) == 3.0
    delta = expected(1, "val_map")[0] - expected(0, "val_map")[0]
    assert float(rows[1]["delta_val_map"]) == pytest.approx(delta, rel=1e-5)
    # 0.05 apart with std 0.01 each: outside the spread, so distinguishable
    assert rows[1]["distinguishable"] == "True"
    md = (out / "tables" / f"{SPEC}.md").read_text()
    mean, std = expected(1, "val_map")
    assert f"**{mean:.4f} ± {std:.4f} (n=3)**" in md  # the best val mAP is bold
    assert "0.4653" in md and "0.4633" in md  # the published numbers beside ours
    readme = (out / "README.md").read_text()
    assert "Does RoI pooling over FPN levels 0-3 beat levels 0-1 only?" in readme
    assert "Left out (not FINISHED)" in readme and "FAILED: non-finite loss" in readme
    assert "6 run(s) counted" in readme


def test_failed_and_superseded_runs_are_not_counted(known_store: MlflowClient) -> None:
    store = TrackingStore()
    chosen, left_out = select_runs(store.runs(), SPEC, None)
    assert len(chosen) == 6
    assert [r.status for r in left_out] == ["FAILED"]
    assert all(r.status == "FINISHED" for r in chosen)
    values = {
        (r.tag(contract.TAG_VARIANT), r.tag(contract.TAG_SEED)): r.metrics["best_val_map"]
        for r in chosen
    }
    assert values[("levels_0_1_2_3", "1")] == pytest.approx(curve(0, 1, 3)["val_map"])
    assert values[("levels_0_1", "0")] == pytest.approx(curve(1, 0, 3)["val_map"])


def test_curves_have_one_line_per_variant(known_store: MlflowClient, tmp_path: Path) -> None:
    store = TrackingStore()
    spec = load_spec(ABLATIONS / f"{SPEC}.py")
    chosen, _ = select_runs(store.runs(), SPEC, None)
    histories = store.metric_histories(
        [r.run_id for r in chosen], ("train_loss", "val_map", "val_digit_acc")
    )
    assert all(len(h["val_map"]) == EPOCHS for h in histories.values())
    section: Section = build_section(spec, chosen, histories, None)
    fig = plot_curves(section)
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == list(VARIANTS)
        mean_curve = ax.get_lines()[0].get_ydata()
        assert len(mean_curve) == EPOCHS
    loss_line = fig.axes[0].get_lines()[0].get_ydata()
    assert loss_line[0] == pytest.approx(
        statistics.fmean(curve(0, s, 1)["train_loss"] for s in SEEDS)
    )


def test_figures_are_pngs_and_a_second_report_writes_identical_tables(
    known_store: MlflowClient, tmp_path: Path, cli
) -> None:
    out = tmp_path / "reports"
    assert cli("report", "--out", out, "--ablations", ABLATIONS).code == 0
    png = out / "figures" / f"{SPEC}_curves.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 500
    first = {p.name: p.read_bytes() for p in (out / "tables").iterdir()}
    assert len(first) == 14  # seven specs, csv + md
    assert cli("report", "--out", out, "--ablations", ABLATIONS).code == 0
    second = {p.name: p.read_bytes() for p in (out / "tables").iterdir()}
    assert first == second
    readme = (out / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    tables = [h.split("(report Table ")[1].split(",")[0] for h in headings if "(report" in h]
    assert tables == ["2", "3", "4", "5", "6", "7", "8"]  # the report's order
    assert "No finished runs yet" in readme


def test_empty_store_gives_a_clear_message(store_uri: str, tmp_path: Path, cli) -> None:
    result = cli("report", "--out", tmp_path / "r", "--ablations", ABLATIONS)
    assert result.code == 2
    assert "no training runs in" in result.err and "make demo" in result.err
    assert "Traceback" not in result.err


def test_report_after_a_real_tiny_run(
    store_uri: str, synth_root: Path, tmp_path: Path, cli
) -> None:
    run = cli(
        "run", ABLATIONS / "final.py", "--preset", "smoke", "--data", synth_root, "--seed", "0"
    )
    assert run.code == 0, run.err
    out = tmp_path / "reports"
    assert cli("report", "--out", out, "--spec", "final", "--ablations", ABLATIONS).code == 0
    readme = (out / "README.md").read_text()
    assert "Final configuration (the report's Table 8)" in readme
    assert "| Anchor sizes | (4, 8, 12, 24, 48) |" in readme
    assert (out / "figures" / "final_curves.png").is_file()
    with Image.open(out / "figures" / "final_examples.png") as img:
        assert img.format == "PNG"
    client = MlflowClient(store_uri)
    (child,) = [
        r
        for r in client.search_runs([client.get_experiment_by_name("final").experiment_id])
        if contract.PARENT_TAG in r.data.tags
    ]
    rows = list(csv.DictReader((out / "tables" / "final.csv").open()))
    assert float(rows[0]["val_map_mean"]) == pytest.approx(
        child.data.metrics["best_val_map"], abs=1e-6
    )
