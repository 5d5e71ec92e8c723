"""Figures of a tune study: the optimisation history, each trial's validation curve (pruned
trials cut short), and the parameter importances."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.common.plotting import pyplot, save
from digitexp.tune import trials as attrs
from digitexp.tune.study import Objective

PANELS = {"map": (attrs.VAL_MAP, "val mAP"), "number_acc": (attrs.VAL_NUMBER_ACC, "val Task-2")}
CURVES = {"map": attrs.CURVE_MAP, "number_acc": attrs.CURVE_NUMBER_ACC}


def _panels(objective: Objective) -> list[tuple[str, str]]:
    return [PANELS["map"], PANELS["number_acc"]] if objective == "both" else [PANELS[objective]]


def plot_history(study: Any, objective: Objective, path: Path) -> Path:
    """Each trial's value by trial number (pruned trials: their best before they stopped),
    and the best so far."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    panels = _panels(objective)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        done = [t for t in trials if t.state.name == "COMPLETE" and key in t.user_attrs]
        pruned = [t for t in trials if t.state.name == "PRUNED" and key in t.user_attrs]
        xs = [t.number for t in done]
        ys = [t.user_attrs[key] for t in done]
        ax.scatter(xs, ys, s=18, label="complete")
        if pruned:
            ax.scatter(
                [t.number for t in pruned],
                [t.user_attrs[key] for t in pruned],
                marker="x",
                color="grey",
                label="pruned (best before it stopped)",
            )
        if ys:
            ax.step(xs, np.maximum.accumulate(ys), where="post", color="crimson", label="best")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"optimisation history: {study.study_name}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def plot_curves(study: Any, objective: Objective, path: Path) -> Path:
    """The validation metric per epoch of every trial: complete solid, pruned grey dashed to
    the epoch it stopped after, failed dotted."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    metric = "map" if objective == "both" else objective
    key, label = CURVES[metric], PANELS[metric][1]
    styles = {
        "COMPLETE": {"lw": 1.5, "alpha": 0.9},
        "PRUNED": {"ls": "--", "color": "grey", "alpha": 0.8},
        "FAIL": {"ls": ":", "color": "tab:red", "alpha": 0.6},
    }
    shown: set[str] = set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        curve = t.user_attrs.get(key) or []
        style = styles.get(t.state.name)
        if not curve or style is None:
            continue
        name = t.state.name.lower()
        epochs = list(range(1, len(curve) + 1))
        line = ax.plot(epochs, curve, marker=".", label=None if name in shown else name, **style)
        shown.add(name)
        if t.state.name == "COMPLETE":
            ax.annotate(
                f"{t.number}", (epochs[-1], curve[-1]), fontsize=7, color=line[0].get_color()
            )
        elif t.state.name == "PRUNED":
            ax.plot(epochs[-1], curve[-1], marker="x", color="grey")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=8)
    ax.set_title(f"{label} per epoch, every trial: {study.study_name}", fontsize=8, wrap=True)
    fig.tight_layout()
    return save(fig, path)


def plot_importances(
    found: Mapping[str, Mapping[str, float]], why: str, study_name: str, path: Path
) -> Path:
    """Horizontal bars per objective (PED-ANOVA); a note when there is nothing to rank."""
    plt = pyplot()

    n = max(len(found), 1)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.2), squeeze=False)
    if not found:
        ax = axes[0][0]
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"parameter importances: {why}",
            ha="center",
            va="center",
            fontsize=9,
            wrap=True,
        )
    for ax, (label, ranks) in zip(axes[0], found.items(), strict=False):
        keys = list(ranks)[::-1]
        ax.barh(keys, [ranks[k] for k in keys], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"importance for {label} (PED-ANOVA)")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"parameter importances: {study_name}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
