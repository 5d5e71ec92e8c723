"""Ctrl-C and SIGTERM without half-written endings.

A run's final status is a few writes to the tracking store. A second Ctrl-C (or a scheduler's
SIGTERM right after the first signal) landing in the middle of them used to leave the run
RUNNING. Two guards:

- :func:`stop_on_first_signal` (installed by the CLI): the first SIGINT or SIGTERM raises
  KeyboardInterrupt; more signals in the next :data:`GRACE_S` seconds are only noted on
  stderr, so the code that records the runs' status finishes (``kill -9`` still stops the
  process at once; its runs then show as stale);
- :func:`deferred_interrupts` (around each status write, for library use too): a signal
  arriving inside the block waits until the block is done, then raises KeyboardInterrupt;
  :func:`raise_held_interrupt` raises it earlier, at a safe point inside the block (the
  search's trial loop, where Optuna expects an interrupt).

Both act in the main thread only (Python delivers signals there).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

GRACE_S = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state = {"depth": 0, "first": 0.0}
_pending: list[int] = []


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def stop_on_first_signal() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; repeats within GRACE_S are ignored
    (with a note) while the interrupted work records how it ended."""
    if not _main_thread():
        return
    _state["first"] = 0.0

    def handler(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if _state["first"] and now - _state["first"] < GRACE_S:
            print(
                f"still stopping: recording how the runs ended (signal {signum} ignored; "
                "kill -9 stops at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        _state["first"] = now
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in SIGNALS:
        signal.signal(sig, handler)


def ignore_signals() -> None:
    """From now on SIGINT and SIGTERM are ignored: for a process that has recorded how it
    was interrupted and only exits (a late signal would otherwise kill it during the
    interpreter's teardown, which restores the default handlers)."""
    if _main_thread():
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT/SIGTERM received inside the block are held until it ends, then raised as
    KeyboardInterrupt (by the outermost block when nested)."""
    if not _main_thread():
        yield
        return
    previous = {}
    if _state["depth"] == 0:
        _pending.clear()

        def hold(signum: int, frame: FrameType | None) -> None:
            _pending.append(signum)

        previous = {sig: signal.signal(sig, hold) for sig in SIGNALS}
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if _pending:
                signum = _pending[0]
                _pending.clear()
                handler = previous.get(signum)
                if callable(handler):
                    handler(signum, None)  # as if it arrived now (the CLI's rule applies)
                elif handler != signal.SIG_IGN:
                    raise KeyboardInterrupt(f"signal {signum}")


def raise_held_interrupt() -> None:
    """Inside :func:`deferred_interrupts`: at a safe point, raise the KeyboardInterrupt a
    signal held so far (and treat later signals as repeats, like the CLI's rule)."""
    if _pending:
        signum = _pending[0]
        _pending.clear()
        _state["first"] = time.monotonic()
        raise KeyboardInterrupt(f"signal {signum}")
