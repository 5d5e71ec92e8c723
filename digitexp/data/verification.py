"""Every image decoded once before it is trusted, remembered so the next run does not redo it.

A header check (:func:`digitexp.data.images.read_header`) cannot see truncated or corrupt
pixel data; such an image would only fail when a loader decodes it, in the middle of a run.
:func:`verify_images` decodes every image of a split (in threads, with a progress bar) and
raises one :class:`DataError` naming each bad file. The files that decoded are remembered in
``.digitexp-verified.json`` inside the image folder (file name -> size and modification
time, written atomically; skipped when the folder is read-only), so the next check decodes
only new or changed files: a second ``run`` on the same data costs a ``stat`` per image.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from digitexp.common import files
from digitexp.common.progress import Progress
from digitexp.data.images import MAX_IMAGE_PIXELS, decode_problem
from digitexp.data.splits import Split
from digitexp.errors import DataError

log = logging.getLogger("digitexp.data")

RECORD_NAME = ".digitexp-verified.json"
RULES = f"decode-v1-max{MAX_IMAGE_PIXELS}"  # a record made under other rules is not trusted


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except (OSError, ValueError):  # ValueError: a name with a NUL byte
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_record(folder: Path) -> dict[str, list[int]]:
    """The files of ``folder`` verified earlier; empty when there is no (usable) record."""
    try:
        raw: Any = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or raw.get("rules") != RULES:
        return {}
    verified = raw.get("files")
    if not isinstance(verified, dict):
        return {}
    return {k: v for k, v in verified.items() if isinstance(v, list) and len(v) == 2}


def _write_record(folder: Path, verified: dict[str, list[int]]) -> None:
    try:
        files.write_json(folder / RECORD_NAME, {"rules": RULES, "files": verified}, compact=True)
    except OSError as exc:  # a read-only data folder: verify again next time
        log.debug("could not record verified images in %s: %s", folder, exc)


def decode_problems(
    paths: Sequence[Path], progress: bool | None = None, desc: str = "decode images"
) -> list[tuple[Path, str]]:
    """(path, problem) for every file of ``paths`` that does not fully decode."""
    if not paths:
        return []
    workers = min(8, (os.cpu_count() or 1) * 2)
    found: list[tuple[Path, str]] = []
    with (
        Progress(len(paths), desc, enabled=progress, unit="img") as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for path, problem in zip(paths, pool.map(decode_problem, paths, chunksize=16), strict=True):
            bar.update(1)
            if problem is not None:
                found.append((path, problem))
    return found


def unverified(folder: Path, names: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    """The names of ``folder`` not verified with their current size and mtime, and the record
    of those that are."""
    record = _read_record(folder)
    todo: list[str] = []
    still: dict[str, list[int]] = {}
    for name in names:
        stamp = _stamp(folder / name)
        if stamp is not None and record.get(name) == stamp:
            still[name] = stamp
        else:
            todo.append(name)
    return todo, still


def check_decodes(
    folder: Path, names: Sequence[str], progress: bool | None = None
) -> list[tuple[Path, str]]:
    """Decode the files ``names`` of ``folder`` that are not recorded as verified; record
    the ones that decode; return the problems of the others."""
    todo, verified = unverified(folder, names)
    if not todo:
        return []
    paths = [folder / name for name in todo]
    problems = decode_problems(paths, progress, desc=f"decode {folder.name}/")
    bad = {str(path) for path, _ in problems}
    for name in todo:
        stamp = _stamp(folder / name)
        if str(folder / name) not in bad and stamp is not None:
            verified[name] = stamp
    previous = _read_record(folder)
    if any(previous.get(k) != v for k, v in verified.items()):
        _write_record(folder, {**previous, **verified})
    return problems


def split_problems(split: Split, progress: bool | None = None) -> list[str]:
    """One line per image of ``split`` that does not fully decode."""
    names = [record.file_name for record in split.images]
    where = f"{split.json_path}: " if split.json_path else ""
    return [
        f"{where}{path}: {problem}"
        for path, problem in check_decodes(split.image_dir, names, progress)
    ]


def verify_images(*splits: Split, progress: bool | None = None) -> None:
    """Decode every image of ``splits`` not verified before; DataError (the first problem,
    and how many more) when one does not decode."""
    problems: list[str] = []
    for split in splits:
        problems += split_problems(split, progress)
    if problems:
        more = (
            f" (and {len(problems) - 1} more; run: digitexp data check)"
            if len(problems) > 1
            else ""
        )
        raise DataError(problems[0] + more, problems)
