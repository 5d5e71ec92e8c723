"""matplotlib without a display, and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from digitexp.common import files


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (no timestamp in the file) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    pyplot().close(fig)
    return path
