"""End to end: `digitexp run` with the smoke preset into a real sqlite MLflow store."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import textwrap
from pathlib import Path

import pytest
from conftest import (
    assert_one_clear_line,
    new_store,
    run_subprocess,
)
from mlflow.tracking import MlflowClient

from digitexp import presets
from digitexp.config import apply_overrides, seed_config
from digitexp.engine.optim import lr_factor
from digitexp.tracking import contract
from digitexp.tracking.contract import EPOCH_METRICS, SUMMARY_METRICS

TAGS = [
    contract.TAG_SPEC,
    contract.TAG_VARIANT,
    contract.TAG_SEED,
    contract.TAG_PRESET,
    contract.TAG_GIT,
    contract.TAG_CONFIG_HASH,
]

TINY_SPEC = '''\
"""Does a smaller NMS threshold help a tiny model? (test spec)"""
from digitexp.config import seed_config
from digitexp.spec import Variant

BASE = seed_config()
VARIANTS = [
    Variant("nms_0.5", {"model.box_nms_thresh": 0.5}, published={"val_map": 0.4611}),
    Variant("nms_0.3", {"model.box_nms_thresh": 0.3}),
]
SEEDS = (0,)
'''


def write_spec(tmp_path: Path, body: str = TINY_SPEC, name: str = "tiny.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _children(client: MlflowClient, experiment: str) -> tuple[list, list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if contract.PARENT_TAG not in r.data.tags]
    children = [r for r in runs if contract.PARENT_TAG in r.data.tags]
    return parents, children


@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory, synth_root: Path, empty_store_db: Path
) -> dict:
    """One real `run` of the tiny spec (2 variants x 1 seed, smoke preset) in a subprocess."""
    tmp = tmp_path_factory.mktemp("run")
    spec = write_spec(tmp)
    uri = new_store(tmp, empty_store_db)
    result = run_subprocess(
        "run",
        spec,
        "--preset",
        "smoke",
        "--data",
        synth_root,
        env={"MLFLOW_TRACKING_URI": uri},
        cwd=tmp,
    )
    return {"result": result, "uri": uri, "tmp": tmp, "spec": spec}


def test_run_prints_the_summary_table(smoke_run: dict) -> None:
    result = smoke_run["result"]
    assert result.code == 0, result.err
    assert "best val mAP" in result.out and "val Task-2" in result.out
    assert result.out.count("FINISHED") == 2
    assert "make ui" in result.out


def test_parent_and_children_with_tags_and_params(smoke_run: dict) -> None:
    client = MlflowClient(smoke_run["uri"])
    parents, children = _children(client, "tiny")
    assert len(parents) == 1 and len(children) == 2
    assert parents[0].info.status == "FINISHED"
    assert {c.info.run_name for c in children} == {"nms_0.5/s0", "nms_0.3/s0"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags[contract.PARENT_TAG] == parents[0].info.run_id
        for tag in TAGS:
            assert child.data.tags.get(tag), tag
        assert child.data.tags[contract.TAG_PRESET] == "smoke"
        params = child.data.params
        assert params["model.arch"] == "tiny_fpn"
        assert params["model.anchor_sizes"] == "(4, 8, 12, 24, 48)"
        variant = child.data.tags[contract.TAG_VARIANT]
        assert params["model.box_nms_thresh"] == variant.split("_")[1]
        assert params["train.epochs"] == str(presets.SMOKE["train.epochs"])


def test_every_epoch_metric_for_every_epoch(smoke_run: dict) -> None:
    client = MlflowClient(smoke_run["uri"])
    _, children = _children(client, "tiny")
    epochs = presets.SMOKE["train.epochs"]
    for child in children:
        for key in EPOCH_METRICS:
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
        for key in SUMMARY_METRICS:
            assert key in child.data.metrics, key
        assert 1 <= child.data.metrics["best_epoch"] <= epochs


def test_artifacts_and_val_predictions_rescore_to_val_map(smoke_run: dict) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    client = MlflowClient(smoke_run["uri"])
    _, children = _children(client, "tiny")
    for child in children:
        rid = child.info.run_id
        top = {a.path for a in client.list_artifacts(rid)}
        assert {contract.CONFIG_JSON, "spec.py", "checkpoints", "predictions"} <= top
        assert {a.path for a in client.list_artifacts(rid, "checkpoints")} == {
            contract.BEST_CHECKPOINT,
            contract.LAST_CHECKPOINT,
        }
        assert {a.path for a in client.list_artifacts(rid, contract.TEST_PREDICTIONS)} == {
            "predictions/test/pred.json",
            "predictions/test/pred.csv",
            contract.TEST_INFERENCE,
        }
        assert contract.VAL_INFERENCE in {a.path for a in client.list_artifacts(rid, "predictions")}
        local = Path(client.download_artifacts(rid, "", str(smoke_run["tmp"] / rid)))
        config = json.loads((local / contract.CONFIG_JSON).read_text())
        assert config["model"]["arch"] == "tiny_fpn"
        assert (local / "spec.py").read_text() == smoke_run["spec"].read_text()
        results = json.loads((local / "predictions" / "val.json").read_text())
        best_epoch = int(child.data.metrics["best_epoch"])
        history = client.get_metric_history(rid, "val_map")
        val_map_at_best = next(m.value for m in history if m.step == best_epoch)
        assert child.data.metrics["best_val_map"] == pytest.approx(val_map_at_best)
        root = Path(config["data"]["root"])
        gt = COCO(str(root / "valid.json")) if results else None
        if not results:
            assert val_map_at_best == 0.0
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(val_map_at_best, abs=1e-9)
        rows = list(csv.reader((local / "predictions" / "test" / "pred.csv").open()))
        assert rows[0] == ["image_id", "pred_label"]
        ids = [int(r[0]) for r in rows[1:]]
        assert ids == sorted(ids) and len(ids) == 8


def test_every_run_logs_its_error_analysis(smoke_run: dict) -> None:
    """The analysis hook of every launched run: analysis/* metrics and artifacts."""
    client = MlflowClient(smoke_run["uri"])
    _, children = _children(client, "tiny")
    for child in children:
        logged = {k for k in child.data.metrics if k.startswith(f"{contract.ANALYSIS}/")}
        task2 = {k for k in contract.ANALYSIS_METRICS if k.startswith("analysis/task2_")}
        assert task2 <= logged <= set(contract.ANALYSIS_METRICS)
        assert sum(child.data.metrics[k] for k in task2) == pytest.approx(1.0)
        listed = {a.path for a in client.list_artifacts(child.info.run_id, contract.ANALYSIS)}
        assert set(contract.ANALYSIS_ARTIFACTS) - {contract.ANALYSIS_WORST_FIGURE} <= listed


def test_nan_loss_marks_the_run_failed(
    tmp_path: Path, synth_root: Path, empty_store_db: Path
) -> None:
    spec = write_spec(tmp_path)
    uri = new_store(tmp_path, empty_store_db)
    result = run_subprocess(
        "run",
        spec,
        "--variant",
        "nms_0.5",
        "--preset",
        "smoke",
        "--data",
        synth_root,
        "--set",
        "train.lr=1e30",
        env={"MLFLOW_TRACKING_URI": uri},
        cwd=tmp_path,
    )
    assert result.code == 1, result.err
    assert "non-finite loss" in result.err
    assert "Traceback" not in result.err
    client = MlflowClient(uri)
    parents, children = _children(client, "tiny")
    assert [c.info.status for c in children] == ["FAILED"]
    assert "non-finite loss" in children[0].data.tags[contract.TAG_ERROR]
    assert parents[0].info.status == "FAILED"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--set", "train.optimizer=adam"], ["train.optimizer"]),
        (["--set", "model.anchor_size=(4,)"], ["model.anchor_size: unknown key"]),
        (["--variant", "nms_0.9"], ["unknown variant 'nms_0.9'"]),
        (["--data", "/nonexistent/data"], ["/nonexistent/data: data root not found"]),
        (
            ["--set", "model.weights=/nonexistent/w.pt"],
            ["/nonexistent/w.pt: weights file not found"],
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_run(
    tmp_path: Path, synth_root: Path, store_uri: str, cli, args: list[str], needles: list[str]
) -> None:
    spec = write_spec(tmp_path)
    argv = ["run", spec, "--preset", "smoke"]
    if "--data" not in args:
        argv += ["--data", str(synth_root)]
    assert_one_clear_line(cli(*argv, *args), *needles)
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("tiny")
    assert exp is None or not client.search_runs([exp.experiment_id])


def test_bad_spec_exits_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, TINY_SPEC.replace("0.3}", "'x'}"))
    result = run_subprocess("run", spec, cwd=tmp_path)
    assert_one_clear_line(result, str(spec), "model.box_nms_thresh")


def test_dry_run_prints_the_plan(tmp_path: Path, cli) -> None:
    spec = write_spec(tmp_path)
    result = cli("run", spec, "--preset", "smoke", "--dry-run", "--seed", "3")
    assert result.code == 0
    assert "nms_0.5/s3: " in result.out and "nms_0.3/s3: " in result.out
    assert "model.box_nms_thresh=0.3" in result.out


def test_lr_schedule_closed_forms() -> None:
    cfg = seed_config().train  # StepLR(3, 0.1), no warm-up
    f = lr_factor(cfg, steps_per_epoch=10)
    assert [f(e * 10) for e in range(7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])
    cos = apply_overrides(
        seed_config(), {"train.scheduler": "cosine", "train.t_max": 4, "train.eta_min": 1e-5}
    ).train
    g = lr_factor(cos, steps_per_epoch=5)
    assert g(0) == pytest.approx(1.0)
    assert g(4 * 5) * cos.lr == pytest.approx(1e-5)
    assert g(2 * 5) * cos.lr == pytest.approx((1e-4 + 1e-5) / 2)
    warm = apply_overrides(
        seed_config(), {"train.warmup_iters": 10, "train.warmup_factor": 0.1}
    ).train
    h = lr_factor(warm, steps_per_epoch=100)
    assert h(0) == pytest.approx(0.1) and h(5) == pytest.approx(0.55) and h(10) == 1.0


def test_predict_writes_the_submission_files(smoke_run: dict, synth_root: Path) -> None:
    client = MlflowClient(smoke_run["uri"])
    _, children = _children(client, "tiny")
    run_id = children[0].info.run_id
    out = smoke_run["tmp"] / "submission"
    result = run_subprocess(
        "predict",
        run_id,
        "--images",
        synth_root / "test",
        "--out",
        out,
        env={"MLFLOW_TRACKING_URI": smoke_run["uri"]},
        cwd=smoke_run["tmp"],
    )
    assert result.code == 0, result.err
    assert "pred.json" in result.out
    logged = Path(
        client.download_artifacts(
            run_id, contract.TEST_PREDICTIONS, str(smoke_run["tmp"] / "logged")
        )
    )
    # the same checkpoint on the same images, at the same batch size, gives the run's own
    # submission; inference.json says how both were made
    assert (out / "pred.csv").read_text() == (logged / "pred.csv").read_text()
    assert json.loads((out / "pred.json").read_text()) == json.loads(
        (logged / "pred.json").read_text()
    )
    made = json.loads((out / "inference.json").read_text())
    assert made == json.loads((logged / "inference.json").read_text())
    assert made["batch_size"] == 8 and made["pred_json"] == "detections with score > 0.5"


def test_hooks_run_after_each_logged_epoch_and_at_the_end(synth_root: Path, tmp_path: Path) -> None:
    from digitexp.engine import RunHook, fit
    from digitexp.tracking import NullTracker

    class Recorder(RunHook):
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def epoch_end(self, trainer, epoch, metrics) -> None:
            logged = {step for step, _ in tracker.metrics[contract.VAL_MAP]}
            self.calls.append(("epoch", epoch, epoch in logged, "val_map" in metrics))

        def run_end(self, trainer, result, val) -> None:
            self.calls.append(
                ("end", result.epochs, len(val), contract.BEST_VAL_MAP in tracker.metrics)
            )

    class Stop(RunHook):
        def epoch_end(self, trainer, epoch, metrics) -> None:
            raise RuntimeError("pruned")

    cfg = apply_overrides(seed_config(), {**presets.SMOKE, "data.root": str(synth_root)})
    tracker = NullTracker()
    recorder = Recorder()
    fit(cfg, tracker, workdir=tmp_path / "a", progress=False, hooks=[recorder])
    epochs = cfg.train.epochs
    assert recorder.calls == [("epoch", e, True, True) for e in range(1, epochs + 1)] + [
        ("end", epochs, cfg.data.valid_limit, True)
    ]
    with pytest.raises(RuntimeError, match="pruned"):
        fit(cfg, NullTracker(), workdir=tmp_path / "b", progress=False, hooks=[Stop()])
    assert (tmp_path / "b" / contract.LAST_CHECKPOINT).is_file()  # the epoch was kept
