"""The report's section per tune study (``digitexp tune``): what was tuned, how many trials
completed, were pruned or failed, the time pruning saved, the best settings, the leading
trials and every trial's validation curve. Read from the study's MLflow run and its trials'
runs only (the tracking contract), like the rest of the report."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from digitexp.common.plotting import pyplot, save
from digitexp.errors import TrackingError
from digitexp.report.tables import number_text
from digitexp.tracking import RunRecord, TrackingStore, run_state
from digitexp.tracking import contract as names

TOP_TRIALS = 10
VALUE_KEYS = {"map": names.VAL_MAP, "number_acc": names.VAL_NUMBER_ACC, "both": names.VAL_MAP}


def _best_epoch_values(
    run: RunRecord, history: dict[str, list[tuple[int, float]]]
) -> tuple[float | None, float | None]:
    """(val mAP, val Task-2) at the run's best epoch: the logged summary of a finished run,
    else the epoch of highest val mAP it reached (a pruned trial)."""
    if names.BEST_VAL_MAP in run.metrics:
        return run.metrics[names.BEST_VAL_MAP], run.metrics.get(names.at_best_metric("number_acc"))
    maps = history.get(names.VAL_MAP, [])
    if not maps:
        return None, None
    step, value = max(maps, key=lambda p: (p[1], -p[0]))
    accs = dict(history.get(names.VAL_NUMBER_ACC, []))
    return value, accs.get(step)


def _figure(
    study: str, trials: Sequence[tuple[RunRecord, str]], histories: dict, key: str, path: Path
) -> Path:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.5, 4))
    shown: set[str] = set()
    for run, state in trials:
        points = histories.get(run.run_id, {}).get(key, [])
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        style = {"ls": "--", "color": "grey", "alpha": 0.8} if state == "pruned" else {"lw": 1.5}
        label = state if state not in shown else None
        shown.add(state)
        ax.plot(steps, values, marker=".", label=label, **style)
        if state == "pruned":
            ax.plot(steps[-1], values[-1], marker="x", color="grey")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=8)
    ax.set_title(f"every trial of {study}", fontsize=8, wrap=True)
    fig.tight_layout()
    return save(fig, path)


def _best_settings(study: RunRecord, store: TrackingStore) -> str:
    """The study run's ``best_settings.txt`` (empty when it has none yet)."""
    with tempfile.TemporaryDirectory(prefix="digitexp-report-") as tmp:
        try:
            path = store.download_artifact(study.run_id, names.BEST_SETTINGS, Path(tmp))
        except TrackingError:
            return ""
        return path.read_text(encoding="utf-8").strip()


def _section(
    study: RunRecord, all_runs: Sequence[RunRecord], store: TrackingStore, out: Path
) -> str:
    name = study.tag(names.TAG_STUDY)
    objective = study.params.get("objective", "map")
    keys = sorted(
        (k[len(names.SPACE_PARAM_PREFIX) :], v)
        for k, v in study.params.items()
        if k.startswith(names.SPACE_PARAM_PREFIX)
    )
    trials = [
        r
        for r in all_runs
        if r.parent_id == study.run_id and r.tag(names.TAG_KIND) == names.KIND_TRIAL
    ]
    key = VALUE_KEYS.get(objective, names.VAL_MAP)
    histories = store.metric_histories(
        [r.run_id for r in trials], [names.VAL_MAP, names.VAL_NUMBER_ACC]
    )
    rows = []
    for run in trials:
        val_map, number_acc = _best_epoch_values(run, histories.get(run.run_id, {}))
        rows.append((run, run_state(run).name, val_map, number_acc))
    index = 2 if objective != "number_acc" else 3
    rows.sort(
        key=lambda r: (r[index] is None, -(r[index] or 0.0), int(r[0].tag(names.TAG_TRIAL, "0")))
    )
    m = study.metrics
    lines = [
        f"## Tune study `{name}`\n",
        f"Spec `{study.tag(names.TAG_SPEC)}` from {study.params.get('variant', 'BASE')} · preset "
        f"{study.tag(names.TAG_PRESET, 'none')} · objective {objective} · space "
        + ", ".join(f"`{k}={v}`" for k, v in keys)
        + "\n",
    ]
    if names.TRIALS_COMPLETE in m:
        lines.append(
            f"{len(trials)} trial run(s): {m[names.TRIALS_COMPLETE]:.0f} complete, "
            f"{m[names.TRIALS_PRUNED]:.0f} pruned, {m[names.TRIALS_FAILED]:.0f} failed. "
            f"Pruning left {m.get(names.EPOCHS_PRUNED, 0):.0f} of "
            f"{m.get(names.EPOCHS_TRAINED, 0) + m.get(names.EPOCHS_PRUNED, 0):.0f} epochs "
            f"untrained: about {m.get(names.PRUNED_SECONDS, 0) / 60:.1f} min saved against "
            f"{m.get(names.TRAIN_SECONDS, 0) / 60:.1f} min trained (estimate: each pruned "
            "trial's epochs left x its own epoch time).\n"
        )
    best = _best_settings(study, store)
    if best:
        lines += [
            f"Best settings (the study run's `{names.BEST_SETTINGS}`):\n",
            "```",
            best,
            "```\n",
        ]
    elif study.tag(names.TAG_BEST_SET):
        lines.append(f"Best settings: `{study.tag(names.TAG_BEST_SET)}`\n")
    header = ["trial", *(k for k, _ in keys), "val mAP", "val Task-2", "epochs", "state", "run"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for run, state, val_map, number_acc in rows[:TOP_TRIALS]:
        cells = [
            run.tag(names.TAG_TRIAL),
            *(f"`{run.params.get(k, '–')}`" for k, _ in keys),
            number_text(val_map),
            number_text(number_acc),
            run.tag(names.TAG_EPOCH, "0"),
            state,
            f"`{run.run_id[:8]}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > TOP_TRIALS:
        lines.append(
            f"\n{len(rows) - TOP_TRIALS} more trial(s) in the study run's `{names.TRIALS_CSV}`."
        )
    lines.append("")
    if trials:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        figure = _figure(
            name,
            [(r[0], r[1]) for r in rows],
            histories,
            key,
            out / "figures" / f"tune_{slug}.png",
        )
        lines.append(f"![{name} trials](figures/{figure.name})\n")
    return "\n".join(lines) + "\n"


def tune_sections(all_runs: Sequence[RunRecord], store: TrackingStore, out: Path) -> list[str]:
    """One section per tune study in the store (by spec, then when it started)."""
    studies = [r for r in all_runs if r.tag(names.TAG_KIND) == names.KIND_TUNE]
    studies.sort(key=lambda r: (r.tag(names.TAG_SPEC), r.start_time, r.run_id))
    return [_section(s, all_runs, store, out) for s in studies]
