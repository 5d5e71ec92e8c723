"""Launching a spec's variants x seeds: where and in what order jobs train.

- :mod:`.plans`: :class:`RunPlan` per variant x seed, and the checks before any run exists.
- :mod:`.jobs`: what every launcher shares: tags, opening the parent and the child runs,
  training a child under a heartbeat, ending it with an honest status.
- :mod:`.story`: what the MLflow UI tells of a launch: run names, descriptions, the parent's
  comparison of its children, the experiment's description and view.
- :mod:`.local`: one process, one job after another under one parent run; resume in place;
  torchrun ranks (:func:`follow`).
- :mod:`.queue`: any number of workers sharing an Optuna study as a work queue.

A new launcher (a cluster scheduler, say) plans with :func:`plan_runs` and trains each job
with :func:`open_child` and :func:`run_one`.
"""

from digitexp.launch.jobs import Job, open_child, run_one
from digitexp.launch.local import execute, follow, resume
from digitexp.launch.plans import RunOutcome, RunPlan, plan_runs, preflight
from digitexp.launch.queue import work

__all__ = [
    "Job",
    "RunOutcome",
    "RunPlan",
    "execute",
    "follow",
    "open_child",
    "plan_runs",
    "preflight",
    "resume",
    "run_one",
    "work",
]
