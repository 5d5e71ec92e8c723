"""``run SPEC --launcher slurm``: a spec's variants x seeds as one Slurm job array.

The unit of work is a command, not a pickled function: each array task runs
``python -m digitexp slurm-task JOB_FOLDER`` from a generated sbatch script, so the script can
be read, kept and resubmitted, and nothing ties a task to the submitting interpreter (the
reason digitexp does not use submitit, whose job tracking also needs ``sacct``).

- :mod:`.options`: :class:`SlurmOptions`, the resources asked for, checked up front.
- :mod:`.manifest`: the job folder: ``job.sh``, ``manifest.json`` (task id -> variant x seed,
  the parent run, the store), ``logs/``.
- :mod:`.script`: the sbatch script (``--dry-run`` prints it).
- :mod:`.scheduler`: the Slurm commands used: sbatch, squeue, scontrol requeue.
- :mod:`.submit`: checks, the parent run, the job folder, sbatch.
- :mod:`.task`: one array task: train or resume its run; requeue on a warning; the last task
  done ends the parent.
- :mod:`.follow`: ``--wait``: follow the array, then the outcomes from MLflow.
"""

from digitexp.launch.slurm.follow import follow, outcomes
from digitexp.launch.slurm.manifest import Manifest, TaskEntry, read_manifest
from digitexp.launch.slurm.options import SlurmOptions
from digitexp.launch.slurm.scheduler import SlurmError
from digitexp.launch.slurm.script import job_script
from digitexp.launch.slurm.submit import Submission, prepare, preview, submit
from digitexp.launch.slurm.task import TaskResult, run_task, settle_parent

__all__ = [
    "Manifest",
    "SlurmError",
    "SlurmOptions",
    "Submission",
    "TaskEntry",
    "TaskResult",
    "follow",
    "job_script",
    "outcomes",
    "prepare",
    "preview",
    "read_manifest",
    "run_task",
    "settle_parent",
    "submit",
]
