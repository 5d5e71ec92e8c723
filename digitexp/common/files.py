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


def naming(exc: OSError, path: Path) -> OSError:
    """The same error, naming ``path`` (the destination) instead of a temporary file."""
    error = OSError(exc.errno, exc.strerror or str(exc), str(path))
    error.__cause__ = None
    return error


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    An OSError of the block or of the final steps (a full disk, a file-size limit) names
    ``path``, the destination, not the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600 files
            os.replace(tmp_path, path)
        except OSError as exc:
            raise naming(exc, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class _Recording:
    """A file object that remembers the OSError of a failed write: some writers (torch.save)
    turn it into a RuntimeError that no longer says the disk is full."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def write_with(path: Path, writer: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically with ``writer(file)``; a write that fails for lack of space
    raises the OSError naming ``path``, whatever the writer made of it."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        recording = _Recording(fh)
        try:
            writer(recording)  # type: ignore[arg-type]
        except OSError:
            raise
        except Exception:
            if recording.error is not None:
                raise naming(recording.error, path) from None
            raise
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
