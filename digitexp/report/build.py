"""``digitexp report``: MLflow runs -> the report's comparison tables and figures in reports/.

Reads only the tracking contract (any tracking URI). Specs come in the report's order (their
``REPORT_TABLE``, then others by name); each gets a section: its table (:mod:`.tables`), its
figures (:mod:`.figures`), the runs left out; then the threshold searches (:mod:`.searches`)
and the tune studies (:mod:`.tuning`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digitexp.common import files
from digitexp.errors import DigitexpError
from digitexp.insight.bootstrap import DEFAULT_RESAMPLES, MAX_RESAMPLES
from digitexp.report.evidence import SpecEvidence, bootstrap_deltas, gather_evidence
from digitexp.report.figures import curves_figure, examples_figure
from digitexp.report.insight import insight_markdown
from digitexp.report.searches import search_section
from digitexp.report.selection import HISTORY_KEYS, select_runs
from digitexp.report.statistics import Section, build_section, final_spread
from digitexp.report.tables import csv_frame, final_config_table, markdown_table
from digitexp.report.tuning import tune_sections
from digitexp.spec import Spec, load_spec
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names


class ReportError(DigitexpError):
    """Nothing to report, or the report cannot be written."""


@dataclass(frozen=True)
class ReportSummary:
    out: Path
    specs: tuple[str, ...]
    runs: int
    left_out: int
    seconds: float
    experiments: tuple[str, ...] = ()  # the MLflow experiments of the counted runs


def load_specs(ablations: Path) -> list[Spec]:
    """The specs of ``ablations`` in the report's order: by ``REPORT_TABLE``, then the others
    by name."""
    if not ablations.is_dir():
        raise ReportError(f"{ablations}: no such folder of spec files (--ablations)")
    paths = [p for p in sorted(ablations.glob("*.py")) if not p.stem.startswith("_")]
    if not paths:
        raise ReportError(f"{ablations}: no spec files (*.py) in this folder")
    specs = [load_spec(p) for p in paths]
    return sorted(specs, key=lambda s: (s.report_table is None, s.report_table or 0, s.name))


def chosen_specs(specs: Sequence[Spec], wanted: Sequence[str] | None, where: Path) -> list[Spec]:
    """``specs`` narrowed to the names in ``wanted`` (all when None)."""
    if not wanted:
        return list(specs)
    known = {s.name for s in specs}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ReportError(f"{where}: no spec named {unknown[0]!r} ({', '.join(sorted(known))})")
    return [s for s in specs if s.name in wanted]


def generate(
    store: TrackingStore,
    out: Path,
    *,
    ablations: Path = Path("ablations"),
    specs: Sequence[str] | None = None,
    preset: str | None = None,
    extra_sections: Sequence[str] = (),
    resamples: int | None = None,
) -> ReportSummary:
    """Write reports/README.md, tables/SPEC.{csv,md} and figures/SPEC_{curves,examples}.png."""
    start = time.perf_counter()
    resamples = DEFAULT_RESAMPLES if resamples is None else resamples
    if not 0 <= resamples <= MAX_RESAMPLES:
        raise ReportError(
            f"--bootstrap {resamples}: must be in [0, {MAX_RESAMPLES}] (0 = no intervals, "
            f"default {DEFAULT_RESAMPLES})"
        )
    every_spec = load_specs(ablations)
    loaded = chosen_specs(every_spec, specs, ablations)
    (out / "tables").mkdir(parents=True, exist_ok=True)  # fails early on a bad --out
    (out / "figures").mkdir(parents=True, exist_ok=True)
    all_runs = store.runs()
    if not any(
        r.tag(names.TAG_KIND, names.KIND_TRAIN) in (names.KIND_TRAIN, names.KIND_TRIAL)
        and r.parent_id
        for r in all_runs
    ):
        raise ReportError(
            f"no training runs in {store.masked_uri}: run `make demo` or "
            "`python -m digitexp run ablations/<spec>.py` first"
        )
    selections = {s.name: select_runs(all_runs, s.name, preset) for s in loaded}
    counted = [r for chosen, _ in selections.values() for r in chosen]
    histories = store.metric_histories([r.run_id for r in counted], HISTORY_KEYS)
    final = next((s for s in every_spec if s.final), None)
    final_std = final_spread(all_runs, final, preset)
    sections: list[Section] = []
    evidence: dict[str, SpecEvidence] = {}
    splits: dict = {}  # validation and training splits, loaded once for all specs
    for spec in loaded:
        chosen, left_out = selections[spec.name]
        presets = {r.tag(names.TAG_PRESET, "none") for r in chosen}
        fallback = final_std.get(presets.pop()) if len(presets) == 1 else None
        section = build_section(spec, chosen, histories, fallback)
        section.left_out = left_out
        evidence[spec.name] = gather_evidence(section, store, resamples=resamples, splits=splits)
        bootstrap_deltas(section, evidence[spec.name])
        sections.append(section)
    body: list[str] = []
    for section in sections:
        body.append(_write_section(section, store, out, evidence.get(section.spec.name)))
    body.extend(extra_sections)
    searches = search_section(all_runs)
    if searches:
        body.append(searches)
    body.extend(tune_sections(all_runs, store, out))
    header = _header(store, sections)
    files.write_text(out / "README.md", header + "\n".join(body))
    return ReportSummary(
        out=out,
        specs=tuple(s.spec.name for s in sections),
        runs=sum(len(s.runs) for s in sections),
        left_out=sum(len(s.left_out) for s in sections),
        seconds=time.perf_counter() - start,
        experiments=tuple(sorted({r.run.experiment for s in sections for r in s.runs})),
    )


def _header(store: TrackingStore, sections: Sequence[Section]) -> str:
    runs = sum(len(s.runs) for s in sections)
    presets = sorted({p for s in sections for p in s.presets()})
    roots = sorted({d for s in sections for d in s.data_roots()})
    sets = sorted({o for s in sections for o in s.overrides()})
    return (
        "# digitexp report\n\n"
        f"Rebuilt by `python -m digitexp report` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')} "
        f"from the MLflow store `{store.masked_uri}`: {runs} run(s) counted, "
        f"preset(s) {', '.join(presets) or '–'}, overrides "
        f"{', '.join(f'`{o}`' for o in sets) or '–'}, data {', '.join(roots) or '–'}.\n\n"
        "Which runs count: the latest FINISHED run per spec × variant × seed. Cells with "
        "several seeds are mean ± std (n). Δ is the difference of val mAP means to the spec's "
        "first variant with its 95% paired-bootstrap interval over validation images; **≈** "
        "marks a difference whose interval contains 0 (where runs logged no predictions: "
        "|Δ| ≤ std₁ + std₂ of the seeds, or twice the std of the final setup's seeds under the "
        "same preset). Bold: best value per column. "
        "Published numbers are the HW2 report's.\n\n"
    )


def _write_section(
    section: Section, store: TrackingStore, out: Path, evidence: SpecEvidence | None = None
) -> str:
    spec = section.spec
    name = spec.name
    lines = [
        f"## {spec.question}\n",
        f"Spec `{spec.path.name}` · seeds {', '.join(map(str, spec.seeds))}",
    ]
    if section.runs:
        lines[-1] += (
            f" · preset(s) {', '.join(section.presets())} · overrides "
            f"{', '.join(f'`{o}`' for o in section.overrides())} · data "
            f"{', '.join(section.data_roots())}"
        )
    lines[-1] += "\n"
    if len(section.presets()) > 1 or len(section.data_roots()) > 1 or len(section.overrides()) > 1:
        lines.append(
            "_These runs mix presets, overrides or data roots: compare with care, or rebuild "
            "with `report --preset P`._\n"
        )
    table = markdown_table(section)
    files.write_text(out / "tables" / f"{name}.md", table)
    frame = csv_frame(section)
    files.write_csv(out / "tables" / f"{name}.csv", frame)
    if not section.runs:
        lines.append(
            f"No finished runs yet: `python -m digitexp run ablations/{spec.path.name}`.\n"
        )
    lines.append(table)
    lines.append(insight_markdown(section, evidence, out))
    sources = {d.spread_source for d in section.deltas.values() if d is not None}
    if "final" in sources:
        lines.append(
            "_Spread for ≈ taken from the final setup's seeds (one seed per variant here)._\n"
        )
    if spec.final and section.runs:
        lines.append("Final configuration (the report's Table 8), from the logged config:\n")
        lines.append(final_config_table(section))
    if section.runs:
        curves = curves_figure(section, out / "figures" / f"{name}_curves.png")
        lines.append(f"![{name} curves](figures/{curves.name})\n")
        examples = examples_figure(section, store, out / "figures" / f"{name}_examples.png")
        if examples is not None:
            lines.append(f"![{name} examples](figures/{examples.name})\n")
    if section.left_out:
        lines.append("Left out (not FINISHED):\n")
        for run in section.left_out:
            reason = run.tag(names.TAG_ERROR)
            lines.append(
                f"- `{run.name}` ({run.run_id}): {run.status}" + (f": {reason}" if reason else "")
            )
        lines.append("")
    return "\n".join(lines) + "\n"
