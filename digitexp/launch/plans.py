"""What a launch trains: one :class:`RunPlan` per selected variant x seed of a spec, and the
checks that run before any MLflow run exists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from digitexp.config import DataConfig, ExperimentConfig
from digitexp.data import DataBundle, load_data, verify_images
from digitexp.engine import RunResult
from digitexp.engine.runtime import resolve_device
from digitexp.errors import SpecError
from digitexp.model import check_model
from digitexp.spec import Spec


@dataclass(frozen=True)
class RunPlan:
    """One variant x seed of a spec, with its resolved config."""

    spec: Spec
    variant: str
    seed: int
    cfg: ExperimentConfig

    @property
    def name(self) -> str:
        """The run's name: the variant first (what tells runs apart in the UI's table), then
        the seed; the spec is the experiment (and the parent run's name)."""
        return f"{self.variant}/s{self.seed}"


@dataclass(frozen=True)
class RunOutcome:
    plan: RunPlan
    run_id: str
    status: str  # FINISHED | FAILED | KILLED
    result: RunResult | None
    error: str | None
    minutes: float
    resumed_from: int | None = None  # the epoch a resumed run continued after


def plan_runs(
    spec: Spec, *, variants: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[RunPlan]:
    """The selected variants x seeds (all of the spec's by default), configs as resolved when
    the spec loaded."""
    names = list(variants) if variants else list(spec.variants)
    unknown = [v for v in names if v not in spec.variants]
    if unknown:
        raise SpecError(
            f"{spec.path}: unknown variant {unknown[0]!r} (variants: {', '.join(spec.variants)})"
        )
    chosen_seeds = list(seeds) if seeds else list(spec.seeds)
    return [RunPlan(spec, v, s, spec.config(v, seed=s)) for v in names for s in chosen_seeds]


def preflight(
    configs: Sequence[ExperimentConfig],
    progress: bool | None = None,
    *,
    check_device: bool = True,
) -> dict[DataConfig, DataBundle]:
    """Validate data, device and model (anchors, RoI levels, weights) for every config; the
    loaded data per data config. Every image is decoded once (remembered beside the data, so
    a second run on the same data only looks at new or changed files). ``check_device=False``
    when the runs train elsewhere (a cluster's nodes have the GPUs a login node lacks)."""
    bundles: dict[DataConfig, DataBundle] = {}
    for cfg in configs:
        if check_device:
            resolve_device(cfg.train.device)
        check_model(cfg.model)
        if cfg.data not in bundles:
            bundle = load_data(cfg.data)
            splits = [bundle.train, bundle.valid] + ([bundle.test] if bundle.test else [])
            verify_images(*splits, progress=progress)
            bundles[cfg.data] = bundle
    return bundles
