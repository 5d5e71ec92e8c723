"""Runs as the report, the search and the launchers read them back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from digitexp.tracking.contract import PARENT_TAG

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]


class StoreCalls(Protocol):
    """What a tracker or a heartbeat needs of a store: its MLflow client, and ``call`` (which
    retries a locked database and turns store failures into one-line errors)."""

    client: Any

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class RunRecord:
    """A run as the report and the search see it."""

    run_id: str
    experiment: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    def tag(self, key: str, default: str = "") -> str:
        return self.tags.get(key, default)


History = dict[str, dict[str, list[tuple[int, float]]]]


def record_of(run: Any, experiment: str) -> RunRecord:
    """An MLflow Run as a RunRecord."""
    return RunRecord(
        run_id=run.info.run_id,
        experiment=experiment,
        name=run.info.run_name or "",
        status=run.info.status,
        start_time=run.info.start_time or 0,
        end_time=run.info.end_time,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def last_per_step(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One value per step (the last one logged), sorted by step."""
    by_step: dict[int, float] = {}
    for step, value in points:
        by_step[step] = value
    return sorted(by_step.items())
