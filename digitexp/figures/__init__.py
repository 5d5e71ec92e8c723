"""Figures of one training run, drawn the same way wherever they appear (a run's artifacts,
the report):

- :mod:`.curves`: a run's per-epoch curves;
- :mod:`.predictions`: validation predictions drawn against the truth, images chosen by
  outcome, with a stated fallback threshold when nothing passes the Task-2 threshold;
- :mod:`.hook`: :class:`RunFigures`, the hook that logs both at the end of every launched run.

This package imports none of the launchers, the search, the report or the CLI.
"""
