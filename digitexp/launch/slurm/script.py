"""The job script: a plain sbatch script that the user can read, keep and submit again.

Every array task runs ``python -m digitexp slurm-task JOB_FOLDER``, which reads its variant x
seed from the folder's manifest by ``SLURM_ARRAY_TASK_ID``. The script is the whole contract
with Slurm:

- ``--array=0-N%K``: one task per variant x seed, K at a time;
- ``--requeue --open-mode=append``: a task may be requeued, and its log keeps every attempt;
- ``--signal=B:USR1@S``: S seconds before the time limit Slurm sends USR1 to the batch
  process, which is Python itself (``exec``), or bash passing it on to torchrun's processes;
  the task then stops at a safe point, marks its run resumable and requeues itself;
- ``--chdir``: tasks run where ``run`` was called, so relative paths mean the same.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from digitexp.launch.slurm.manifest import LOGS, MANIFEST, SCRIPT, Manifest


def job_script(manifest: Manifest, folder: Path, python: str | None = None) -> str:
    """The sbatch script of ``manifest``'s array, with its job folder ``folder``."""
    opts = manifest.options
    python = shlex.quote(python or sys.executable)
    where = shlex.quote(str(folder))
    n = len(manifest.tasks)
    array = f"0-{n - 1}" + (f"%{opts.max_parallel}" if opts.max_parallel else "")
    header = [
        "#!/bin/bash",
        f"# digitexp: {n} run(s) of {manifest.spec_path} as a Slurm job array, one variant x "
        "seed per task,",
        f"# into MLflow experiment {manifest.experiment!r} (preset "
        f"{manifest.preset or 'none'}); {folder / MANIFEST} maps tasks to runs:",
        *[f"#   task {t.task}: {t.name}" for t in manifest.tasks],
        f"# A task warned with USR1 ({opts.signal_lead} s before its time limit, or before a "
        "preemption)",
        "# stops at a safe point and requeues itself; its run resumes from the last epoch.",
        f"# Run tasks again (they resume their runs): sbatch --array=3,5 {folder / SCRIPT}",
    ]
    sbatch = [
        f"--job-name=digitexp-{manifest.spec_name}",
        f"--array={array}",
        f"--output={folder / LOGS}/%A_%a.out",
        "--open-mode=append",
        "--requeue",
        f"--signal=B:USR1@{opts.signal_lead}",
        f"--chdir={manifest.workdir}",
        "--ntasks=1",
        *opts.sbatch_lines(),
    ]
    body = [
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" PYTHONUNBUFFERED=1',
        "trap '' USR1  # a warning before Python can take it must not kill the task",
    ]
    task = f"-m digitexp slurm-task {where}"
    if opts.gpus_per_task > 1:
        body += [
            f"# torchrun: {opts.gpus_per_task} processes (one per GPU) train the run with DDP; "
            "bash passes USR1 on",
            f"{python} -m torch.distributed.run --standalone "
            f"--nproc_per_node={opts.gpus_per_task} {task} &",
            "torchrun=$!",
            "trap 'pkill -USR1 -P \"$torchrun\"' USR1",
            "trap 'kill -TERM \"$torchrun\" 2>/dev/null' TERM",
            "while :; do",
            '    wait "$torchrun"; status=$?',
            '    kill -0 "$torchrun" 2>/dev/null || break  # a trap ended the wait: wait again',
            "done",
            'exit "$status"',
        ]
    else:
        body.append(f"exec {python} {task}")
    lines = header + [f"#SBATCH {option}" for option in sbatch] + body
    return "\n".join(lines) + "\n"
