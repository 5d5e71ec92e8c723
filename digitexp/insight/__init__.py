"""Insight: is a difference between variants real, and why does a variant win?

- :mod:`.bootstrap`: the paired bootstrap over validation images (``ResampleScorer`` scores a
  run on any resample exactly as pycocotools would; ``compare`` gives Δ, its interval and
  P(Δ > 0), with the seeds' spread when there are several);
- :mod:`.matching`, :mod:`.failures`, :mod:`.confusion`: the images as the house-number rule
  reads them, each in one Task-2 failure class, and the digit confusion matrix;
- :mod:`.analysis`: a run's error analysis (with AP per digit and size of
  :mod:`digitexp.metrics.breakdown`) and its tables; :mod:`.figures` its figures;
- :mod:`.coverage`: anchor coverage of a model config on a split, before any training;
- :mod:`.runs`: a run's analysis read from and logged to MLflow; :mod:`.hook` the RunHook that
  does it at the end of every launched run.

This package imports none of the launchers, the search, the report or the CLI (they use it).
"""
