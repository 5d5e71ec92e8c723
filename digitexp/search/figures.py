"""Figures of a threshold study: the Pareto front and the optimisation history."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.common.plotting import pyplot, save
from digitexp.search.study import Objective, pareto_numbers


def plot_pareto(
    study: Any, objective: Objective, defaults: Mapping[str, float], path: Path
) -> Path:
    plt = pyplot()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    front = pareto_numbers(study, "both")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        [t.user_attrs["map"] for t in done],
        [t.user_attrs["number_acc"] for t in done],
        s=10,
        alpha=0.4,
        label="trials",
    )
    pts = sorted(
        (t.user_attrs["map"], t.user_attrs["number_acc"]) for t in done if t.number in front
    )
    if pts:
        ax.plot(*zip(*pts, strict=True), "o-", color="crimson", ms=4, label="Pareto front")
    ax.scatter(
        [defaults["map"]],
        [defaults["number_acc"]],
        marker="*",
        s=150,
        color="k",
        label="spec's thresholds",
    )
    ax.set_xlabel("val mAP")
    ax.set_ylabel("val Task-2 accuracy")
    ax.set_title(f"{study.study_name} ({objective})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_history(study: Any, path: Path) -> Path:
    plt = pyplot()
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in zip(axes, ("map", "number_acc"), ("val mAP", "val Task-2"), strict=True):
        xs = [t.number for t in done]
        ys = [t.user_attrs[key] for t in done]
        ax.scatter(xs, ys, s=8, alpha=0.5, label="trial")
        if ys:
            ax.plot(xs, np.maximum.accumulate(ys), color="crimson", label="best so far")
        ax.set_xlabel("trial")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"optimisation history: {study.study_name}", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
