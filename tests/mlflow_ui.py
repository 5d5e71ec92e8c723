"""``python -m digitexp ui`` as a user starts it (on a free port of 127.0.0.1), the URLs it
prints, and what the MLflow 3.17 UI's runs table looks like to a script."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import Unavailable, free_port

RUN_NAME = "attributes.`Run Name`"
ROWS = ".ag-center-cols-container .ag-row"
NAME_CELLS = f".ag-row [col-id='{RUN_NAME}']"
# the (+) before a parent's name: the first button in the Run Name cells
EXPANDER = f"{NAME_CELLS} button"
# the names as shown, and whether each is cut (its text wider than its cell)
NAMES_JS = (
    f'Array.from(document.querySelectorAll("{NAME_CELLS} a span"))'
    ".map(e => [e.textContent, e.scrollWidth > e.clientWidth + 1])"
)
# keeps MLflow's assistant panel from opening over a quarter of the page (screenshots)
NO_ASSISTANT = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}


@dataclass(frozen=True)
class UiServer:
    base: str
    urls: dict[str, str]  # experiment -> the URL `ui` printed


@contextmanager
def digitexp_ui(tracking_uri: str, cwd: Path, timeout: float = 120) -> Iterator[UiServer]:
    """Start ``python -m digitexp ui --port P`` over ``tracking_uri``; stop it (and the MLflow
    server it becomes) on exit."""
    port = free_port()
    log = cwd / "digitexp-ui.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digitexp", "ui", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server's workers stop too
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:]
                    raise Unavailable(f"digitexp ui did not start: {tail}") from None
                time.sleep(0.3)
        printed = re.findall(r"experiment (\S+): (http://\S+)", log.read_text())
        yield UiServer(base, dict(printed))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
