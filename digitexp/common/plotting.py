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


def draw_box(
    ax: Any,
    box: Any,
    edgecolor: str,
    text: str,
    *,
    text_xy: tuple[float, float] | None = None,
    dashed: bool = False,
    linewidth: float = 1.6,
    **text_style: Any,
) -> None:
    """Outline ``box`` (x1, y1, x2, y2 in image pixels) in ``edgecolor`` on an image axis and
    write ``text`` at ``text_xy`` (default: the top-left corner, above the box)."""
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(
        Rectangle(
            (x1, y1),
            x2 - x1,
            y2 - y1,
            fill=False,
            edgecolor=edgecolor,
            linewidth=linewidth,
            linestyle="--" if dashed else "-",
        )
    )
    x, y = text_xy if text_xy is not None else (x1, y1)
    ax.text(x, y, text, **{"va": "bottom", **text_style})
