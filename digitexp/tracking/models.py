"""A run's checkpoint as an MLflow model: a pyfunc model logged on the run (without touching
the run's status or end time) and registered as a new version of a registered model.

The pyfunc model holds the checkpoint as an artifact and a *loader* (a function of the
checkpoint's path that returns a callable on model inputs); the code that loader needs (the
digitexp package) travels with the model, so ``mlflow.pyfunc.load_model`` works in any
environment with digitexp's dependencies. This module knows how to log such a model, not what
the loader does.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from digitexp.tracking.contract import MODEL
from digitexp.tracking.store import TrackingStore

# what a registered model's environment needs (pinned to this environment's versions)
REQUIREMENTS = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "pillow",
    "opencv-python-headless",
    "tqdm",
)
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # the UI's Models tab reads a model's versions here


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """``predict(images)`` calls what ``load(checkpoint path)`` returned."""

    # images come in several forms (paths, arrays, a DataFrame): MLflow must pass them through
    # as they are, not validate or convert them by type hints (nor warn that there are none)
    _skip_type_hint_validation = True

    def __init__(self, load: Callable[[str], Callable[[Any], Any]]) -> None:
        self.load = load
        self.predictor: Callable[[Any], Any] | None = None

    def load_context(self, context: Any) -> None:
        self.predictor = self.load(context.artifacts["checkpoint"])

    # no type hints: MLflow would infer a signature from them at log time
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        assert self.predictor is not None, "load_context was not called"
        return self.predictor(model_input)


def requirements() -> list[str]:
    out = []
    for dist in REQUIREMENTS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out.append(dist)
            continue
        out.append(f"{dist}=={version.split('+')[0]}")
    return out


@contextmanager
def _global_uris(uri: str) -> Any:
    """``log_model`` and ``register_model`` read MLflow's global URIs: point them at ``uri``
    for the block, then put them back."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)


@contextmanager
def _quiet_about_pickling() -> Any:
    """MLflow warns that a ``python_model`` object is cloudpickled (this one pickles references
    to digitexp's importable class and loader only; the weights are an artifact) and that its
    ``predict`` has no usable type hints."""
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _package_copy(package: Path, into: Path) -> Path:
    """The package's source (no caches) in ``into``, to travel with the model."""
    dst = into / package.name
    shutil.copytree(package, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def model_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a registered model's name (MLflow refuses an empty name
    and '/' or ':', which model URIs use), or None."""
    if not name.strip():
        return "give the registered model a name"
    if "/" in name or ":" in name:
        return "a registered model's name cannot contain '/' or ':' (model URIs use them)"
    return None


def _ensure_registered(client: Any, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, description=description)


def log_checkpoint_model(
    store: TrackingStore,
    run_id: str,
    name: str,
    checkpoint: Path,
    load: Callable[[str], Callable[[Any], Any]],
    *,
    package: Path,
    description: str,
) -> str:
    """Log ``checkpoint`` as the pyfunc model ``model`` of run ``run_id`` and register it as a
    new version of ``name`` (created when missing); the version."""
    from mlflow.entities import LoggedModelOutput

    client = store.client
    run = store.call(client.get_run, run_id)
    with tempfile.TemporaryDirectory(prefix="digitexp-model-") as tmp, _global_uris(store.uri):
        # a name the registry refuses fails here, before anything is logged to the run
        store.call(_ensure_registered, client, name, description)
        logged = store.call(
            client.create_logged_model, run.info.experiment_id, name=MODEL, source_run_id=run_id
        )
        with _quiet_about_pickling():
            store.call(
                mlflow.pyfunc.log_model,
                name=MODEL,
                python_model=CheckpointModel(load),
                artifacts={"checkpoint": str(checkpoint)},
                code_paths=[str(_package_copy(package, Path(tmp)))],
                pip_requirements=requirements(),
                model_id=logged.model_id,
            )
        store.call(client.log_outputs, run_id, [LoggedModelOutput(logged.model_id, step=0)])
        version = store.call(
            client.create_model_version,
            name,
            source=f"models:/{logged.model_id}",
            run_id=run_id,
            model_id=logged.model_id,
        )
        tags = store.call(client.get_logged_model, logged.model_id).tags
        versions = json.loads(tags.get(MODEL_VERSIONS_TAG, "[]"))
        versions.append({"name": name, "version": version.version})
        store.call(
            client.set_logged_model_tags,
            logged.model_id,
            {MODEL_VERSIONS_TAG: json.dumps(versions)},
        )
    return str(version.version)
