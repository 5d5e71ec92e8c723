"""The Slurm commands digitexp uses, and only these: ``sbatch`` (submit the array), ``squeue``
(which tasks are still pending, running or completing) and ``scontrol requeue`` (a task puts
itself back in the queue). No ``sacct``: it needs Slurm's accounting database, which many
clusters (and the test cluster) do not run."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from digitexp.errors import DigitexpError

log = logging.getLogger("digitexp.slurm")

# job states after which a task never runs again (anything else is pending, running,
# completing, requeued or held)
FINISHED_STATES = frozenset(
    {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "REVOKED",
    }
)


class SlurmError(DigitexpError):
    """A Slurm command is missing or refused what digitexp asked."""


def command(name: str) -> str:
    """The path of a Slurm command; SlurmError when this machine has none."""
    found = shutil.which(name)
    if found is None:
        raise SlurmError(
            f"{name}: command not found; --launcher slurm runs where Slurm's client commands "
            "are (a cluster's login node)"
        )
    return found


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [command(argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(argv)}: no answer in {timeout:.0f} s") from None


def _error(argv: tuple[str, ...], proc: subprocess.CompletedProcess[str]) -> SlurmError:
    text = (proc.stderr or proc.stdout or f"exit status {proc.returncode}").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return SlurmError(f"{' '.join(argv)}: {lines[-1] if lines else text}")


def sbatch(script: Path) -> str:
    """Submit ``script``; its job id."""
    argv = ("sbatch", "--parsable", str(script))
    proc = _run(*argv)
    if proc.returncode != 0:
        raise _error(argv, proc)
    job_id = proc.stdout.strip().split(";")[0]  # "1234" or "1234;cluster"
    if not job_id.isdigit():
        raise SlurmError(f"sbatch {script}: unexpected answer {proc.stdout.strip()[:200]!r}")
    return job_id


def task_states(job: str) -> dict[str, str]:
    """``{"1234_0": "RUNNING", ...}``: every task of job ``job`` (or one task, ``1234_0``)
    that Slurm still knows, pending ones included; {} once Slurm forgot the job."""
    argv = ("squeue", "--noheader", "--array", "--states=all", f"--jobs={job}", "--format=%i %T")
    proc = _run(*argv)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # purged: finished long enough ago
            return {}
        raise _error(argv, proc)
    states = {}
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2:
            states[fields[0]] = fields[1]
    return states


def live(states: dict[str, str]) -> dict[str, str]:
    """The tasks that will still run: pending, running, completing, requeued or held."""
    return {task: state for task, state in states.items() if state not in FINISHED_STATES}


def task_alive(slurm_id: str) -> bool:
    """True while array task ``slurm_id`` (``1234_0``) is pending, running or requeued."""
    return bool(live(task_states(slurm_id)))


def current_task() -> tuple[str, int] | None:
    """(array job id, task id) of the array task this process runs in, else None."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task and task.isdigit():
        return job, int(task)
    return None


def restarts() -> int:
    """How often Slurm requeued this job (SLURM_RESTART_COUNT, unset on the first run)."""
    count = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(count) if count.isdigit() else 0


def requeue_self() -> bool:
    """Put this array task back in Slurm's queue; True when Slurm took it.

    Call it last: Slurm answers by sending SIGTERM to every process of the task, so this
    process ignores SIGTERM from here on and should exit right after."""
    task = current_task()
    if task is None:
        return False
    target = f"{task[0]}_{task[1]}"
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    argv = ("scontrol", "requeue", target)
    proc = _run(*argv)
    if proc.returncode == 0:
        return True
    # the requeue's SIGTERM can hit scontrol itself after Slurm took the requeue (rc 143):
    # the job's restart count says whether it did
    shown = _run("scontrol", "--oneliner", "show", "job", target).stdout
    match = re.search(r"\bRestarts=(\d+)", shown)
    if match is not None and int(match[1]) > restarts():
        return True
    log.warning("Slurm did not requeue %s: %s", target, _error(argv, proc))
    return False
