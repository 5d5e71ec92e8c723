"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A process killed mid-write leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600 files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_with(path: Path, writer: Callable[[BinaryIO], None]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_with(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path: Path, obj: Any, indent: int | None = None, compact: bool = False) -> Path:
    separators = (",", ":") if compact else None
    return write_text(path, json.dumps(obj, indent=indent, separators=separators))


CSV_FLOAT_FORMAT = "%.6g"  # six significant digits: 0.30000000000000004 is written 0.3


def write_csv(path: Path, frame: Any) -> Path:
    """A pandas DataFrame as CSV, without its index and without float noise."""
    return write_text(path, frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
