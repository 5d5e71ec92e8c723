"""Which runs a report counts, and the values it reads from each.

Per spec x variant x seed the latest FINISHED training run counts; failed, killed and
still-running runs are left out (and listed). A run's values are its summary metrics and,
at its best epoch, the per-epoch ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from digitexp.tracking import RunRecord
from digitexp.tracking import contract as names

CURVE_KEYS = (names.TRAIN_LOSS, names.VAL_MAP, names.VAL_DIGIT_ACC)
AT_BEST_KEYS = (names.VAL_MAP50, names.VAL_NUMBER_ACC, names.VAL_DIGIT_ACC)
HISTORY_KEYS = tuple(dict.fromkeys(CURVE_KEYS + AT_BEST_KEYS))
# every value a run contributes to its spec's table
VALUE_KEYS = (
    names.VAL_MAP,
    names.VAL_MAP50,
    names.VAL_NUMBER_ACC,
    names.VAL_DIGIT_ACC,
    names.TEST_MAP,
    names.TEST_NUMBER_ACC,
    names.FINAL_TRAIN_LOSS,
    names.BEST_EPOCH,
)


@dataclass(frozen=True)
class RunValues:
    run: RunRecord
    variant: str
    seed: int
    values: Mapping[str, float | None]
    history: Mapping[str, list[tuple[int, float]]]


def _at_step(points: Sequence[tuple[int, float]], step: int) -> float | None:
    return next((v for s, v in points if s == step), None)


def run_values(run: RunRecord, history: Mapping[str, list[tuple[int, float]]]) -> RunValues:
    m = run.metrics
    best_epoch = int(m[names.BEST_EPOCH]) if names.BEST_EPOCH in m else None
    values: dict[str, float | None] = {
        names.VAL_MAP: m.get(names.BEST_VAL_MAP),
        names.TEST_MAP: m.get(names.TEST_MAP),
        names.TEST_NUMBER_ACC: m.get(names.TEST_NUMBER_ACC),
        names.FINAL_TRAIN_LOSS: m.get(names.FINAL_TRAIN_LOSS),
        names.BEST_EPOCH: float(best_epoch) if best_epoch is not None else None,
    }
    for key in AT_BEST_KEYS:
        points = history.get(key, [])
        values[key] = _at_step(points, best_epoch) if best_epoch is not None else None
    return RunValues(
        run=run,
        variant=run.tag(names.TAG_VARIANT),
        seed=int(run.tag(names.TAG_SEED, "0") or 0),
        values=values,
        history=history,
    )


def select_runs(
    runs: Sequence[RunRecord], spec_name: str, preset: str | None
) -> tuple[list[RunRecord], list[RunRecord]]:
    """(latest FINISHED run per variant x seed, runs left out) of one spec."""
    mine = [
        r
        for r in runs
        if r.tag(names.TAG_SPEC) == spec_name
        and r.tag(names.TAG_KIND, names.KIND_TRAIN) == names.KIND_TRAIN
        and r.parent_id is not None
        and (preset is None or r.tag(names.TAG_PRESET, "none") == preset)
    ]
    chosen: dict[tuple[str, str], RunRecord] = {}
    left_out: list[RunRecord] = []
    for run in sorted(mine, key=lambda r: (r.start_time, r.run_id), reverse=True):
        key = (run.tag(names.TAG_VARIANT), run.tag(names.TAG_SEED))
        if run.status != "FINISHED":
            left_out.append(run)
        elif key not in chosen:
            chosen[key] = run
    return sorted(chosen.values(), key=lambda r: r.run_id), left_out
