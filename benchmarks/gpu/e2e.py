"""End to end as a user runs it: ``run`` the final spec into a sqlite MLflow store, then
``search`` and ``predict`` on that run, and check the tracking contract.

``python -m digitexp run ablations/final.py --variant final --seed 0`` on the device, on a
synthetic HW2-sized set (``--data``; the kit generates it), on the GPU path (the kit's
``GPU_PATH`` settings as ``--set``), weights from the torch hub cache when there (else from
scratch), one epoch limited to ``--steps`` training steps; validation and the test
predictions on the whole splits (or ``--valid-limit`` / ``--test-limit``). Then ``search
RUN_ID`` (``--trials``), ``predict RUN_ID`` on ``--predict-images`` test images and
``register RUN_ID``.

Checked: the run FINISHED, named ``final/s0``, with every epoch metric, the summary and
``val_*_at_best`` metrics, its tags and artifacts (checkpoints, predictions, submission,
error analysis, figures); the search run is nested under it with its candidate cache and
its ``search/`` metrics; predict wrote pred.json and pred.csv with a row per image;
``register`` logged the run's best checkpoint as an MLflow model.

Figures: each command's wall time, and from the run's own metrics the epoch time at HW2
size (the HW2 train split at the measured images/s + the measured validation) and the
run's fixed cost (the command's time minus its epoch). Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.gpu import common
from digitexp.data.splits import IMAGE_SUFFIXES
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

EXPERIMENT = "gpu-check"
RUN_NAME = "final/s0"  # the child run of `--variant final --seed 0`: `{variant}/s{seed}`


def digitexp(args: list[str], env: dict[str, str], timeout: float) -> float:
    """``python -m digitexp ARGS``, its output into this part's log; its wall time.
    SystemExit with the output's end when it fails."""
    print(f"\n$ python -m digitexp {' '.join(args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "digitexp", *args],
        cwd=common.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - start
    print(proc.stdout[-4000:], proc.stderr[-6000:], sep="\n", flush=True)
    common.say(f"digitexp {args[0]}: exit {proc.returncode} in {seconds:.1f} s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        raise SystemExit(f"`digitexp {' '.join(args[:2])}` exited {proc.returncode}: {last}")
    return seconds


def problems_of_run(store: TrackingStore, run_id: str, test_annotated: bool) -> list[str]:
    """What the run lacks of the tracking contract."""
    run = store.get_run(run_id)
    problems = []
    if run.status != "FINISHED":
        problems.append(f"status {run.status} ({run.tag(names.TAG_ERROR)})")
    history = store.metric_histories([run_id], names.EPOCH_METRICS)[run_id]
    problems += [f"no epoch metric {k}" for k in names.EPOCH_METRICS if not history.get(k)]
    if run.name != RUN_NAME:
        problems.append(f"run named {run.name!r}, not {RUN_NAME!r}")
    summary = [names.BEST_VAL_MAP, names.BEST_EPOCH, names.FINAL_TRAIN_LOSS]
    summary += [names.at_best_metric(k) for k in ("map50", "map75", "digit_acc", "number_acc")]
    if test_annotated:
        summary += [names.TEST_MAP, names.TEST_NUMBER_ACC]
    problems += [f"no summary metric {k}" for k in summary if k not in run.metrics]
    for tag in (names.TAG_SPEC, names.TAG_VARIANT, names.TAG_SEED, names.TAG_CONFIG_HASH):
        if not run.tag(tag):
            problems.append(f"no tag {tag}")
    listed = set(store.list_artifacts(run_id))
    folders = (
        names.CHECKPOINTS,
        names.PREDICTIONS,
        names.TEST_PREDICTIONS,
        names.ANALYSIS,
        names.FIGURES,
    )
    for folder in folders:
        listed |= set(store.list_artifacts(run_id, folder))
    wanted = [
        names.CONFIG_JSON,
        names.SPEC_PY,
        names.BEST_CHECKPOINT,
        names.LAST_CHECKPOINT,
        names.VAL_PREDICTIONS,
        f"{names.TEST_PREDICTIONS}/pred.json",
        f"{names.TEST_PREDICTIONS}/pred.csv",
        names.ANALYSIS_AP_BY_DIGIT,
        names.ANALYSIS_FAILURES,
        names.CURVES_FIGURE,
        names.PREDICTIONS_FIGURE,
    ]
    problems += [f"no artifact {a}" for a in wanted if a not in listed]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_arguments(parser)
    parser.add_argument("--steps", type=int, default=300, help="training steps in the epoch")
    parser.add_argument("--train-limit", type=int, default=0, help="train images (0 = all)")
    parser.add_argument("--valid-limit", type=int, default=0, help="valid images (0 = all)")
    parser.add_argument("--test-limit", type=int, default=0, help="test images (0 = all)")
    parser.add_argument("--trials", type=int, default=50, help="search trials")
    parser.add_argument("--predict-images", type=int, default=500)
    parser.add_argument("--work", type=Path, help="store and outputs (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    args = parser.parse_args()
    device = common.device_of(args.device)
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        root = common.data_root(args.data, dict(common.HW2), work)
        env = dict(os.environ)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
        env.setdefault("DIGITEXP_SYSTEM_METRICS", "0")
        cfg = common.experiment(args.model, root, device, args.weights)
        sets = {
            **common.GPU_PATH,
            "model.weights": cfg.model.weights,
            "train.epochs": 1,
            "train.max_steps_per_epoch": args.steps,
            **common.limits(args.train_limit, args.valid_limit, args.test_limit),
        }
        if args.model != "final":
            sets.update(common.TINY)
        seconds: dict[str, float] = {}
        seconds["run"] = digitexp(
            common.final_run_args(device, root, EXPERIMENT, sets),
            env,
            args.timeout,
        )
        store = TrackingStore(env["MLFLOW_TRACKING_URI"])
        children = [
            r for r in store.runs([EXPERIMENT]) if r.tag(names.TAG_KIND) == names.KIND_TRAIN
        ]
        if len(children) != 1:
            raise SystemExit(f"expected one training run in {EXPERIMENT}, found {len(children)}")
        run = children[0]
        test_json = json.loads((root / "test.json").read_text())
        problems = problems_of_run(store, run.run_id, bool(test_json.get("annotations")))

        seconds["search"] = digitexp(
            [
                "search",
                run.run_id,
                "--trials",
                str(args.trials),
                "--seed",
                "0",
                "--device",
                str(device),
            ],
            env,
            args.timeout,
        )
        searches = [
            r
            for r in store.runs()
            if r.tag(names.TAG_KIND) == names.KIND_SEARCH
            and r.tag(names.TAG_SOURCE_RUN) == run.run_id
        ]
        if len(searches) != 1 or searches[0].status != "FINISHED":
            problems.append(f"search: {len(searches)} finished search run(s) for {run.run_id}")
        else:
            search = searches[0]
            if not any(
                a.startswith(names.CANDIDATES)
                for a in store.list_artifacts(search.run_id, names.CANDIDATES)
            ):
                problems.append("search: no candidate cache logged")
            wanted = [
                names.SEARCH_TRIALS,
                names.search_metric("default", "map"),
                names.search_metric("best_map", "map"),
                names.search_metric("best_number_acc", "number_acc"),
            ]
            problems += [f"search: no metric {k}" for k in wanted if k not in search.metrics]
            if search.parent_id != run.run_id:
                problems.append(f"search: not nested under {run.run_id}")

        images = work / "predict-images"
        images.mkdir(exist_ok=True)
        test_images = sorted(
            p for p in (root / "test").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        chosen = test_images[: args.predict_images]
        for path in chosen:
            target = images / path.name
            if not target.exists():
                target.symlink_to(path.resolve())
        out = work / "predict-out"
        seconds["predict"] = digitexp(
            [
                "predict",
                run.run_id,
                "--images",
                str(images),
                "--out",
                str(out),
                "--device",
                str(device),
            ],
            env,
            args.timeout,
        )
        rows = list(csv.reader((out / "pred.csv").open())) if (out / "pred.csv").is_file() else []
        if not (out / "pred.json").is_file() or len(rows) != len(chosen) + 1:
            problems.append(f"predict: pred.json/pred.csv missing or short ({len(rows)} csv rows)")

        try:  # the model path (mlflow.pyfunc with the carried wheels): a problem, not the end
            seconds["register"] = digitexp(
                ["register", run.run_id, "--name", EXPERIMENT], env, args.timeout
            )
        except SystemExit as exc:
            problems.append(f"register: {exc}")

        run = store.get_run(run.run_id)
        history = store.metric_histories([run.run_id], names.TIMING_METRICS)[run.run_id]
        rate = (
            history[names.TRAIN_IMAGES_PER_S][-1][1]
            if history.get(names.TRAIN_IMAGES_PER_S)
            else None
        )
        epoch = history[names.EPOCH_SECONDS][-1][1] if history.get(names.EPOCH_SECONDS) else None
        train_count = len(json.loads((root / "train.json").read_text())["images"])
        if args.train_limit:
            train_count = min(train_count, args.train_limit)
        train_images = min(args.steps * cfg.train.batch_size, train_count)
        valid_count = len(json.loads((root / "valid.json").read_text())["images"])
        if args.valid_limit:
            valid_count = min(valid_count, args.valid_limit)
    figures: dict[str, object] = {
        "device": common.device_name(device),
        "model": args.model,
        "weights": cfg.model.weights,
        "run_id": run.run_id,
        "status": run.status,
        "command_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "steps": args.steps,
        "valid_images": valid_count,
        "val_map": run.metrics.get(names.BEST_VAL_MAP),
        "contract_problems": problems,
        "ok": not problems,
    }
    if rate and epoch:
        train_seconds = train_images / rate
        valid_seconds = max(0.0, epoch - train_seconds)
        valid_hw2 = valid_seconds * common.HW2["valid"] / max(1, valid_count)
        figures.update(
            {
                "train_images_per_s": round(rate, 2),
                "epoch_seconds_measured": round(epoch, 1),
                "valid_seconds_hw2": round(valid_hw2, 1),
                "hw2_epoch_seconds": round(common.HW2["train"] / rate + valid_hw2, 1),
                "run_fixed_seconds": round(max(0.0, seconds["run"] - epoch), 1),
            }
        )
    common.emit(figures)
    if problems:
        raise SystemExit("contract problems: " + "; ".join(problems))


if __name__ == "__main__":
    main()
