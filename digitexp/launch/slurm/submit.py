"""Submitting a spec's variants x seeds as one Slurm job array.

Everything that can be checked here is checked before anything exists: the spec and its
overrides (already loaded), the options, ``sbatch`` on this machine, the data (every
annotation and image header) and the model. Then the parent run is created, the job folder
written (``job.sh``, ``manifest.json``) and the script submitted; a refused submission ends
the parent FAILED with sbatch's answer, so nothing is left RUNNING.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitexp.common import files
from digitexp.config import config_hash
from digitexp.launch.jobs import end_with_error, open_invocation
from digitexp.launch.plans import RunPlan, preflight
from digitexp.launch.slurm import scheduler
from digitexp.launch.slurm.manifest import (
    LOGS,
    SCRIPT,
    Manifest,
    TaskEntry,
    job_folder,
    write_manifest,
)
from digitexp.launch.slurm.options import SlurmOptions
from digitexp.launch.slurm.script import job_script
from digitexp.tracking import MlflowTracker, TrackingStore, git_commit, mask_uri
from digitexp.tracking import contract as names
from digitexp.tracking.uri import sqlite_path

log = logging.getLogger("digitexp.slurm")


@dataclass(frozen=True)
class Submission:
    job_id: str
    folder: Path
    manifest: Manifest

    @property
    def script(self) -> Path:
        return self.folder / SCRIPT

    def log_path(self, task: int | str = "<task>") -> Path:
        return self.folder / LOGS / f"{self.job_id}_{task}.out"


def manifest_of(
    plans: Sequence[RunPlan],
    *,
    experiment: str,
    options: SlurmOptions,
    sets: Mapping[str, Any],
    tracking_uri: str,
    parent_run_id: str,
) -> Manifest:
    """What the array tasks need to know, one entry per plan (task id = position)."""
    spec = plans[0].spec
    db = sqlite_path(tracking_uri)
    if db is not None:  # the tasks may start elsewhere: an absolute path
        tracking_uri = f"sqlite:///{db.resolve()}"
    return Manifest(
        spec_path=str(spec.path),
        spec_name=spec.name,
        preset=spec.preset,
        sets=tuple(f"{key}={value!r}" for key, value in sets.items()),
        experiment=experiment,
        tracking_uri=mask_uri(tracking_uri),
        parent_run_id=parent_run_id,
        workdir=os.getcwd(),
        tasks=tuple(
            TaskEntry(i, p.variant, p.seed, p.name, config_hash(p.cfg)) for i, p in enumerate(plans)
        ),
        options=options,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def preview(
    plans: Sequence[RunPlan],
    *,
    experiment: str,
    options: SlurmOptions,
    sets: Mapping[str, Any],
    tracking_uri: str,
    root: Path,
) -> str:
    """The job script a submission would write (``run --dry-run``): nothing is created."""
    manifest = manifest_of(
        plans,
        experiment=experiment,
        options=options,
        sets=sets,
        tracking_uri=tracking_uri,
        parent_run_id="(created at submission)",
    )
    return job_script(manifest, job_folder(root, plans[0].spec.name))


def prepare(
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    options: SlurmOptions,
    sets: Mapping[str, Any],
    root: Path,
) -> tuple[Path, Manifest]:
    """Check the data and the model, create the parent run and write the job folder (the
    script and the manifest); the folder and its manifest. Nothing is submitted: the tasks
    can be run by hand (``slurm-task FOLDER --task N``) or the script submitted later."""
    preflight([p.cfg for p in plans], check_device=False)
    spec = plans[0].spec
    commit = git_commit(spec.path.resolve().parent)
    parent = open_invocation(store, experiment, plans, commit, "slurm")
    try:
        manifest = manifest_of(
            plans,
            experiment=experiment,
            options=options,
            sets=sets,
            tracking_uri=store.uri,
            parent_run_id=parent.run_id,
        )
        folder = job_folder(root, spec.name)
        (folder / LOGS).mkdir(parents=True)
        write_manifest(folder, manifest)
        files.write_text(folder / SCRIPT, job_script(manifest, folder)).chmod(0o755)
    except BaseException as exc:
        end_with_error(store, parent, "FAILED", f"not submitted: {exc}")
        raise
    return folder, manifest


def submit(
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    options: SlurmOptions,
    sets: Mapping[str, Any],
    root: Path,
) -> Submission:
    """Check, create the parent run, write the job folder, ``sbatch`` it; the submission."""
    scheduler.command("sbatch")
    folder, manifest = prepare(
        plans, store, experiment=experiment, options=options, sets=sets, root=root
    )
    try:
        job_id = scheduler.sbatch(folder / SCRIPT)
    except BaseException as exc:
        end_with_error(
            store, MlflowTracker(store, manifest.parent_run_id), "FAILED", f"not submitted: {exc}"
        )
        raise
    manifest = manifest.with_job(job_id)
    write_manifest(folder, manifest)
    MlflowTracker(store, manifest.parent_run_id).set_tags({names.TAG_SLURM_JOB: job_id})
    log.info("submitted %s as Slurm job %s (%d tasks)", folder / SCRIPT, job_id, len(plans))
    return Submission(job_id, folder, manifest)
