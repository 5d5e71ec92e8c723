"""Tuning training settings: an Optuna study whose trials are full training runs
(``digitexp tune SPEC --space ...``), pruned from their per-epoch validation metric.

- :mod:`.space`: the ``--space`` syntax, checked against the config; values as ``--set`` lines.
- :mod:`.study`: objectives, samplers, pruners, the study in a storage with heartbeats.
- :mod:`.pruning`: :class:`TrialHook`, the trainer's side (report each epoch, stop when pruned).
- :mod:`.trials`: one trial as a nested MLflow run (a retried trial resumes its run).
- :mod:`.results`: ``trials.csv``, totals, best settings, importances; :mod:`.figures` its plots.
- :mod:`.tuner`: the command: check everything, then one worker's trials.

Different from :mod:`digitexp.search`, which tunes post-processing thresholds on one trained
run without retraining.
"""

from digitexp.tune.results import Best, best_trials, totals, trial_rows
from digitexp.tune.space import Dimension, Space, parse_space, set_line, variant_line
from digitexp.tune.study import TuneError, default_pruner
from digitexp.tune.tuner import TuneOutcome, TunePlan, TuneRequest, plan_tune, tune

__all__ = [
    "Best",
    "Dimension",
    "Space",
    "TuneError",
    "TuneOutcome",
    "TunePlan",
    "TuneRequest",
    "best_trials",
    "default_pruner",
    "parse_space",
    "plan_tune",
    "set_line",
    "totals",
    "trial_rows",
    "tune",
    "variant_line",
]
