"""Progress display: a tqdm bar in a terminal, plain log lines under CI or in a pipe."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from tqdm import tqdm

log = logging.getLogger("digitexp.progress")


def interactive() -> bool:
    """True when a progress bar makes sense: stderr is a terminal and CI is not set."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class Progress:
    """``update(n, **postfix)``; a bar when interactive, else a log line every ``every_s``."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        enabled: bool | None = None,
        every_s: float = 30.0,
        unit: str = "it",
    ) -> None:
        self.total = total
        self.desc = desc
        self.count = 0
        self.every_s = every_s
        self._last_log = time.monotonic()
        self._postfix: dict[str, Any] = {}
        show = interactive() if enabled is None else enabled
        self._bar = (
            tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
            if show
            else None
        )

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.count += n
        if postfix:
            self._postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(self._postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_log >= self.every_s:
            self._last_log = now
            log.info("%s", self._line())

    def _line(self) -> str:
        total = f"/{self.total}" if self.total else ""
        extra = " ".join(f"{k}={v}" for k, v in self._postfix.items())
        return f"{self.desc}: {self.count}{total} {extra}".rstrip()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
