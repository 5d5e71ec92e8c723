"""Shared fixtures: a tiny synthetic dataset, a sqlite MLflow store in tmp_path, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "ablations"


os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DIGITEXP_SYSTEM_METRICS", "0")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic HW2-layout dataset, generated once per session (read-only)."""
    from digitexp.data.synth import SynthOptions, generate

    out = tmp_path_factory.mktemp("synth")
    generate(
        out,
        {"train": 24, "valid": 8, "test": 8},
        seed=0,
        options=SynthOptions(min_height=32, max_height=64),
        workers=1,
        progress=False,
    )
    return out


@pytest.fixture
def data_copy(synth_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the synthetic dataset, for tests that break it."""
    dst = tmp_path / "data"
    shutil.copytree(synth_root, dst)
    return dst


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite database, made once (creating the schema takes seconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def new_store(root: Path, template: Path) -> str:
    """A fresh store under ``root`` copied from the empty template; its URI."""
    db = root / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


@pytest.fixture
def store_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store_db: Path) -> str:
    """A fresh embedded MLflow store in tmp_path, set as MLFLOW_TRACKING_URI."""
    uri = new_store(tmp_path, empty_store_db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@dataclass(frozen=True)
class Recorded:
    """A store template holding one finished training run (and its parent)."""

    db: Path
    run_id: str
    parent_id: str
    checkpoint: Path  # the run's logged checkpoints/best.pt


@pytest.fixture(scope="session")
def recorded_store(
    tmp_path_factory: pytest.TempPathFactory, empty_store_db: Path, synth_root: Path
) -> Recorded:
    """A finished training run as `digitexp run` records it: tags, params, per-epoch and
    summary metrics, config.json and a real checkpoint of the smoke model (not trained: its
    weights are as built, which is all inference and these cases need)."""
    from digitexp import presets
    from digitexp.config import apply_overrides, flatten, seed_config, to_dict
    from digitexp.engine.checkpoints import save_checkpoint
    from digitexp.model import build_model
    from digitexp.tracking import TrackingStore
    from digitexp.tracking import contract as names

    root = tmp_path_factory.mktemp("recorded")
    store = TrackingStore(new_store(root, empty_store_db))
    cfg = apply_overrides(seed_config(), {**presets.SMOKE, "data.root": str(synth_root)})
    parent = store.create_run(
        "recorded",
        "recorded@1",
        {names.TAG_KIND: names.KIND_INVOCATION, names.TAG_SPEC: "recorded"},
    )
    child = store.create_run(
        "recorded",
        "recorded/a/s0",
        {
            names.TAG_KIND: names.KIND_TRAIN,
            names.TAG_SPEC: "recorded",
            names.TAG_VARIANT: "a",
            names.TAG_SEED: "0",
            names.TAG_DATA: str(synth_root),
        },
        parent_id=parent.run_id,
    )
    child.log_params(flatten(cfg))
    child.log_metrics({names.VAL_MAP: 0.25, names.TRAIN_LOSS: 1.5}, step=1)
    child.log_metrics({names.BEST_VAL_MAP: 0.25, names.BEST_EPOCH: 1.0})
    child.log_dict(to_dict(cfg), names.CONFIG_JSON)
    best = root / "best.pt"
    model = build_model(cfg.model)
    save_checkpoint(best, {"version": 1, "model": model.state_dict(), "config": to_dict(cfg)})
    child.log_artifact(best, names.CHECKPOINTS)
    store.end_run(child.run_id, "FINISHED")
    store.end_run(parent.run_id, "FINISHED")
    db = root / "mlruns" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    artifacts = store.client.get_run(child.run_id).info.artifact_uri
    logged = Path(artifacts.removeprefix("file://"))
    return Recorded(db, child.run_id, parent.run_id, logged / names.BEST_CHECKPOINT)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run ``digitexp`` in-process: ``cli("run", spec, ...) -> CliResult``."""
    from digitexp.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run


def run_subprocess(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> CliResult:
    """``python -m digitexp ...`` in a child process (to see exactly what a user sees)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "digitexp", *map(str, argv)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=300,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_clear_line(result: CliResult, *needles: str) -> None:
    """Exit 2, no traceback, the error on a single stderr line that names what is wrong."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) >= 1, result.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
