"""A run's CPU allotment: how many CPUs it may use, shared with the other digitexp runs on
this machine, applied to torch's threads and the loader workers (``train.threads``).

torch's intra-op pool defaults to every physical core of the machine, whatever the process's
CPU affinity or Slurm allotment, so two runs side by side (several ``run`` commands, queue
workers, DDP ranks on one host) each start a full pool and fight over the cores. With
``train.threads=auto`` a run takes its share instead:

- the budget: ``SLURM_CPUS_PER_TASK`` under Slurm (at most the CPUs the process may run on),
  else the CPUs of the process's affinity (``os.sched_getaffinity``: taskset, cgroup cpusets);
- the runs sharing it: every live trainer on this host registered with the same CPU set (and
  the same Slurm job) in a small registry, one file per process under
  ``$TMPDIR/digitexp-<uid>/cpus`` (``DIGITEXP_CPU_REGISTRY`` overrides), each held with an
  exclusive ``flock`` for the trainer's life. A file whose lock can be taken belongs to a
  process that is gone (the kernel drops the lock at exit, crash or kill included) and is
  removed; no PID is trusted;
- the share: budget // runs (at least 1), counted again at the start of every epoch, so a run
  that started alone gives up threads at its next epoch when another one starts beside it.

An integer ``train.threads`` is used as is. The registry only sees runs of the same user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

log = logging.getLogger("digitexp.train")

REGISTRY_ENV = "DIGITEXP_CPU_REGISTRY"
SUFFIX = ".lock"


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))  # pragma: no cover (macOS, Windows)


def slurm_cpus() -> int | None:
    """``SLURM_CPUS_PER_TASK`` when set to a positive integer, else None."""
    raw = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def cpu_budget() -> int:
    """The CPUs the runs of this process's pool share: Slurm's per-task count (at most the
    affinity) or the affinity."""
    cpus = len(affinity())
    slurm = slurm_cpus()
    return min(slurm, cpus) if slurm is not None else cpus


def pool_key() -> str:
    """Runs with the same key share one budget: the same CPU set and the same Slurm job."""
    text = ",".join(map(str, sorted(affinity()))) + "|" + os.environ.get("SLURM_JOB_ID", "")
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def registry_dir() -> Path:
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"digitexp-{uid}" / "cpus"


def _held_by_someone(path: Path) -> bool:
    """True when another open file holds ``path``'s lock (a live process)."""
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False


class HostRegistry:
    """This process's entry among the live trainers of its CPU pool (see the module doc)."""

    def __init__(self, folder: Path | None = None, key: str | None = None) -> None:
        self.folder = folder if folder is not None else registry_dir()
        self.key = key if key is not None else pool_key()
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # made under a temporary name and renamed once locked: a counter never sees an
        # unlocked entry of a live process
        fd, tmp = tempfile.mkstemp(prefix=".new-", dir=self.folder)
        self.file: IO[bytes] | None = os.fdopen(fd, "wb")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        self.path = self.folder / f"{self.key}.{os.getpid()}.{Path(tmp).name[5:]}{SUFFIX}"
        os.replace(tmp, self.path)
        self._finalizer = weakref.finalize(self, HostRegistry._release, self.file, self.path)

    @staticmethod
    def _release(file: IO[bytes], path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        file.close()  # drops the lock

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def count(self) -> int:
        """Live trainers of this pool, this one included; stale entries are removed."""
        live = 0 if self.closed else 1
        for path in self.folder.glob(f"{self.key}.*{SUFFIX}"):
            if path == self.path:
                continue
            if _held_by_someone(path):
                live += 1
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        return live


@dataclass(frozen=True)
class Share:
    """One count: the budget, the runs sharing it, and this run's threads."""

    budget: int
    runs: int
    threads: int


def share(setting: int | str, budget: int, runs: int) -> Share:
    """``train.threads`` resolved: an integer as is, ``auto`` the budget split evenly."""
    if setting == "auto":
        return Share(budget, runs, max(1, budget // max(1, runs)))
    return Share(budget, runs, int(setting))


class CpuAllotment:
    """A trainer's CPU allotment: registered while the trainer lives, applied per epoch."""

    def __init__(self, setting: int | str) -> None:
        self.setting = setting
        self.registry: HostRegistry | None = None
        if setting == "auto":
            try:
                self.registry = HostRegistry()
            except OSError as exc:  # no writable temp dir: this run counts itself alone
                log.warning("CPU registry unavailable (%s): the run counts itself alone", exc)
        self.current: Share | None = None

    def count(self) -> Share:
        runs = self.registry.count() if self.registry is not None else 1
        return share(self.setting, cpu_budget(), runs)

    def apply(self) -> Share:
        """Count the runs again and set torch's intra-op threads to this run's share."""
        now = self.count()
        if now != self.current:
            torch.set_num_threads(now.threads)
            set_interop_threads(now.threads)
            if self.setting == "auto":
                log.info(
                    "CPU allotment: %d thread(s) (%d CPU(s) shared by %d digitexp run(s) here)",
                    now.threads,
                    now.budget,
                    now.runs,
                )
            self.current = now
        return now

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()


def set_interop_threads(threads: int) -> None:
    """torch's inter-op pool, sized once per process (torch refuses later changes)."""
    if torch.get_num_interop_threads() == threads:
        return
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
