"""The Optuna side of a tune study: objectives, samplers, pruners, the study's name, and the
study itself, in a storage whose running trials beat (``launch.queue.heartbeat_storage``)."""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Literal

from digitexp.config import ExperimentConfig, config_hash
from digitexp.errors import ConfigError, DigitexpError, first_line
from digitexp.launch.queue import heartbeat_storage
from digitexp.tracking import contract as names
from digitexp.tracking import mask_text, mask_uri
from digitexp.tune.space import Space

log = logging.getLogger("digitexp.tune")

Objective = Literal["map", "number_acc", "both"]
SamplerName = Literal["tpe", "random", "qmc", "grid"]
PrunerName = Literal["median", "hyperband", "none"]
OBJECTIVES: tuple[Objective, ...] = ("map", "number_acc", "both")
SAMPLERS: tuple[SamplerName, ...] = ("tpe", "random", "qmc", "grid")
PRUNERS: tuple[PrunerName, ...] = ("median", "hyperband", "none")

# what a trial reports each epoch (and the metric its final value is, at its best epoch)
EPOCH_METRIC = {"map": names.VAL_MAP, "number_acc": names.VAL_NUMBER_ACC}
VALUE_LABEL = {"map": "val mAP", "number_acc": "val Task-2"}

# study user attrs
PARENT_RUN = "mlflow_parent"  # the study's MLflow run
SPACE = "space"
BASE_HASH = "base_config_hash"
OBJECTIVE = "objective"
# trial user attrs
MLFLOW_RUN = "mlflow_run"


class TuneError(DigitexpError):
    """A study cannot start: bad settings, or a study that does not match them."""


def default_pruner(objective: Objective) -> PrunerName:
    """median for one objective; none for two (Optuna cannot prune multi-objective studies)."""
    return "none" if objective == "both" else "median"


def check_settings(
    objective: Objective, pruner: PrunerName, sampler: SamplerName, space: Space
) -> None:
    """ConfigError for settings that cannot go together, before anything starts."""
    if objective == "both" and pruner != "none":
        raise ConfigError(
            f"--pruner {pruner} with --objective both: Optuna cannot prune a multi-objective "
            "study (trials report one value per epoch); use --pruner none or one objective"
        )
    if sampler == "grid":
        space.grid()  # raises for continuous dimensions


def make_sampler(name: SamplerName, space: Space, seed: int | None) -> Any:
    import optuna

    match name:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        case "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise ConfigError(f"--sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def make_pruner(name: PrunerName, startup_trials: int, warmup_epochs: int, epochs: int) -> Any:
    """Optuna's pruner; steps are epochs (from 1), so pruning starts after epoch
    ``warmup_epochs + 1`` at the earliest, and (median) once ``startup_trials`` completed."""
    import optuna

    match name:
        case "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs + 1
            )
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=min(warmup_epochs + 1, epochs), max_resource=max(epochs, 1)
            )
        case "none":
            return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {name!r}: expected one of {', '.join(PRUNERS)}")


def directions(objective: Objective) -> list[str]:
    return ["maximize", "maximize"] if objective == "both" else ["maximize"]


def study_name(
    spec: str, variant: str | None, objective: Objective, space: Space, base: ExperimentConfig
) -> str:
    """One study per spec, starting point (variant, preset, --set), objective and space: the
    same command resumes it, another space or base starts another."""
    digest = hashlib.sha256(f"{space.text()}|{config_hash(base)}".encode()).hexdigest()[:8]
    return f"tune-{spec}-{variant or 'base'}-{objective}-{digest}"


def open_study(
    storage: str,
    name: str,
    objective: Objective,
    sampler: Any,
    pruner: Any,
    heartbeat: float,
) -> tuple[Any, bool]:
    """Create the study or join it: (study, created here)."""
    import optuna

    # Optuna logs a failed trial with its traceback; the trials' own log lines say why instead
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    rdb = heartbeat_storage(storage, heartbeat, inherit_intermediate_values=True)
    wanted = directions(objective)
    try:
        try:
            study = optuna.create_study(
                storage=rdb, study_name=name, directions=wanted, sampler=sampler, pruner=pruner
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner)
            created = False
    except Exception as exc:  # storage errors come as several SQLAlchemy / Optuna types
        raise TuneError(
            f"{mask_uri(storage)}: cannot open study {name!r} ({mask_text(first_line(exc))})"
        ) from None
    if [d.name.lower() for d in study.directions] != wanted:
        raise TuneError(
            f"study {name!r} in {mask_uri(storage)} has {len(study.directions)} objective(s); "
            f"--objective {objective} needs {len(wanted)}: pick another --study"
        )
    return study, created


def describe(study: Any, objective: Objective, space: Space, base: ExperimentConfig) -> None:
    """Record what the study tunes (a new study), or warn when a worker joins it with another
    space or starting config (an explicit ``--study`` allows it; trials then compare unlike)."""
    attrs = study.user_attrs
    if SPACE not in attrs:
        study.set_user_attr(SPACE, space.text())
        study.set_user_attr(BASE_HASH, config_hash(base))
        study.set_user_attr(OBJECTIVE, objective)
        return
    if attrs[SPACE] != space.text():
        log.warning(
            "study %s was started with --space %s; this worker samples %s",
            study.study_name,
            attrs[SPACE],
            space.text(),
        )
    if attrs.get(BASE_HASH) != config_hash(base):
        log.warning(
            "study %s was started from another config (preset, --set or variant): its trials "
            "now compare settings on different starting points",
            study.study_name,
        )


def wait_for_attr(study: Any, key: str, seconds: float = 60.0) -> Any:
    """A study attr another worker is about to set (None when it does not come in time)."""
    deadline = time.monotonic() + seconds
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.5)
