"""Threshold-search speed: one trial against re-running inference, and 200 Optuna trials.

On a synthetic HW2-sized validation split (3,340 images by default) with a tiny detector
trained for a minute (the demo preset), measures in one process:

- ``inference_seconds``: re-running inference on the split with the thresholds set (what a
  search without the candidate cache would pay per trial);
- ``cache_seconds``: the one inference pass that caches the candidates;
- ``trial_seconds``: one trial on the cached candidates (select + score), mean over the study;
- ``seconds_200_trials``: wall time of 200 TPE trials (both objectives) with a sqlite Optuna
  storage, after the inference pass.

Last line: a JSON object whose ``ratio`` is inference_seconds / trial_seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

import torch

from digitexp import presets
from digitexp.config import apply_overrides, seed_config
from digitexp.data import DigitDataset, load_split
from digitexp.data.synth import generate
from digitexp.engine import fit, infer, load_checkpoint
from digitexp.metrics import CandidatePool
from digitexp.model import build_model, set_thresholds
from digitexp.search import (
    Evaluator,
    PostprocessReplay,
    build_cache,
    open_study,
    optimize,
    parse_space,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=3340, help="validation images")
    parser.add_argument("--train", type=int, default=1000, help="training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--cap", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="search_speed_") as tmp:
        root = Path(tmp) / "data"
        generate(root, {"train": args.train, "valid": args.valid}, seed=1, progress=False)
        cfg = apply_overrides(
            seed_config(),
            {
                **presets.DEMO,
                "data.root": str(root),
                "data.valid_limit": 100,
                "train.epochs": args.epochs,
                "train.t_max": args.epochs,
                "train.batch_size": 8,
            },
        )
        t = time.perf_counter()
        fit(cfg, workdir=Path(tmp) / "run", progress=False)
        train_seconds = time.perf_counter() - t
        state = load_checkpoint(Path(tmp) / "run" / "checkpoints" / "best.pt")
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
        split = load_split(root, "valid")
        dataset = DigitDataset(split, cfg.data, train=False)
        m = cfg.model
        set_thresholds(model, score=m.box_score_thresh, nms=m.box_nms_thresh, detections=100)
        t = time.perf_counter()
        infer(model, dataset, device=device, batch_size=32, pre_normalize=False, progress=False)
        inference_seconds = time.perf_counter() - t
        t = time.perf_counter()
        cache = build_cache(
            model, dataset, device=device, cap=args.cap, batch_size=32, pre_normalize=False
        )
        cache_seconds = time.perf_counter() - t
        space = parse_space(None)
        t = time.perf_counter()
        engine = PostprocessReplay(cache, m.box_detections_per_img, space["box_nms_thresh"].low)
        pool = CandidatePool(split, cache.image_ids, cache.pool())
        evaluate = Evaluator(engine, pool, cfg)  # with the digit-accuracy NMS pairs
        setup_seconds = time.perf_counter() - t
        study = open_study(f"sqlite:///{Path(tmp) / 'optuna.db'}", "bench", "both", None)
        t = time.perf_counter()
        optimize(study, evaluate, space, "both", args.trials, progress=False)
        study_seconds = time.perf_counter() - t
        trial_seconds = sum(evaluate.seconds) / len(evaluate.seconds)
        slowest = max(evaluate.seconds)
    print(
        f"trained {args.epochs} epochs in {train_seconds:.0f} s; {len(cache.scores)} candidates, "
        f"{engine.edges} same-class pairs; setup {setup_seconds:.1f} s"
    )
    print(
        f"inference {inference_seconds:.1f} s, cache pass {cache_seconds:.1f} s, trial "
        f"{trial_seconds * 1000:.1f} ms (slowest {slowest * 1000:.0f} ms), "
        f"{args.trials} trials in {study_seconds:.1f} s"
    )
    print(
        json.dumps(
            {
                "images": args.valid,
                "inference_seconds": round(inference_seconds, 2),
                "cache_seconds": round(cache_seconds, 2),
                "trial_seconds": round(trial_seconds, 4),
                "ratio": round(inference_seconds / trial_seconds, 1),
                "trials": args.trials,
                f"seconds_{args.trials}_trials": round(study_seconds, 2),
                "seconds_200_trials": round(study_seconds * 200 / args.trials, 2),
                "setup_seconds": round(setup_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
