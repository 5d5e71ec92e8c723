"""Where a run came from: the git commit of the code that ran it, who ran it and from what,
as MLflow's standard tags (the run table's Source, Version and User columns)."""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from digitexp.tracking.contract import SOURCE_GIT_COMMIT, SOURCE_NAME, SOURCE_TYPE, USER


def git_commit(path: Path | None = None) -> str:
    """The current commit of the repository holding ``path`` (or the cwd), or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def user_name() -> str:
    """The user running this process ('unknown' where the platform cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def source_tags(source: str, commit: str) -> dict[str, str]:
    """MLflow's standard tags: ``source`` (a spec file, or a command such as ``digitexp
    search``) as the run's local source, the commit (left out when unknown) and the user."""
    tags = {SOURCE_NAME: source, SOURCE_TYPE: "LOCAL", USER: user_name()}
    if commit and commit != "unknown":
        tags[SOURCE_GIT_COMMIT] = commit
    return tags
