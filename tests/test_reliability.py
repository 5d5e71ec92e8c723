"""Resume after SIGKILL, honest run states, concurrent runs on one sqlite store."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, new_store, run_subprocess
from mlflow.tracking import MlflowClient

from digitexp.common import files
from digitexp.tracking import RunRecord, contract, run_state
from digitexp.tracking.contract import EPOCH_METRICS, SUMMARY_METRICS, TIMING_METRICS

SPEC = '''\
"""Does resuming change anything? (test spec)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"only": {}}
'''
ARGS = [
    "--preset",
    "smoke",
    "--set",
    "train.epochs=6",
    "train.deterministic=True",
    "model.min_size=96",
    "model.max_size=128",
    "data.train_limit=24",
]
DETERMINISTIC = [m for m in EPOCH_METRICS if m not in TIMING_METRICS]


def _env(uri: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "DIGITEXP_HEARTBEAT_S": "1"}


def _child(client: MlflowClient, experiment: str = "spec"):
    exp = client.get_experiment_by_name(experiment)
    (child,) = [
        r for r in client.search_runs([exp.experiment_id]) if contract.PARENT_TAG in r.data.tags
    ]
    return child


def _histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float | None]]]:
    """Each metric's (step, value); an undefined value (NaN: digit accuracy with nothing
    counted) as None, so that two undefined values compare equal."""
    return {
        key: [
            (m.step, None if math.isnan(m.value) else m.value)
            for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        ]
        for key in DETERMINISTIC
    }


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, synth_root: Path, empty_store_db: Path
) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    # the reference: the same run, never interrupted, in its own store
    ref_uri = new_store(tmp_path / "ref", empty_store_db)
    ref = run_subprocess(
        "run", spec, *ARGS, "--data", synth_root, env={"MLFLOW_TRACKING_URI": ref_uri}, cwd=tmp_path
    )
    assert ref.code == 0, ref.err
    ref_client = MlflowClient(ref_uri)
    reference = _child(ref_client)

    # the same run, killed with SIGKILL once its first epoch's checkpoint exists
    uri = new_store(tmp_path / "killed", empty_store_db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitexp", "run", str(spec), *ARGS, "--data", str(synth_root)],
        env=_env(uri),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    artifacts = tmp_path / "killed" / "mlruns" / "artifacts" / "spec"
    deadline = time.monotonic() + 120
    while not list(artifacts.glob("*/artifacts/checkpoints/last.pt")):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client = MlflowClient(uri)
    killed = _child(client)
    assert killed.info.status == "RUNNING"  # it could not mark itself
    epochs_done = int(killed.data.tags.get(contract.TAG_EPOCH, "0"))
    assert epochs_done < 6

    # honest states: the run is stale, and `runs` says how to resume it
    listing = run_subprocess("runs", env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert listing.code == 0, listing.err
    line = next(
        row for row in listing.out.splitlines() if killed.info.run_id in row and "stale" in row
    )
    assert "gone" in line
    assert f"--resume {killed.info.run_id}" in listing.out

    resumed = run_subprocess(
        "run", spec, "--resume", killed.info.run_id, env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path
    )
    assert resumed.code == 0, resumed.err
    final = client.get_run(killed.info.run_id)
    assert final.info.status == "FINISHED"
    for key in SUMMARY_METRICS:
        assert final.data.metrics[key] == reference.data.metrics[key], key
    assert _histories(client, killed.info.run_id) == _histories(ref_client, reference.info.run_id)
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "epoch_seconds")]
    assert sorted(steps) == list(range(1, 7))  # no duplicated or missing step
    parent = client.get_run(final.data.tags[contract.PARENT_TAG])
    assert parent.info.status == "FINISHED"
    # and nothing is left to resume
    again = run_subprocess("run", spec, "--resume", env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert again.code == 2 and "nothing to resume" in again.err


@pytest.mark.slow
def test_three_concurrent_runs_on_a_new_store(tmp_path: Path, synth_root: Path) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # created by the runs themselves
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digitexp",
                "run",
                str(spec),
                "--preset",
                "smoke",
                "--data",
                str(synth_root),
                "--seed",
                str(seed),
                "--set",
                "train.epochs=3",
            ],
            env=_env(uri),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "locked" not in err
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("spec")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if contract.PARENT_TAG in r.data.tags]
    assert len(children) == 3 and len(runs) == 6
    for run in runs:
        assert run.info.status == "FINISHED"
    for child in children:
        for key in EPOCH_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == [1, 2, 3], key


def _record(status: str, tags: dict[str, str], start: float) -> RunRecord:
    return RunRecord("r", "e", "n", status, int(start * 1000), None, tags, {}, {})


def test_run_state() -> None:
    import socket

    now = time.time()
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert run_state(_record("FINISHED", {}, now)).name == "finished"
    failed = run_state(_record("FAILED", {contract.TAG_ERROR: "non-finite loss"}, now))
    assert (failed.name, failed.reason) == ("failed", "non-finite loss")
    assert run_state(_record("KILLED", {}, now)).name == "killed"
    alive = {contract.TAG_OWNER: f"{host}:{os.getpid()}", contract.TAG_HEARTBEAT: str(now)}
    assert run_state(_record("RUNNING", alive, now), now).name == "running"
    gone = {contract.TAG_OWNER: f"{host}:{dead.pid}", contract.TAG_HEARTBEAT: str(now)}
    assert run_state(_record("RUNNING", gone, now), now).name == "stale"
    elsewhere = {contract.TAG_OWNER: "other-host:1", contract.TAG_HEARTBEAT: str(now - 3600)}
    stale = run_state(_record("RUNNING", elsewhere, now - 3600), now)
    assert stale.name == "stale" and "no heartbeat" in stale.reason
    recent = {contract.TAG_OWNER: "other-host:1", contract.TAG_HEARTBEAT: str(now - 5)}
    assert run_state(_record("RUNNING", recent, now), now).name == "running"


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    files.write_text(path, "epoch 1")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), files.atomic_path(path) as tmp:
        tmp.write_text("epoch 2, half writ")
        raise Boom
    assert path.read_text() == "epoch 1"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_resume_refuses_finished_runs(
    tmp_path: Path, synth_root: Path, store_uri: str, cli
) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    assert cli("run", spec, "--preset", "smoke", "--data", synth_root).code == 0
    run = _child(MlflowClient(store_uri))
    result = cli("run", spec, "--resume", run.info.run_id)
    assert result.code == 2 and "already finished" in result.err
    result = cli("run", spec, "--resume", "f" * 32)
    assert result.code == 2 and "no run with id" in result.err


def test_repo_is_importable_for_subprocesses() -> None:
    assert (REPO / "digitexp" / "__init__.py").exists()
