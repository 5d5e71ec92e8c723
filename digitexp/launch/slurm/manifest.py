"""The job folder of one submission: the job script, ``manifest.json`` (what each array task
trains, where it logs) and the tasks' Slurm logs.

```
slurm/anchors-20250101-120000/
  job.sh            the sbatch script (``run --dry-run`` prints the same)
  manifest.json     spec, preset, --set, experiment, tracking URI, parent run, the task list
  logs/1234_0.out   one log per array task (appended to across requeues)
```

The manifest never holds a password: a tracking URI with one is stored masked, and the tasks
take the real one from ``MLFLOW_TRACKING_URI`` in their environment (sbatch passes the
submitting shell's environment on).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from digitexp.common import files
from digitexp.errors import ConfigError
from digitexp.launch.slurm.options import SlurmOptions
from digitexp.tracking import mask_uri

MANIFEST = "manifest.json"
SCRIPT = "job.sh"
LOGS = "logs"
VERSION = 1


@dataclass(frozen=True)
class TaskEntry:
    """One array task: one variant x seed."""

    task: int
    variant: str
    seed: int
    name: str  # the child run's name, {spec}/{variant}/s{seed}
    config_hash: str  # of the resolved config at submission


@dataclass(frozen=True)
class Manifest:
    spec_path: str  # as given to `run` (relative to workdir, or absolute)
    spec_name: str
    preset: str | None
    sets: tuple[str, ...]  # the --set overrides, KEY=repr(VALUE)
    experiment: str
    tracking_uri: str  # masked when it holds a password
    parent_run_id: str
    workdir: str  # the folder `run` was called from: the tasks run there
    tasks: tuple[TaskEntry, ...]
    options: SlurmOptions
    created: str
    job_id: str | None = None  # the array's job id, once submitted

    def task(self, index: int) -> TaskEntry:
        for entry in self.tasks:
            if entry.task == index:
                return entry
        raise ConfigError(f"task {index}: the job has tasks 0..{len(self.tasks) - 1}")

    def with_job(self, job_id: str) -> Manifest:
        return replace(self, job_id=job_id)

    def tracking_uri_for_task(self) -> str:
        """The store the tasks log to: the manifest's URI, or, when it was stored masked,
        ``MLFLOW_TRACKING_URI`` from the environment (which must be the same URI)."""
        if ":***@" not in self.tracking_uri:
            return self.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI", "")
        if mask_uri(env) != self.tracking_uri:
            raise ConfigError(
                f"{MANIFEST}: the tracking URI {self.tracking_uri} has a password, which the "
                "manifest does not keep: export MLFLOW_TRACKING_URI with it where the job runs"
            )
        return env


def job_folder(root: Path, spec_name: str) -> Path:
    """A new folder ``root/<spec>-<time>`` (absolute; -2, -3... when taken)."""
    base = root.resolve() / f"{spec_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    data: dict[str, Any] = {"version": VERSION, **asdict(manifest)}
    return files.write_json(folder / MANIFEST, data, indent=1)


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such manifest (the job folder `run` wrote)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: malformed manifest (not a JSON object)")
    if data.get("version") != VERSION:
        raise ConfigError(
            f"{path}: manifest version {data.get('version')!r}, this digitexp reads {VERSION}"
        )
    try:
        options = dict(data["options"])
        options["extra"] = tuple(options.get("extra", ()))
        return Manifest(
            spec_path=data["spec_path"],
            spec_name=data["spec_name"],
            preset=data["preset"],
            sets=tuple(data["sets"]),
            experiment=data["experiment"],
            tracking_uri=data["tracking_uri"],
            parent_run_id=data["parent_run_id"],
            workdir=data["workdir"],
            tasks=tuple(TaskEntry(**t) for t in data["tasks"]),
            options=SlurmOptions(**options),
            created=data["created"],
            job_id=data.get("job_id"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: malformed manifest ({exc})") from None
