"""What the trainer logs to: the :class:`Tracker` protocol, one MLflow run
(:class:`MlflowTracker`), or memory (:class:`NullTracker`, for library use and tests)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from digitexp.common import files
from digitexp.tracking.contract import DATASET_CONTEXT, DESCRIPTION
from digitexp.tracking.records import StoreCalls

DESCRIPTION_CHARS = 7900  # MLflow keeps at most 8000 characters in a tag


def description_text(markdown: str) -> str:
    """A description MLflow accepts: cut (and said so) past its tag length."""
    if len(markdown) <= DESCRIPTION_CHARS:
        return markdown
    return markdown[: DESCRIPTION_CHARS - 40].rstrip() + "\n\n… (cut: too long for MLflow)\n"


def param_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


class Tracker(Protocol):
    """What the trainer logs to: one run."""

    @property
    def run_id(self) -> str | None: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, obj: Any, artifact_file: str) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...


@dataclass
class NullTracker:
    """Keeps params, metrics and tags in memory; artifacts are not stored."""

    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int | None, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.artifacts.append(f"{artifact_path}/{path.name}" if artifact_path else path.name)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts.append(artifact_file)


class MlflowTracker:
    """Logs to one MLflow run through the client API (batched metrics)."""

    def __init__(self, store: StoreCalls, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, param_value(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._store.call(self._store.client.log_batch, self._run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if items:
            self._store.call(self._store.client.log_batch, self._run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        if items:
            self._store.call(self._store.client.log_batch, self._run_id, tags=items)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a file. Into a local artifact folder it is written atomically (a temporary file,
        then a rename), so a process killed mid-copy never leaves a half-written checkpoint."""
        local = self._local_artifact_dir()
        if local is None:
            self._store.call(
                self._store.client.log_artifact, self._run_id, str(path), artifact_path
            )
            return
        dest = local / artifact_path if artifact_path else local
        dest.mkdir(parents=True, exist_ok=True)
        for stale in dest.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-copy
            stale.unlink(missing_ok=True)
        with files.atomic_path(dest / path.name) as tmp:
            shutil.copyfile(path, tmp)

    def _local_artifact_dir(self) -> Path | None:
        if not hasattr(self, "_artifact_dir"):
            uri = self._store.call(self._store.client.get_run, self._run_id).info.artifact_uri
            parts = urlsplit(uri)
            local = parts.scheme in ("", "file") and not parts.netloc
            self._artifact_dir = Path(url2pathname(parts.path)) if local else None
        return self._artifact_dir

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(obj, indent=2), artifact_file)

    def set_description(self, markdown: str) -> None:
        """The run's description (Markdown, shown at the top of its page in the MLflow UI)."""
        self.set_tags({DESCRIPTION: description_text(markdown)})

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any]) -> None:
        """A dataset input of the run (the runs table's Dataset column): its ``name``, a
        ``digest`` of its content, where it lives (``source``), and ``profile`` (sizes)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest,
            source_type="local",
            source=json.dumps({"uri": source}),
            profile=json.dumps(dict(profile)),
        )
        context = InputTag("mlflow.data.context", DATASET_CONTEXT)
        inputs = [DatasetInput(dataset, tags=[context])]
        self._store.call(self._store.client.log_inputs, self._run_id, datasets=inputs)

    def log_text(self, text: str, artifact_file: str) -> None:
        local = self._local_artifact_dir()
        if local is not None:  # straight into the artifact folder, atomically
            files.write_text(local / artifact_file, text)
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(artifact_file).name
            local.write_text(text, encoding="utf-8")
            parent = str(Path(artifact_file).parent)
            self.log_artifact(local, None if parent == "." else parent)
