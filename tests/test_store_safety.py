"""The tracking store under stress, with real processes and real signals: a foreign MLflow
client opening a new store at the same moment, Ctrl-C pressed repeatedly, a full disk,
SIGTERM during a search. Each ends with one line at most and no run left RUNNING."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, Recorded, new_store

SPEC = '''\
"""Does a run survive its ending? (store safety)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"a": {}}
'''


def env_for(uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MLFLOW_TRACKING_URI": uri,
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            "DIGITEXP_SYSTEM_METRICS": "0",
        }
    )
    return env


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "digitexp", *map(str, args)]


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return dict(conn.execute("SELECT name, status FROM runs"))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- schema race

OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    base, rounds, who = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if who == "digitexp":
        from digitexp.tracking import TrackingStore as open_store
    else:
        from mlflow.tracking import MlflowClient

        def open_store(uri):
            MlflowClient(uri).search_experiments()

    for i in range(rounds):
        (base / f"ready-{who}-{i}").touch()
        while not (base / f"go-{i}").exists():
            time.sleep(0.0005)
        try:
            open_store(f"sqlite:///{base}/s{i}/mlflow.db")
            print(i, "ok", flush=True)
        except BaseException as exc:
            print(i, "FAILED", type(exc).__name__, str(exc).splitlines()[0][:200], flush=True)
    """
)


@pytest.mark.slow
def test_a_foreign_client_and_digitexp_open_a_new_store_at_the_same_moment(
    tmp_path: Path,
) -> None:
    """A plain MlflowClient (the UI, a notebook) and digitexp open the same brand-new sqlite
    store in the same millisecond, several times: both succeed every time. (Two plain
    clients fail this way in every round: "table already exists", "duplicate column".)"""
    rounds = 4
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    for i in range(rounds):
        (tmp_path / f"s{i}").mkdir()
    procs = {
        who: subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(rounds), who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for("unused"),
        )
        for who in ("digitexp", "foreign")
    }
    for i in range(rounds):  # release both processes together, once both are waiting
        wait_for(
            lambda i=i: all((tmp_path / f"ready-{w}-{i}").exists() for w in procs),
            240,
            f"both openers ready for round {i}",
        )
        (tmp_path / f"go-{i}").touch()
    outputs = {who: p.communicate(timeout=600) for who, p in procs.items()}
    for who, (out, err) in outputs.items():
        assert procs[who].returncode == 0, (who, err[-2000:])
        lines = out.splitlines()
        assert lines == [f"{i} ok" for i in range(rounds)], (who, lines, err[-1500:])
    for i in range(rounds):
        with sqlite3.connect(tmp_path / f"s{i}" / "mlflow.db") as conn:
            (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            assert version


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_repeated_ctrl_c_never_leaves_a_run_running(
    tmp_path: Path, empty_store_db: Path, synth_root: Path
) -> None:
    """Bursts of SIGINT (and a SIGTERM) at a training run, as an impatient user presses
    Ctrl-C again and again: the run and its parent end KILLED every time, in one line."""
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    bursts = [(0.0, 5), (0.02, 5), (0.15, 4)]  # seconds between signals, signals per burst
    for k, (gap, count) in enumerate(bursts):
        root = tmp_path / f"try{k}"
        root.mkdir()
        uri = new_store(root, empty_store_db)
        db = root / "mlruns" / "mlflow.db"
        proc = subprocess.Popen(
            command(
                "run", spec, "--preset", "smoke", "--data", synth_root, "--set", "train.epochs=50"
            ),
            cwd=root,
            env=env_for(uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda db=db: "a/s0" in statuses(db), 300, "the child run")
        time.sleep(0.5 * k)  # somewhere in the first epochs
        for n in range(count):
            proc.send_signal(signal.SIGTERM if n == count - 1 else signal.SIGINT)
            time.sleep(gap)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 130, err[-2000:]
        assert "Traceback" not in err, err[-2000:]
        final = statuses(db)
        assert set(final.values()) == {"KILLED"}, (k, final)


# --------------------------------------------------------------------------- full disk


def _limit_file_size(limit: int):  # type: ignore[no-untyped-def]
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_naming_the_destination(
    tmp_path: Path, empty_store_db: Path, synth_root: Path
) -> None:
    """No file may grow past 2 MB (RLIMIT_FSIZE: a full disk without root): the first
    checkpoint cannot be written. One line names the file that could not be written (not a
    temporary copy), the runs end FAILED, the store stays readable."""
    spec = tmp_path / "spec.py"
    spec.write_text(SPEC)
    uri = new_store(tmp_path, empty_store_db)
    db = tmp_path / "mlruns" / "mlflow.db"
    proc = subprocess.run(
        command("run", spec, "--preset", "smoke", "--data", synth_root),
        cwd=tmp_path,
        env=env_for(uri),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_file_size(2_000_000),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "checkpoints/last.pt: no space left" in line, line
    assert ".tmp" not in line
    assert set(statuses(db).values()) == {"FAILED"}


# --------------------------------------------------------------------------- search


@pytest.mark.slow
def test_sigterm_during_a_search_ends_it_killed_in_one_line(
    tmp_path: Path, recorded_store: Recorded
) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(recorded_store.db.read_bytes())
    optuna_db = f"sqlite:///{tmp_path}/optuna.db"
    proc = subprocess.Popen(
        command("search", recorded_store.run_id, "--trials", 100000, "--storage", optuna_db),
        cwd=tmp_path,
        env=env_for(f"sqlite:///{db}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def searching() -> bool:
        return any(name.startswith("thresholds · ") for name in statuses(db))

    wait_for(searching, 300, "the search run")
    time.sleep(1.0)  # in the middle of the trials
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted"
    final = statuses(db)
    assert [s for n, s in final.items() if n.startswith("thresholds · ")] == ["KILLED"]
    assert "RUNNING" not in final.values()


# --------------------------------------------------------------------------- ui


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(tmp_path: Path, empty_store_db: Path) -> None:
    """`ui` checks the store first, then execs the MLflow server on 127.0.0.1."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = new_store(tmp_path, empty_store_db)
    proc = subprocess.Popen(
        command("ui", "--port", port),
        cwd=tmp_path,
        env=env_for(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                return True
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False

        wait_for(answers, 180, "the MLflow UI")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow
def test_another_tools_postgres_database_is_refused_and_left_alone() -> None:
    """A real PostgreSQL: an empty database passes the check, one holding another tool's
    tables is refused in one line (MLflow would add its tables to it) and stays as it was."""
    import sqlalchemy
    from servers import Unavailable, postgres

    from digitexp.errors import TrackingError
    from digitexp.tracking import TrackingStore
    from digitexp.tracking.backends import check_database

    try:
        server = postgres(("empty", "shop"))
        pg = server.__enter__()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        check_database(pg.url("empty", "postgresql+psycopg"))
        shop = pg.url("shop", "postgresql+psycopg")
        engine = sqlalchemy.create_engine(shop)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE invoices (id serial, total real)"))
            conn.execute(sqlalchemy.text("INSERT INTO invoices (total) VALUES (12.5)"))
        with pytest.raises(TrackingError, match=r"another tool.*invoices"):
            TrackingStore(shop)
        with engine.connect() as conn:
            assert set(sqlalchemy.inspect(conn).get_table_names()) == {"invoices"}
        engine.dispose()
    finally:
        server.__exit__(None, None, None)
