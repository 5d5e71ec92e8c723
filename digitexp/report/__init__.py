"""``digitexp report``: the report's comparison tables and figures, rebuilt from MLflow.

- :mod:`.selection`: which runs count and the values read from each;
- :mod:`.statistics`: means, spreads and differences per spec (the numbers, no rendering);
- :mod:`.evidence`: per spec, the paired-bootstrap comparisons, error analyses and anchor
  coverage (numbers, from the runs' logged predictions); :mod:`.insight` renders them;
- :mod:`.tables`, :mod:`.figures`, :mod:`.searches`: Markdown, CSV and PNG;
- :mod:`.build`: :func:`generate`, the whole report.
"""

from digitexp.report.build import ReportError, ReportSummary, generate, load_specs
from digitexp.report.figures import plot_curves
from digitexp.report.selection import RunValues, run_values, select_runs
from digitexp.report.statistics import Delta, Section, Stat, build_section, delta

__all__ = [
    "Delta",
    "ReportError",
    "ReportSummary",
    "RunValues",
    "Section",
    "Stat",
    "build_section",
    "delta",
    "generate",
    "load_specs",
    "plot_curves",
    "run_values",
    "select_runs",
]
