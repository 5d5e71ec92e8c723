"""The Slurm launcher: the job script, the checks before submission, a task stopped by its
warning signal and resumed, and the README's recipe on a real single-node Slurm (slurmctld,
slurmd and munged on 127.0.0.1) with a real MLflow tracking server, one task preempted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_one_clear_line, new_store
from mlflow.tracking import MlflowClient
from servers import Unavailable, free_port, mlflow_server
from slurm_cluster import slurm_cluster

from digitexp.errors import ConfigError
from digitexp.launch import plan_runs
from digitexp.launch.slurm import (
    SlurmOptions,
    job_script,
    prepare,
    read_manifest,
)
from digitexp.launch.slurm.options import time_seconds
from digitexp.launch.slurm.submit import manifest_of
from digitexp.spec import load_spec
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

SPEC = '''\
"""Does the array run every variant x seed once? (test spec)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"nms_0.5": {"model.box_nms_thresh": 0.5}, "nms_0.3": {"model.box_nms_thresh": 0.3}}
SEEDS = (0, 1)
'''
EPOCHS = 8
EPOCH_KEYS = ("train_loss", "lr", "val_map", "val_number_acc", "val_digit_acc", "epoch_seconds")


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.py"
    path.write_text(SPEC)
    return path


def plans_of(spec_file: Path, synth_root: Path, **sets: object) -> list:
    spec = load_spec(spec_file, preset="smoke", sets={"data.root": str(synth_root), **sets})
    return plan_runs(spec)


# --------------------------------------------------------------------------- the job script


def test_every_flag_maps_to_its_sbatch_line(spec_file: Path, synth_root: Path) -> None:
    options = SlurmOptions(
        partition="gpu",
        gpus_per_task=1,
        cpus_per_task=8,
        mem="32G",
        time="04:00:00",
        account="lab",
        qos="normal",
        max_parallel=3,
        signal_lead=300,
        extra=("--constraint=a100",),
    )
    manifest = manifest_of(
        plans_of(spec_file, synth_root),
        experiment="exp",
        options=options,
        sets={},
        tracking_uri="http://user:secret@mlflow:5000",
        parent_run_id="p",
    )
    script = job_script(manifest, Path("/shared/slurm/spec-1"), python="/venv/bin/python")
    lines = set(script.splitlines())
    for line in (
        "#SBATCH --array=0-3%3",
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH --time=04:00:00",
        "#SBATCH --account=lab",
        "#SBATCH --qos=normal",
        "#SBATCH --constraint=a100",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --output=/shared/slurm/spec-1/logs/%A_%a.out",
        f"#SBATCH --chdir={os.getcwd()}",
        "exec /venv/bin/python -m digitexp slurm-task /shared/slurm/spec-1",
    ):
        assert line in lines, line
    assert "torch.distributed.run" not in script
    for task, name in enumerate(("nms_0.5/s0", "nms_0.5/s1", "nms_0.3/s0", "nms_0.3/s1")):
        assert f"#   task {task}: {name}" in lines
    assert "secret" not in script and manifest.tracking_uri == "http://user:***@mlflow:5000"
    # every #SBATCH line comes before the first command (sbatch stops reading there)
    first_command = next(i for i, x in enumerate(script.splitlines()) if x.startswith("export"))
    assert all(
        i < first_command
        for i, line in enumerate(script.splitlines())
        if line.startswith("#SBATCH")
    )


def test_several_gpus_per_task_start_torchrun_inside_the_task(
    spec_file: Path, synth_root: Path
) -> None:
    manifest = manifest_of(
        plans_of(spec_file, synth_root),
        experiment="exp",
        options=SlurmOptions(gpus_per_task=4),
        sets={},
        tracking_uri="sqlite:///mlruns/mlflow.db",
        parent_run_id="p",
    )
    script = job_script(manifest, Path("/shared/job"), python="/venv/bin/python")
    assert "#SBATCH --gpus-per-task=4" in script.splitlines()
    assert "#SBATCH --array=0-3" in script.splitlines()  # no %K: as many at once as fit
    torchrun = (
        "/venv/bin/python -m torch.distributed.run --standalone --nproc_per_node=4 "
        "-m digitexp slurm-task /shared/job &"
    )
    assert torchrun in script.splitlines()
    assert "exec " not in script  # bash stays, to pass Slurm's USR1 on to the 4 processes
    assert "trap 'pkill -USR1 -P \"$torchrun\"' USR1" in script
    # a relative sqlite store is made absolute: tasks may start in another folder
    assert manifest.tracking_uri == f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr


def test_options_are_checked_before_anything_is_submitted() -> None:
    assert time_seconds("04:00:00") == 4 * 3600
    assert time_seconds("90") == 90 * 60
    assert time_seconds("10:30") == 10 * 60 + 30
    assert time_seconds("2-12") == (2 * 24 + 12) * 3600
    assert time_seconds("1-02:03:04") == ((24 + 2) * 60 + 3) * 60 + 4
    for bad, needle in (
        ({"time": "4h"}, "--time '4h'"),
        ({"time": "00:01:00"}, "--signal-lead 120"),
        ({"mem": "lots"}, "--mem 'lots'"),
        ({"partition": "gpu; rm -rf"}, "--partition"),
        ({"max_parallel": 0}, "--max-parallel 0"),
        ({"extra": ("constraint=a100",)}, "--sbatch"),
    ):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            SlurmOptions(**bad)


def test_dry_run_prints_the_job_script_and_creates_nothing(
    cli: object, store_uri: str, spec_file: Path, synth_root: Path, tmp_path: Path
) -> None:
    result = cli(
        "run",
        spec_file,
        "--launcher",
        "slurm",
        "--preset",
        "smoke",
        "--data",
        synth_root,
        "--partition",
        "debug",
        "--max-parallel",
        "2",
        "--dry-run",
    )
    assert result.code == 0, result.err
    assert result.out.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-3%2" in result.out and "#SBATCH --partition=debug" in result.out
    assert "dry run: nothing submitted" in result.err
    assert not (tmp_path / "slurm").exists()
    assert TrackingStore(store_uri).runs() == []


def test_slurm_flags_need_the_slurm_launcher(cli: object, spec_file: Path) -> None:
    result = cli("run", spec_file, "--partition", "gpu")
    assert_one_clear_line(result, "--partition", "--launcher slurm")
    result = cli("run", spec_file, "--launcher", "slurm", "--time", "4h", "--dry-run")
    assert_one_clear_line(result, "--time '4h'")


def test_bad_input_fails_before_submission(
    cli: object,
    store_uri: str,
    spec_file: Path,
    data_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ("run", spec_file, "--launcher", "slurm", "--preset", "smoke", "--data", data_copy)
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    assert_one_clear_line(cli(*args), "sbatch: command not found")
    (tmp_path / "bin").mkdir()
    sbatch = tmp_path / "bin" / "sbatch"  # a tripwire: the data must fail before sbatch
    sbatch.write_text("#!/bin/sh\necho sbatch must not run >&2\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{path}")
    (data_copy / "valid" / "1.png").unlink()
    assert_one_clear_line(cli(*args), "1.png")
    assert not (tmp_path / "slurm").exists()
    assert TrackingStore(store_uri).runs() == []


# --------------------------------------------------------------------------- a task by hand


def _history_steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """Every logged step of ``key``, duplicates included."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _wait_for_epoch(client: MlflowClient, experiment: str, epoch: int, timeout: float) -> str:
    """The id of a RUNNING child run that has logged ``epoch`` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id]):
                tags = run.data.tags
                if (
                    run.info.status == "RUNNING"
                    and names.PARENT_TAG in tags
                    and int(tags.get(names.TAG_EPOCH, 0)) >= epoch
                ):
                    return run.info.run_id
        time.sleep(0.1)
    raise AssertionError(f"no run reached epoch {epoch} in {timeout} s")


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.slow
def test_a_ddp_task_stops_on_one_ranks_warning_and_resumes_on_every_rank(
    store_uri: str, spec_file: Path, synth_root: Path, tmp_path: Path
) -> None:
    """A task run by hand, outside Slurm, as `--gpus-per-task 2` runs it: under torchrun
    (here gloo on the CPU). A warning reaching one rank stops both at the same step, the run
    is left resumable; running the task again resumes it on both ranks, every epoch once,
    and the single-task job's parent run ends FINISHED."""
    sets = {"data.root": str(synth_root), "train.epochs": EPOCHS}
    spec = load_spec(spec_file, preset="smoke", sets=sets)
    store = TrackingStore(store_uri)
    folder, manifest = prepare(
        plan_runs(spec, variants=["nms_0.3"], seeds=[1]),
        store,
        experiment="spec",
        options=SlurmOptions(gpus_per_task=2),
        sets=sets,
        root=tmp_path / "slurm",
    )
    assert read_manifest(folder) == manifest
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri, "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}

    def torchrun() -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            "digitexp",
            "slurm-task",
            str(folder),
            "--task",
            "0",
        ]
        return subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    first = torchrun()
    client = MlflowClient(store_uri)
    run_id = _wait_for_epoch(client, "spec", 1, timeout=300)
    workers = _children_of(first.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGUSR1)  # one rank only
    out, _ = first.communicate(timeout=300)
    assert first.returncode != 0 and "preempted, not requeued" in out  # no Slurm here
    stopped = client.get_run(run_id)
    assert stopped.info.status == "KILLED", out[-3000:]
    assert stopped.data.tags[names.TAG_PREEMPTED] == "1"
    assert stopped.data.tags[names.TAG_ERROR].startswith("preempted: stopped on")
    logged = int(stopped.data.tags[names.TAG_EPOCH])
    assert 1 <= logged < EPOCHS
    assert _history_steps(client, run_id, "train_loss") == list(range(1, logged + 1))

    again = torchrun()
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out[-3000:]
    assert out.count(f"resuming after epoch {logged}") == 2  # on both ranks
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags[names.TAG_WORLD_SIZE] == "2"
    for key in EPOCH_KEYS:
        assert _history_steps(client, run_id, key) == list(range(1, EPOCHS + 1)), key
    parent = client.get_run(manifest.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{names.PARENT_TAG}` = '{parent.info.run_id}'"
    )
    assert [c.info.run_id for c in children] == [run_id]


# --------------------------------------------------------------------------- a real Slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, empty_store_db: Path) -> object:
    """A real single-node Slurm and an MLflow server, both on 127.0.0.1; skipped, with the
    reason, where Slurm or munge cannot be had (``.ci/run`` installs them)."""
    work = tmp_path_factory.mktemp("slurm")
    (work / "artifacts").mkdir()
    try:
        with (
            slurm_cluster(work / "cluster") as slurm,
            mlflow_server(new_store(work, empty_store_db), work / "artifacts") as url,
        ):
            yield slurm, url
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_readme_recipe_on_a_real_slurm_with_one_task_preempted(
    cluster: tuple, tmp_path: Path, synth_root: Path, cli: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's cluster recipe: data on the shared file system (checked), an MLflow server
    reachable from the nodes, `run --launcher slurm ... --wait`, then `runs`. One task gets
    Slurm's warning signal mid-run: it stops, requeues itself and resumes its run."""
    slurm, url = cluster
    project = tmp_path / "project"  # the shared file system: spec, job folders
    project.mkdir()
    (project / "spec.py").write_text(SPEC)
    assert cli("data", "check", synth_root).code == 0
    env = {
        **slurm.env,
        "MLFLOW_TRACKING_URI": url,
        "DIGITEXP_SLURM_POLL_S": "1",
        "DIGITEXP_SYSTEM_METRICS": "0",
        "OMP_NUM_THREADS": "1",
    }
    submit = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitexp",
            "run",
            "spec.py",
            "--launcher",
            "slurm",
            "--partition",
            "debug",
            "--cpus-per-task",
            "1",
            "--mem",
            "2G",
            "--time",
            "00:10:00",
            "--max-parallel",
            "2",
            "--preset",
            "smoke",
            "--data",
            str(synth_root),
            "--set",
            f"train.epochs={EPOCHS}",
            "--wait",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = MlflowClient(url)
    try:
        # Slurm's warning, as `--signal=B:USR1@S` delivers it: USR1 to the task's batch
        # process (Python itself), once its run has logged an epoch
        preempted = _wait_for_epoch(client, "spec", 1, timeout=300)
        tags = client.get_run(preempted).data.tags
        slurm_task = f"{tags[names.TAG_SLURM_JOB]}_{tags[names.TAG_SLURM_TASK]}"
        pid = slurm.batch_pid(slurm_task)
        assert pid is not None, slurm.run("squeue", "-a")
        os.kill(pid, signal.SIGUSR1)
        out, _ = submit.communicate(timeout=600)
    finally:
        if submit.poll() is None:
            submit.kill()
    assert submit.returncode == 0, out[-4000:]
    job_id = re.search(r"submitted Slurm job (\d+): 4 task\(s\)", out)[1]
    assert tags[names.TAG_SLURM_JOB] == job_id

    exp = client.get_experiment_by_name("spec")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(names.TAG_KIND) == names.KIND_INVOCATION]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.TAG_SLURM_JOB] == job_id
    children = [r for r in runs if r.data.tags.get(names.PARENT_TAG) == parent.info.run_id]
    assert len(children) == len(runs) - 1 == 4
    jobs = sorted((r.data.tags[names.TAG_VARIANT], r.data.tags[names.TAG_SEED]) for r in children)
    assert jobs == sorted((v, s) for v in ("nms_0.5", "nms_0.3") for s in ("0", "1"))  # once each
    manifest = read_manifest(next((project / "slurm").iterdir()))
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags.get(names.TAG_ERROR)
        entry = manifest.task(int(run.data.tags[names.TAG_SLURM_TASK]))
        assert (entry.variant, str(entry.seed)) == (
            run.data.tags[names.TAG_VARIANT],
            run.data.tags[names.TAG_SEED],
        )
        assert run.data.tags[names.TAG_SLURM_JOB] == job_id
        for key in EPOCH_KEYS:  # every epoch exactly once, the preempted run's too
            assert _history_steps(client, run.info.run_id, key) == list(range(1, EPOCHS + 1))
        assert (names.TAG_PREEMPTED in run.data.tags) == (run.info.run_id == preempted)
    assert client.get_run(preempted).data.tags[names.TAG_PREEMPTED] == "1"

    log = (project / "slurm").glob(f"*/logs/{slurm_task}.out")
    text = next(log).read_text()
    assert "requeued; it resumes after its last epoch" in text
    resumed = re.search(rf"resume \S+ \({preempted}\) after epoch (\d+)", text)
    assert resumed is not None and int(resumed[1]) >= 1, text  # from a checkpoint
    assert "Slurm restart 1 of" in text
    assert out.count("FINISHED") >= 4 and "in the MLflow UI: http" in out  # the results table

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    listing = cli("runs", "--experiment", "spec")
    assert listing.code == 0
    assert f"{slurm_task}" in listing.out and "slurm" in listing.out.splitlines()[0]
