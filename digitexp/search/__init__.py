"""Threshold search on a trained run, without retraining (``digitexp search RUN_ID``).

- :mod:`.candidates`: one inference pass caches every image's candidate detections.
- :mod:`.replay`: torchvision's RoI post-processing replayed on them for any threshold pair.
- :mod:`.study`: the Optuna space, samplers, storage, trials and the chosen best trials.
- :mod:`.thresholds`: the command: a study scored with :class:`digitexp.metrics.CandidatePool`,
  logged as one MLflow run; :mod:`.figures`: its Pareto front and history.
"""

from digitexp.search.candidates import CandidateCache, build_cache
from digitexp.search.replay import PostprocessReplay
from digitexp.search.study import (
    Choice,
    Range,
    SearchError,
    choices,
    default_storage,
    make_sampler,
    open_study,
    optimize,
    parse_space,
)
from digitexp.search.thresholds import (
    Evaluator,
    SearchOutcome,
    SearchRequest,
    candidates_of,
    evaluator,
    run_search,
    scored_split,
)

__all__ = [
    "CandidateCache",
    "Choice",
    "Evaluator",
    "PostprocessReplay",
    "Range",
    "SearchError",
    "SearchOutcome",
    "SearchRequest",
    "build_cache",
    "candidates_of",
    "choices",
    "default_storage",
    "evaluator",
    "make_sampler",
    "open_study",
    "optimize",
    "parse_space",
    "run_search",
    "scored_split",
]
