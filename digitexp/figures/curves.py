"""One training run's per-epoch curves on one figure: losses, val mAP, the two accuracies
and the learning rate, with the best epoch marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from digitexp.common.plotting import pyplot, save
from digitexp.tracking import contract as names

PANELS = (
    ("training loss", (names.TRAIN_LOSS, *names.LOSS_PARTS)),
    ("val mAP (COCO)", (names.VAL_MAP, names.VAL_MAP50, names.VAL_MAP75)),
    ("val accuracy", (names.VAL_NUMBER_ACC, names.VAL_DIGIT_ACC)),
    ("learning rate", (names.LR,)),
)
LABELS = {
    names.TRAIN_LOSS: "total",
    names.VAL_MAP: "mAP",
    names.VAL_MAP50: "AP50",
    names.VAL_MAP75: "AP75",
    names.VAL_NUMBER_ACC: "Task-2 (whole number)",
    names.VAL_DIGIT_ACC: "digit",
}


def draw(history: Mapping[str, Sequence[float]], best_epoch: int, path: Path, title: str) -> Path:
    """``history``: per-epoch values (epoch 1 first) keyed by metric name."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    for ax, (panel, keys) in zip(axes.flat, PANELS, strict=True):
        for key in keys:
            values = history.get(key)
            if not values:
                continue
            epochs = range(1, len(values) + 1)
            main = key == keys[0]
            ax.plot(
                epochs,
                values,
                marker="o",
                ms=3 if main else 2,
                lw=2 if main else 1,
                label=LABELS.get(key, key),
            )
        if best_epoch > 0:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"{title}   (dotted: best epoch {best_epoch})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
