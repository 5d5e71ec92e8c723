"""The machine the kit runs on, and the packages digitexp needs beyond torch, tried for real.

Device, driver, CUDA, cuDNN, torch and torchvision versions, Python, CPUs, memory, date; then
each dependency the GPU image lacks (they travel as wheels from ``.whl/``, see
``benchmarks/gpu/requirements.txt``): its version, where it was imported from, and a small
real use (an MLflow sqlite store with a run, a metric and an artifact; an Optuna sqlite
study; pycocotools and faster-coco-eval on the same detections). Last line: a JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch
import torchvision

from benchmarks.gpu import common


def nvidia_smi() -> dict[str, str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    fields = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    proc = subprocess.run(
        ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"error": proc.stderr.strip()[:300]}
    values = [v.strip() for v in proc.stdout.splitlines()[0].split(",")]
    return dict(zip(fields.split(","), values, strict=False))


def machine(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpus": common.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "sqlite": sqlite3.sqlite_version,
        "device": common.device_name(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            {
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
                "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                "nvidia_smi": nvidia_smi(),
            }
        )
    return info


def try_mlflow(work: Path) -> str:
    from digitexp.tracking import TrackingStore
    from digitexp.tracking import contract as names

    store = TrackingStore(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    tracker = store.create_run("env-check", "probe", {names.TAG_KIND: names.KIND_TRAIN})
    tracker.log_metrics({names.TRAIN_LOSS: 1.0}, step=1)
    tracker.log_text("probe", names.SPEC_PY)
    store.end_run(tracker.run_id, "FINISHED")
    run = store.get_run(tracker.run_id)
    assert run.status == "FINISHED" and run.metrics[names.TRAIN_LOSS] == 1.0
    assert names.SPEC_PY in store.list_artifacts(tracker.run_id)
    return version_of("mlflow", "mlflow-skinny")


def try_optuna(work: Path) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{work / 'optuna.db'}", sampler=optuna.samplers.TPESampler(seed=0)
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert len(study.trials) == 5
    return optuna.__version__


DETECTIONS = [
    {"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 30], "score": 0.9},
    {"image_id": 1, "category_id": 5, "bbox": [52, 12, 20, 30], "score": 0.8},
]
TRUTH = {
    "images": [{"id": 1, "width": 100, "height": 100}],
    "categories": [{"id": i, "name": str(i)} for i in range(1, 11)],
    "annotations": [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 3,
            "bbox": [10, 10, 20, 30],
            "area": 600,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 5,
            "bbox": [50, 10, 20, 30],
            "area": 600,
            "iscrowd": 0,
        },
    ],
}


def coco_stats(coco_cls: type, eval_cls: type) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_cls()
        gt.dataset = json.loads(json.dumps(TRUTH))
        gt.createIndex()
        ev = eval_cls(gt, gt.loadRes(json.loads(json.dumps(DETECTIONS))), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(x) for x in ev.stats[:3]]


def try_pycocotools(work: Path) -> str:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    assert 0 < coco_stats(COCO, COCOeval)[0] <= 1
    return version_of("pycocotools")


def try_faster_coco_eval(work: Path) -> str:
    import faster_coco_eval
    from faster_coco_eval import COCO, COCOeval_faster
    from pycocotools.coco import COCO as RefCOCO
    from pycocotools.cocoeval import COCOeval

    fast, reference = coco_stats(COCO, COCOeval_faster), coco_stats(RefCOCO, COCOeval)
    assert all(abs(a - b) < 1e-9 for a, b in zip(fast, reference, strict=True)), (fast, reference)
    return faster_coco_eval.__version__


CHECKS: dict[str, Callable[[Path], str]] = {
    "mlflow": try_mlflow,
    "optuna": try_optuna,
    "pycocotools": try_pycocotools,
    "faster_coco_eval": try_faster_coco_eval,
}


def version_of(*distributions: str) -> str:
    """The installed version of the first of these distributions found."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def where(module: str) -> str:
    mod = sys.modules.get(module)
    return str(Path(getattr(mod, "__file__", "") or "?").parent) if mod else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = common.device_of(args.device)
    figures = machine(device)
    deps: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="env-") as tmp:
        for name, check in CHECKS.items():
            try:
                deps[name] = {"version": check(Path(tmp)), "from": where(name), "ok": "yes"}
            except Exception as exc:  # each dependency is reported, not raised
                traceback.print_exc()
                deps[name] = {"ok": "no", "error": f"{type(exc).__name__}: {exc}"[:300]}
    figures["dependencies"] = deps
    common.say(json.dumps(figures, indent=1))
    common.emit(figures)
    required = ("mlflow", "optuna", "pycocotools")
    if any(deps[name]["ok"] != "yes" for name in required):
        raise SystemExit(
            "a required dependency failed: "
            + ", ".join(f"{n}: {deps[n].get('error')}" for n in required if deps[n]["ok"] != "yes")
        )


if __name__ == "__main__":
    main()
