"""What a Slurm job array asks the scheduler for: :class:`SlurmOptions`, checked before anything
is submitted (a bad ``--time`` fails here, in one line, not in ``sbatch``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from digitexp.errors import ConfigError

# Slurm's --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.,:+-]+$")  # partition, account, qos: no spaces, no quotes


def time_seconds(text: str) -> int:
    """Seconds of a Slurm ``--time`` value (``90``, ``1:30:00``, ``2-12``, ...)."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ConfigError(
            f"--time {text!r}: not a Slurm time limit (HH:MM:SS, MM, MM:SS, D-HH, D-HH:MM, "
            "D-HH:MM:SS)"
        )
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:  # MM:SS
        hours, (minutes, seconds) = 0, parts
    else:  # MM
        hours, minutes, seconds = 0, parts[0], 0
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True)
class SlurmOptions:
    """The resources and limits of every task of the array (each maps to one ``#SBATCH``
    line of the job script; None leaves the cluster's default)."""

    partition: str | None = None
    gpus_per_task: int = 0  # > 1: torchrun starts one process per GPU inside the task
    cpus_per_task: int | None = None
    mem: str | None = None  # per node, e.g. 16G
    time: str | None = None  # the time limit, e.g. 04:00:00
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None  # tasks running at once (%K of --array)
    signal_lead: int = 120  # seconds before the time limit that Slurm warns with USR1
    extra: tuple[str, ...] = ()  # further sbatch options, as given (e.g. --constraint=a100)

    def __post_init__(self) -> None:
        for flag, value in (
            ("--partition", self.partition),
            ("--account", self.account),
            ("--qos", self.qos),
        ):
            if value is not None and not _NAME.match(value):
                raise ConfigError(f"{flag} {value!r}: not a Slurm name (letters, digits, _.,:+-)")
        for flag, number, least in (
            ("--gpus-per-task", self.gpus_per_task, 0),
            ("--cpus-per-task", self.cpus_per_task, 1),
            ("--max-parallel", self.max_parallel, 1),
            ("--signal-lead", self.signal_lead, 1),
        ):
            if number is not None and number < least:
                raise ConfigError(f"{flag} {number}: must be at least {least}")
        if self.mem is not None and not _MEM.match(self.mem):
            raise ConfigError(f"--mem {self.mem!r}: a size like 16G, 8000M or 500 (megabytes)")
        if self.time is not None and self.time.upper() not in ("UNLIMITED", "INFINITE"):
            limit = time_seconds(self.time)
            if limit <= self.signal_lead:
                raise ConfigError(
                    f"--time {self.time}: the limit ({limit} s) must be longer than the "
                    f"warning before it (--signal-lead {self.signal_lead} s)"
                )
        for option in self.extra:
            if not option.startswith("--") or any(c in option for c in "\n\r"):
                raise ConfigError(
                    f"--sbatch {option!r}: one sbatch option per flag, like --constraint=a100"
                )

    def sbatch_lines(self) -> list[str]:
        """The resource options, as ``--name=value``, in a stable order."""
        lines = []
        for name, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("qos", self.qos),
            ("time", self.time),
            ("mem", self.mem),
            ("cpus-per-task", self.cpus_per_task),
        ):
            if value is not None:
                lines.append(f"--{name}={value}")
        if self.gpus_per_task:
            lines.append(f"--gpus-per-task={self.gpus_per_task}")
        return lines + list(self.extra)
