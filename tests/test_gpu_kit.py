"""The GPU kit (benchmarks/gpu) run end to end on the CPU at tiny sizes, so that it cannot rot
between the sessions that are lent a GPU; and its promise to always write the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from benchmarks.gpu import check, suite
from digitexp.spec import load_spec


def kit(*args: str, out: Path, timeout: float = 900) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.check", "--out", str(out), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    results = list(out.glob("*.json"))
    assert len(results) == 1, (proc.stdout[-2000:], proc.stderr[-2000:])
    return proc, json.loads(results[0].read_text())


@pytest.mark.slow
def test_dry_run_runs_every_part_and_writes_the_results(tmp_path: Path) -> None:
    proc, results = kit(
        "--dry-run", "--device", "cpu", "--work", str(tmp_path / "work"), out=tmp_path / "out"
    )
    failed = {k: v["reason"] for k, v in results["checks"].items() if not v["ok"]}
    assert proc.returncode == 0 and failed == {}, (failed, proc.stdout[-3000:])
    assert list(results["checks"]) == ["data", *check.NAMES]
    assert (tmp_path / "out").joinpath(f"cpu-{results['date'][:10]}-dry-run.json").is_file()
    log = (tmp_path / "out" / "gpu-check.log").read_text()
    assert all(f"===== {name}:" in log for name in check.NAMES)
    figures = {k: v["figures"] for k, v in results["checks"].items()}
    assert results["dependencies"]["mlflow"]["ok"] == "yes"
    assert figures["throughput"]["ours"] > 0 and figures["throughput"]["reference"] > 0
    assert figures["numerics"]["agree"] and len(figures["numerics"]["loss_amp"]) == 4
    assert figures["e2e"]["contract_problems"] == [] and figures["e2e"]["hw2_epoch_seconds"] > 0
    assert figures["ddp"]["process_group"] == "gloo"
    assert set(figures["packing"]["threads_auto"]) == {"1", "2"}
    assert figures["compile"]["images_per_s_off"] > 0
    projection = results["summary"]["suite"]
    assert (
        projection["runs"] == len(suite.suite_runs()) and projection["hours_one_run_at_a_time"] > 0
    )


def test_a_part_that_fails_is_recorded_and_the_results_still_written(tmp_path: Path) -> None:
    """No CUDA here: each part says so in its reason, the JSON is written, the exit is 1."""
    proc, results = kit(
        "--device", "cuda", "--dry-run", "--parts", "env", "--budget", "120", out=tmp_path
    )
    assert proc.returncode == 1
    assert "unavailable" in results["device"]
    env = results["checks"]["env"]
    assert not env["ok"] and "CUDA is not available" in env["reason"], env
    assert "failed: env" in proc.stdout


def test_parts_left_without_time_are_not_run_but_reported(tmp_path: Path) -> None:
    proc, results = kit(
        "--dry-run", "--device", "cpu", "--parts", "numerics,env", "--budget", "1", out=tmp_path
    )
    assert proc.returncode == 1
    reasons = {k: v["reason"] for k, v in results["checks"].items()}
    assert reasons["data"].startswith("time limit")
    assert reasons["numerics"].startswith("no data")
    assert reasons["env"].startswith("not run")
    assert results["summary"]["suite"].startswith("not projected")


def test_suite_projection_counts_every_run_of_every_spec() -> None:
    runs = suite.suite_runs()
    specs = [load_spec(path) for path in sorted((REPO / "ablations").glob("*.py"))]
    assert len(runs) == sum(len(s.variants) * len(s.seeds) for s in specs)
    assert {r["epochs"] for r in runs} == {20}
    projection = suite.project(
        {8: 250.0, 4: 125.0}, valid_seconds=10.0, run_overhead=60.0, runs=runs
    )
    by_batch = projection["runs_by_batch_size"]
    expected = sum(
        20 * (30062 / {8: 250.0, 4: 125.0}[b] + 10.0) * n + 60.0 * n
        for b, n in ((int(k), v) for k, v in by_batch.items())
    )
    assert projection["hours_one_run_at_a_time"] == round(expected / 3600, 2)
