"""Scale-out: DDP through torchrun (gloo, 2 CPU processes), and the Optuna work queue with a
real PostgreSQL and a real MLflow tracking server, a worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import new_store
from mlflow.tracking import MlflowClient
from servers import Unavailable, free_port, mlflow_server, postgres

from digitexp.data import DistributedBatches
from digitexp.tracking import contract

SPEC = '''\
"""Does the queue run every job once? (test spec)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"nms_0.5": {"model.box_nms_thresh": 0.5}, "nms_0.3": {"model.box_nms_thresh": 0.3}}
SEEDS = (0, 1)
'''
EPOCH_KEYS = ["train_loss", "lr", "val_map", "val_number_acc", "val_digit_acc", "epoch_seconds"]


def _children(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return [
        r for r in client.search_runs([exp.experiment_id]) if contract.PARENT_TAG in r.data.tags
    ]


def test_distributed_batches_shard_an_epoch() -> None:
    for groups in (None, [i % 3 for i in range(11)]):
        samplers = [
            DistributedBatches(11, 2, seed=4, num_replicas=2, rank=rank, groups=groups)
            for rank in (0, 1)
        ]
        for s in samplers:
            s.set_epoch(3)
        batches = [list(s) for s in samplers]
        assert len(samplers[0]) == len(samplers[1]) == 3
        assert all(len(b) >= len(s) for b, s in zip(batches, samplers, strict=True))
        seen = {i for rank in batches for batch in rank for i in batch}
        assert seen == set(range(11))
        if groups is not None:
            assert all(len({groups[i] for i in batch}) == 1 for rank in batches for batch in rank)
    first = list(DistributedBatches(11, 2, seed=4, num_replicas=2, rank=0))
    again = DistributedBatches(11, 2, seed=4, num_replicas=2, rank=0)
    again.set_epoch(1)
    assert first != list(again)


def test_torchrun_two_processes_one_logged_run(
    tmp_path: Path, synth_root: Path, empty_store_db: Path
) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    uri = new_store(tmp_path, empty_store_db)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            "digitexp",
            "run",
            str(spec),
            "--variant",
            "nms_0.5",
            "--seed",
            "0",
            "--preset",
            "smoke",
            "--data",
            str(synth_root),
            "--set",
            "train.epochs=3",
            "train.lr_scaling='linear'",
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("FINISHED") == 1  # only rank 0 reports
    client = MlflowClient(uri)
    (child,) = _children(client, "spec")
    tags = child.data.tags
    assert child.info.status == "FINISHED"
    assert tags[contract.TAG_WORLD_SIZE] == "2"
    assert tags[contract.TAG_EFFECTIVE_BATCH_SIZE] == "8"  # 2 x the smoke preset's 4
    assert float(tags[contract.TAG_EFFECTIVE_LR]) == pytest.approx(2 * 1e-3)  # linear scaling
    for key in EPOCH_KEYS:
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, key)) == [
            1,
            2,
            3,
        ]
    names = {a.path for a in client.list_artifacts(child.info.run_id, "checkpoints")}
    assert names == {contract.BEST_CHECKPOINT, contract.LAST_CHECKPOINT}
    exp = client.get_experiment_by_name("spec")
    assert len(client.search_runs([exp.experiment_id])) == 2  # one parent, one child


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """PostgreSQL (two databases) and an MLflow server on it; skipped, with the reason,
    where PostgreSQL cannot be had."""
    tmp = tmp_path_factory.mktemp("servers")
    (tmp / "artifacts").mkdir()
    try:
        with (
            postgres(("mlflow", "optuna")) as pg,
            mlflow_server(pg.url("mlflow"), tmp / "artifacts") as url,
        ):
            yield {"mlflow": url, "optuna": pg.url("optuna")}
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_queue_workers_with_postgres_and_mlflow_server(
    servers: dict, tmp_path: Path, synth_root: Path
) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": servers["mlflow"],
        "DIGITEXP_HEARTBEAT_S": "1",
        "OMP_NUM_THREADS": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "digitexp",
        "run",
        str(spec),
        "--queue",
        servers["optuna"],
        "--heartbeat",
        "1",
        "--preset",
        "smoke",
        "--data",
        str(synth_root),
        "--set",
        "train.epochs=5",
        "model.min_size=96",
        "model.max_size=128",
        "data.train_limit=24",
    ]
    workers = [
        subprocess.Popen(
            argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    # kill one worker with SIGKILL in the middle of its job (after its first epoch)
    client = MlflowClient(servers["mlflow"])
    victim = workers[0]
    deadline = time.monotonic() + 240
    killed_run = None
    while killed_run is None:
        assert time.monotonic() < deadline, "the first worker never got a job going"
        assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
        exp = client.get_experiment_by_name("spec")
        if exp is not None:
            for run in client.search_runs([exp.experiment_id]):
                owner = run.data.tags.get(contract.TAG_OWNER, "")
                if (
                    owner.endswith(f":{victim.pid}")
                    and int(run.data.tags.get(contract.TAG_EPOCH, 0)) >= 1
                ):
                    killed_run = run.info.run_id
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for worker in workers[1:]:
        _out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]

    children = _children(client, "spec")
    finished = [r for r in children if r.info.status == "FINISHED"]
    jobs = sorted(
        (r.data.tags[contract.TAG_VARIANT], r.data.tags[contract.TAG_SEED]) for r in finished
    )
    assert jobs == sorted((v, s) for v in ("nms_0.5", "nms_0.3") for s in ("0", "1"))  # once each
    assert len(children) == 4  # the killed job was resumed in its own run, not started again
    resumed = client.get_run(killed_run)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags[contract.TAG_OWNER].split(":")[-1] != str(victim.pid)
    for run in finished:
        for key in EPOCH_KEYS:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == [1, 2, 3, 4, 5], (run.info.run_name, key)

    import optuna

    (summary,) = optuna.get_all_study_summaries(servers["optuna"])
    study = optuna.load_study(study_name=summary.study_name, storage=servers["optuna"])
    states = [t.state.name for t in study.trials if "job" in t.user_attrs]
    assert states.count("COMPLETE") == 4
    assert states.count("FAIL") == 1  # the dead worker's trial, failed by the heartbeat
