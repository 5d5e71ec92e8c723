"""Stopping a run early at a safe point, resumable: a scheduler's warning that a time limit or
a preemption is near (Slurm's ``--signal=B:USR1@SECONDS``).

The signal handler, :func:`request_stop`, only sets a flag (installed by the command that
wants it: ``slurm-task``). The trainer looks at the flag between training steps and before
each epoch (:meth:`digitexp.engine.Trainer.must_stop`); when it is set, the current epoch is
abandoned and :class:`Preempted` is raised. Every finished epoch already has its checkpoint and
metrics logged, and the batches of an epoch depend only on the seed and the epoch number, so a
resume redoes the abandoned epoch exactly: no epoch is missing or doubled.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()
_reason: list[str] = []


class Preempted(BaseException):  # like KeyboardInterrupt: not an error
    """Training stopped at a safe point on request. ``epoch`` is the last epoch whose
    checkpoint and metrics are logged (the run resumes after it).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(f"{reason}; resumable after epoch {epoch}")
        self.epoch = epoch
        self.reason = reason


def request_stop(signum: int | None = None, frame: object = None) -> None:
    """Ask the training in this process to stop at its next safe point. Usable as it is as a
    signal handler: ``signal.signal(signal.SIGUSR1, request_stop)``."""
    name = signal.Signals(signum).name if signum is not None else "a stop request"
    _reason[:] = [f"stopped on {name}"]
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def stop_reason() -> str:
    return _reason[0] if _reason else "stopped on request"


def clear() -> None:
    """Forget a stop request (the next run in this process trains normally)."""
    _requested.clear()
    _reason.clear()
