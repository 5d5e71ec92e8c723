"""The Optuna side of the threshold search: the space, samplers, the study in its storage,
the trials, and the trials chosen as best (one per objective, or the two ends of a Pareto front)."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from digitexp.common.progress import Progress
from digitexp.common.signals import deferred_interrupts, raise_held_interrupt
from digitexp.errors import ConfigError, DigitexpError, first_line
from digitexp.tracking import mask_uri

Objective = Literal["map", "number_acc", "both"]
SamplerName = Literal["tpe", "grid", "qmc"]
PARAMS = ("box_nms_thresh", "box_score_thresh")
DEFAULT_SPACE = {"box_nms_thresh": (0.1, 0.9, 0.01), "box_score_thresh": (0.0, 0.95, 0.01)}
METRICS = ("map", "map50", "map75", "digit_acc", "number_acc")


class SearchError(DigitexpError):
    """A search cannot start: bad run, missing checkpoint, bad space or storage."""


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    step: float

    def grid(self) -> list[float]:
        n = round((self.high - self.low) / self.step)
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


def parse_space(items: Sequence[str] | None) -> dict[str, Range]:
    """``["box_nms_thresh=0.1:0.9", "box_score_thresh=0:0.95:0.05"]`` -> ranges.

    Unset parameters keep their default range; the step defaults to 0.01.
    """
    space = {k: Range(*v) for k, v in DEFAULT_SPACE.items()}
    if items is not None and not items:
        raise ConfigError("--space: give at least one KEY=LOW:HIGH[:STEP]")
    for item in items or ():
        match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*([^:]+):([^:]+)(?::([^:]+))?\s*", item)
        if match is None:
            raise ConfigError(f"--space {item!r}: expected KEY=LOW:HIGH[:STEP]")
        key, low_s, high_s, step_s = match.groups()
        if key not in PARAMS:
            raise ConfigError(f"--space {item!r}: unknown key {key!r} ({', '.join(PARAMS)})")
        try:
            low, high = float(low_s), float(high_s)
            step = float(step_s) if step_s else 0.01
        except ValueError:
            raise ConfigError(f"--space {item!r}: LOW, HIGH and STEP must be numbers") from None
        if not (0.0 <= low <= high <= 1.0):
            raise ConfigError(f"--space {item!r}: need 0 <= LOW <= HIGH <= 1")
        if not (0 < step <= max(high - low, step)) or not math.isfinite(step):
            raise ConfigError(f"--space {item!r}: STEP must be > 0")
        span = (high - low) / step
        if abs(span - round(span)) > 1e-6:
            raise ConfigError(f"--space {item!r}: HIGH - LOW must be a multiple of STEP")
        space[key] = Range(low, high, step)
    return space


def make_sampler(name: SamplerName, space: Mapping[str, Range], seed: int | None) -> Any:
    import optuna

    match name:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        case "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        case "grid":
            grid = {k: r.grid() for k, r in space.items()}
            return optuna.samplers.GridSampler(grid, seed=seed)


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///mlruns/optuna.db``, or beside the MLflow database when it is elsewhere."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri[len('sqlite:///') :]).parent / 'optuna.db'}"
    return "sqlite:///mlruns/optuna.db"


def open_study(storage: str, name: str, objective: Objective, sampler: Any) -> Any:
    import optuna

    # ERROR: Optuna logs a failed trial (Ctrl-C included) as a WARNING with its traceback;
    # the error itself reaches the caller, which says it in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    directions = ["maximize", "maximize"] if objective == "both" else ["maximize"]
    db = storage[len("sqlite:///") :] if storage.startswith("sqlite:///") else None
    if db:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
    except ValueError as exc:
        raise SearchError(f"study {name!r} in {mask_uri(storage)}: {exc}") from None
    except Exception as exc:  # storage errors come as several SQLAlchemy / Optuna types
        first = first_line(exc)
        raise SearchError(
            f"{mask_uri(storage)}: cannot open the Optuna storage ({first})"
        ) from None
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchError(
            f"study {name!r} in {mask_uri(storage)} has {len(study.directions)} objective(s); "
            f"--objective {objective} needs {len(directions)}: pick another --study"
        )
    return study


def _values(metrics: Mapping[str, float], objective: Objective) -> float | tuple[float, float]:
    match objective:
        case "map":
            return metrics["map"]
        case "number_acc":
            return metrics["number_acc"]
        case "both":
            return metrics["map"], metrics["number_acc"]


def optimize(
    study: Any,
    evaluate: Callable[[float, float], dict[str, float]],
    space: Mapping[str, Range],
    objective: Objective,
    trials: int,
    progress: bool | None,
) -> None:
    def run_trial(trial: Any) -> float | tuple[float, float]:
        raise_held_interrupt()  # Ctrl-C / SIGTERM stop the study here, where Optuna expects it
        params = {
            key: trial.suggest_float(key, r.low, r.high, step=r.step) for key, r in space.items()
        }
        metrics = evaluate(params["box_score_thresh"], params["box_nms_thresh"])
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        return _values(metrics, objective)

    with Progress(trials, "trials", enabled=progress, unit="trial") as bar:

        def tick(study: Any, trial: Any) -> None:
            bar.update(1)

        # a signal landing in Optuna's own bookkeeping breaks it (an UnboundLocalError in its
        # trial loop): signals wait for the next trial's start
        with deferred_interrupts():
            study.optimize(run_trial, n_trials=trials, callbacks=[tick], gc_after_trial=False)


@dataclass(frozen=True)
class Choice:
    """One chosen trial: its thresholds and metrics."""

    label: str
    number: int
    params: dict[str, float]
    metrics: dict[str, float]
    objective: str = "map"  # the metric it is best for: map | number_acc

    @property
    def key(self) -> str:
        """``best_map`` or ``best_number_acc`` (its metrics' names in the search run)."""
        return f"best_{self.objective}"

    def set_line(self) -> str:
        return (
            f"--set model.box_nms_thresh={self.params['box_nms_thresh']:g} "
            f"model.box_score_thresh={self.params['box_score_thresh']:g}"
        )


def trials_frame(study: Any) -> Any:
    import pandas as pd

    rows = []
    for t in study.trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update(t.params)
        row.update({k: t.user_attrs.get(k) for k in (*METRICS, "capped_images", "detections")})
        rows.append(row)
    return pd.DataFrame(rows)


def choices(study: Any, objective: Objective) -> list[Choice]:
    """The best trial per objective (for ``both``: the two ends of the Pareto front)."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return []

    def pick(key: str, label: str) -> Choice:
        other = "number_acc" if key == "map" else "map"  # ties: the one that is not dominated
        best = max(done, key=lambda t: (t.user_attrs[key], t.user_attrs[other], -t.number))
        params = {k: round(v, 10) for k, v in best.params.items()}  # no float noise
        return Choice(label, best.number, params, _metrics(best), key)

    match objective:
        case "map":
            return [pick("map", "best val mAP")]
        case "number_acc":
            return [pick("number_acc", "best val Task-2")]
        case "both":
            return [pick("map", "best val mAP"), pick("number_acc", "best val Task-2")]


def _metrics(trial: Any) -> dict[str, float]:
    return {k: float(trial.user_attrs[k]) for k in (*METRICS, "capped_images")}


def pareto_numbers(study: Any, objective: Objective) -> set[int]:
    if objective != "both":
        return set()
    return {t.number for t in study.best_trials}
