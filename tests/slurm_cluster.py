"""A real single-node Slurm for the tests: munged, slurmctld and slurmd on 127.0.0.1, with every
file (slurm.conf, munge key and socket, state, spool, logs, pid files) in one work folder.

Debian's ``slurm-wlm`` and ``munge`` packages (``.ci/run`` installs them when missing); the
daemons run as root, without cgroups or accounting (so no ``sacct``: jobs are followed with
``squeue`` and ``scontrol``). The configuration schedules every second and holds a requeued
job for only ``cred_expire`` + 1 seconds, so an array with one requeue runs in about a minute.
Two clusters in two folders do not collide: each has its own ports, cluster name, munge key
and socket. Unix socket paths are limited to 108 bytes, so the folder's path must be short
(pytest's ``tmp_path_factory`` folders are).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from servers import Unavailable, free_port

SBIN = ("/usr/sbin", "/sbin")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def _path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), *SBIN])


def _which(name: str) -> str:
    found = shutil.which(name, path=_path())
    if not found:
        raise Unavailable(
            f"Slurm's {name} is not installed (Debian: apt-get install slurm-wlm munge; "
            ".ci/run does it)"
        )
    return found


@dataclass(frozen=True)
class SlurmCluster:
    work: Path
    conf: Path
    env: dict[str, str]  # the environment that reaches this cluster (SLURM_CONF, PATH)

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def batch_pid(self, job: str) -> int | None:
        """The pid of the batch script of ``job`` (``A_T``): LOCALID 0 of step ``batch``,
        which is Python itself when the script ``exec``s it. None when it does not run."""
        out = self.run("squeue", "-h", "-j", job, "-o", "%A %T", check=False).split()
        if len(out) < 2 or out[1] != "RUNNING":
            return None
        listing = self.run("scontrol", "listpids", out[0], check=False)
        for line in listing.splitlines()[1:]:  # PID JOBID STEPID LOCALID GLOBALID
            fields = line.split()
            if len(fields) >= 4 and fields[2] == "batch" and fields[3] == "0":
                return int(fields[0])
        return None


def _alive(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` when it names a live process (a zombie counts as dead)."""
    try:
        pid = int(pid_file.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def _stop(pid_file: Path) -> None:
    pid = _alive(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid_file) is not None:
        os.kill(pid, signal.SIGKILL)


def _leftovers(conf: Path) -> list[int]:
    """Processes started by this cluster that outlived it (slurmstepd, job processes): found
    by ``SLURM_CONF=<our conf>`` in their environment; never this process or its parents."""
    mine = set()
    pid = os.getpid()
    while pid > 1:
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            break
    marker = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if marker in environ and (
            comm == "slurmstepd" or any(e.startswith(b"SLURM_JOB_ID=") for e in environ)
        ):
            found.append(int(entry.name))
    return found


def _conf(work: Path, host: str, cpus: int, cred_expire: int) -> str:
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    cluster = f"dx{zlib.crc32(str(work).encode()):x}"[:12]
    lines = {
        "ClusterName": cluster,
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        # cred_expire is also how long a requeued job waits before it may start again
        "AuthInfo": f"socket={work}/munge/munge.socket,cred_expire={cred_expire}",
        "StateSaveLocation": f"{work}/state",
        "SlurmdSpoolDir": f"{work}/spool",
        "SlurmctldPidFile": f"{work}/run/slurmctld.pid",
        "SlurmdPidFile": f"{work}/run/slurmd.pid",
        "SlurmctldLogFile": f"{work}/log/slurmctld.log",
        "SlurmdLogFile": f"{work}/log/slurmd.log",
        "ProctrackType": "proctrack/linuxproc",  # no cgroups anywhere
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "MpiDefault": "none",
        "MailProg": "/bin/true",
        "SwitchType": "switch/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "SlurmdParameters": "config_overrides",
        "SchedulerType": "sched/backfill",
        "SchedulerParameters": "sched_interval=1,bf_interval=1,sched_min_interval=100000,"
        "batch_sched_delay=0",
        "ReturnToService": 2,
        "JobRequeue": 1,
        "MinJobAge": 60,
        "KillWait": 5,
        "MessageTimeout": 10,
        "SlurmdTimeout": 60,
        "InactiveLimit": 0,
        "Waittime": 0,
        "CompleteWait": 0,
    }
    text = [f"# generated for the digitexp tests in {work}"]
    text += [f"{key}={value}" for key, value in lines.items()]
    text.append(
        f"NodeName={host} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} "
        f"RealMemory={memory_mb} State=UNKNOWN"
    )
    text.append(f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(text) + "\n"


@contextmanager
def slurm_cluster(
    work: Path, *, cpus: int | None = None, cred_expire: int = 5
) -> Iterator[SlurmCluster]:
    """Start the cluster in ``work``; stop every daemon and job of it afterwards."""
    if os.geteuid() != 0:
        raise Unavailable("a test Slurm runs its daemons as root: run the tests as root")
    bins = {name: _which(name) for name in DAEMONS}
    work = work.resolve()
    host = socket.gethostname().split(".")[0]
    probe = work / "spool" / f"{host}_4294967294.4294967294"
    if len(str(probe)) > 100:
        raise Unavailable(f"{work}: path too long for Slurm's unix sockets")
    for sub in ("munge", "state", "spool", "log", "run"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "munge").chmod(0o711)
    conf = work / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": _path()}
    try:
        key = work / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))  # what `mungekey --create` writes
        key.chmod(0o400)
        _start(
            [
                bins["munged"],
                "--force",
                f"--socket={work}/munge/munge.socket",
                f"--key-file={key}",
                f"--pid-file={work}/run/munged.pid",
                f"--log-file={work}/log/munged.log",
                f"--seed-file={work}/munge/munged.seed",
                "--num-threads=2",
            ]
        )
        conf.write_text(_conf(work, host, cpus or os.cpu_count() or 1, cred_expire))
        _start([bins["slurmctld"], "-i", "-f", str(conf)], env)
        _start([bins["slurmd"], "-N", host, "-f", str(conf)], env)
        cluster = SlurmCluster(work, conf, env)
        deadline = time.monotonic() + 60
        while "idle" not in cluster.run("sinfo", "-h", "-n", host, "-o", "%T", check=False):
            if time.monotonic() > deadline:
                logs = (work / "log" / "slurmctld.log").read_text()[-1500:]
                raise Unavailable(f"the test Slurm's node never became idle: {logs}")
            time.sleep(0.2)
        yield cluster
    finally:
        _shutdown(work, conf, env)


def _start(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise Unavailable(f"{Path(argv[0]).name} did not start: {proc.stderr.strip()[-500:]}")


def _shutdown(work: Path, conf: Path, env: dict[str, str]) -> None:
    if _alive(work / "run" / "slurmctld.pid") is not None:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, check=False, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            live = subprocess.run(
                ["squeue", "-h", "-o", "%T"], env=env, capture_output=True, text=True, check=False
            ).stdout
            if not live.strip():
                break
            time.sleep(0.2)
    for daemon in ("slurmd", "slurmctld"):
        _stop(work / "run" / f"{daemon}.pid")
    for pid in _leftovers(conf):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _stop(work / "run" / "munged.pid")
