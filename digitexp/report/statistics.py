"""The statistics of a spec's section: mean and spread over seeds per variant, and whether a
variant's difference to the spec's first variant stands out of the seed-to-seed spread.

Where the runs logged their validation predictions, :mod:`.evidence` replaces this rule by a
paired bootstrap over validation images (``Delta.low``/``high``). The fallback, for runs
without predictions: a difference is marked not distinguishable (≈) when |Δ mean| <= std_a +
std_b (sample standard deviations over seeds: the mean ± std bands overlap; when only one of
the two has several seeds, twice its std). When neither variant has two seeds, the spread of
the final setup's seeds (the spec marked ``FINAL``, same preset) stands in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from digitexp.report.selection import VALUE_KEYS, RunValues, run_values, select_runs
from digitexp.spec import Spec
from digitexp.tracking import RunRecord
from digitexp.tracking import contract as names


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        xs = [v for v in values if v is not None and math.isfinite(v)]
        if not xs:
            return cls(None, None, 0)
        std = statistics.stdev(xs) if len(xs) > 1 else None
        return cls(statistics.fmean(xs), std, len(xs))


@dataclass(frozen=True)
class Delta:
    value: float
    spread: float | None
    spread_source: str  # "bootstrap" | "seeds" | "final" | ""
    low: float | None = None  # the bootstrap interval (report.evidence), when there is one
    high: float | None = None

    @property
    def distinguishable(self) -> bool | None:
        if self.low is not None and self.high is not None:
            return self.low > 0 or self.high < 0
        if self.spread is None:
            return None
        return abs(self.value) > self.spread


def delta(a: Stat, b: Stat, fallback_std: float | None) -> Delta | None:
    """b - a on the means, with the spread the rule compares it against."""
    if a.mean is None or b.mean is None:
        return None
    stds = [s for s in (a.std, b.std) if s is not None]
    if len(stds) == 2:
        return Delta(b.mean - a.mean, sum(stds), "seeds")
    if stds:  # one side has one seed: take the other side's spread for both
        return Delta(b.mean - a.mean, 2 * stds[0], "seeds")
    if fallback_std is not None:
        return Delta(b.mean - a.mean, 2 * fallback_std, "final")
    return Delta(b.mean - a.mean, None, "")


@dataclass
class Section:
    spec: Spec
    runs: list[RunValues]
    left_out: list[RunRecord]
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)
    deltas: dict[str, Delta | None] = field(default_factory=dict)

    @property
    def variants_with_runs(self) -> list[str]:
        return [v for v in self.spec.variants if any(r.variant == v for r in self.runs)]

    def present_keys(self) -> set[str]:
        """The value keys at least one counted run has."""
        return {k for r in self.runs for k, v in r.values.items() if v is not None}

    def presets(self) -> list[str]:
        return sorted({r.run.tag(names.TAG_PRESET, "none") for r in self.runs})

    def data_roots(self) -> list[str]:
        return sorted({r.run.params.get("data.root", "?") for r in self.runs})

    def overrides(self) -> list[str]:
        """The ``--set`` lines the counted runs were made with (``none``; ``not recorded`` for
        runs older than the tag)."""
        return sorted({r.run.tag(names.TAG_OVERRIDES, "not recorded") for r in self.runs})


def build_section(
    spec: Spec,
    runs: Sequence[RunRecord],
    histories: Mapping[str, Mapping[str, list[tuple[int, float]]]],
    fallback_std: float | None,
) -> Section:
    values = [run_values(r, histories.get(r.run_id, {})) for r in runs]
    values = [v for v in values if v.variant in spec.variants]
    section = Section(spec=spec, runs=values, left_out=[])
    for variant in spec.variants:
        mine = [v for v in values if v.variant == variant]
        section.stats[variant] = {k: Stat.of(r.values[k] for r in mine) for k in VALUE_KEYS}
    first = next(iter(spec.variants))
    for variant in spec.variants:
        if variant == first:
            section.deltas[variant] = None
            continue
        section.deltas[variant] = delta(
            section.stats[first][names.VAL_MAP], section.stats[variant][names.VAL_MAP], fallback_std
        )
    return section


def final_spread(
    all_runs: Sequence[RunRecord], final: Spec | None, preset: str | None
) -> dict[str, float]:
    """Seed std of the final setup's best val mAP, per preset (where it has two seeds)."""
    if final is None:
        return {}
    chosen, _ = select_runs(all_runs, final.name, preset)
    by_preset: dict[str, list[float]] = {}
    for r in chosen:
        if names.BEST_VAL_MAP in r.metrics:
            key = r.tag(names.TAG_PRESET, "none")
            by_preset.setdefault(key, []).append(r.metrics[names.BEST_VAL_MAP])
    return {p: statistics.stdev(v) for p, v in by_preset.items() if len(v) > 1}
