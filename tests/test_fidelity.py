"""Where digitexp writes something that carries a name from the report, it is what the report
author's code wrote: pred.json (score > 0.5, file-name order, model order, indent 4), the
inference batch size recorded beside every prediction file, and digit accuracy undefined
(NaN in MLflow, "–" in the report) rather than 0 when nothing counts."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
from conftest import Recorded

from digitexp.config import EvalConfig
from digitexp.data import ImageRecord
from digitexp.metrics import Detections
from digitexp.submission import write_submission
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names


def _det(image_id: int, scores: list[float], labels: list[int]) -> Detections:
    boxes = np.array([[10.0 * i, 2, 10.0 * i + 7.25, 19.5] for i in range(len(scores))], np.float32)
    return Detections(image_id, boxes, np.array(scores, np.float32), np.array(labels, np.int64))


def test_pred_json_is_the_authors_file_by_default(tmp_path: Path) -> None:
    """Score > eval.score_thresh (strict), images in file-name order ("10.png" before
    "2.png", as the author's sorted folder listing), each image in the model's order,
    [x, y, w, h] unrounded, indent 4; pred.csv is the same either way."""
    images = [ImageRecord(2, "2.png", 60, 30), ImageRecord(10, "10.png", 60, 30)]
    dets = [_det(2, [0.9, 0.5, 0.51, 0.3], [3, 4, 5, 6]), _det(10, [0.7], [2])]
    cfg = EvalConfig()
    j, c, info = write_submission(dets, images, tmp_path / "a", cfg, {"batch_size": 1})
    rows = json.loads(j.read_text())
    assert [(r["image_id"], r["category_id"]) for r in rows] == [(10, 2), (2, 3), (2, 5)]
    assert rows[0]["bbox"] == [0.0, 2.0, 7.25, 17.5]
    assert rows[1]["score"] == float(np.float32(0.9))
    assert j.read_text().startswith("[\n    {\n        ")  # json.dump(..., indent=4)
    assert c.read_text() == "image_id,pred_label\n2,24\n10,1\n"
    made = json.loads(info.read_text())
    assert made["batch_size"] == 1 and made["pred_json_entries"] == 3
    every = EvalConfig(submission_all_detections=True)
    j2, c2, info2 = write_submission(dets, images, tmp_path / "b", every, {"batch_size": 1})
    assert len(json.loads(j2.read_text())) == 5
    assert c2.read_text() == c.read_text()
    assert json.loads(info2.read_text())["pred_json"] == "every detection"


def test_predict_batch_size_and_every_detection(
    recorded_store: Recorded, synth_root: Path, tmp_path: Path, cli, monkeypatch
) -> None:
    """`predict --batch-size 1` (the author's setting) is recorded in inference.json;
    `--all-detections` keeps what the default leaves out (an untrained model's scores are
    far below 0.5)."""
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(recorded_store.db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    common = ["predict", recorded_store.run_id, "--images", synth_root / "test"]
    low = ["--set", "model.box_score_thresh=0.0"]
    one = cli(*common, "--out", tmp_path / "one", "--batch-size", "1", *low)
    assert one.code == 0, one.err
    assert "batch size 1" in one.out
    made = json.loads((tmp_path / "one" / "inference.json").read_text())
    assert made["batch_size"] == 1 and made["device"] == "cpu" and made["images"] == 8
    every = cli(*common, "--out", tmp_path / "all", "--batch-size", "1", "--all-detections", *low)
    assert every.code == 0, every.err
    default = json.loads((tmp_path / "one" / "pred.json").read_text())
    kept = json.loads((tmp_path / "all" / "pred.json").read_text())
    assert default == [r for r in kept if r["score"] > 0.5]
    assert len(kept) > len(default)
    assert (tmp_path / "one" / "pred.csv").read_text() == (
        tmp_path / "all" / "pred.csv"
    ).read_text()


def test_undefined_digit_accuracy_is_nan_in_mlflow_and_a_dash_in_the_report(
    recorded_store: Recorded, tmp_path: Path, cli, monkeypatch
) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(recorded_store.db, db)
    uri = f"sqlite:///{db}"
    store = TrackingStore(uri)
    tracker = store.reopen_run(recorded_store.run_id)
    tracker.log_metrics({names.VAL_DIGIT_ACC: float("nan"), names.VAL_NUMBER_ACC: 0.5}, step=1)
    store.end_run(recorded_store.run_id, "FINISHED")
    history = store.metric_histories([recorded_store.run_id], [names.VAL_DIGIT_ACC])
    ((step, value),) = history[recorded_store.run_id][names.VAL_DIGIT_ACC]
    assert step == 1 and math.isnan(value)
    with sqlite3.connect(db) as conn:  # stored as MLflow's NaN, not as 0
        (is_nan,) = conn.execute(
            "SELECT is_nan FROM metrics WHERE key = ?", (names.VAL_DIGIT_ACC,)
        ).fetchone()
    assert is_nan
    specs = tmp_path / "ablations"
    specs.mkdir()
    (specs / "recorded.py").write_text(
        '"""Is the digit accuracy shown as undefined?"""\n'
        "from digitexp.config import seed_config\n\n"
        'BASE = seed_config()\nVARIANTS = {"a": {}}\n'
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = cli("report", "--out", tmp_path / "reports", "--ablations", specs)
    assert result.code == 0, result.err
    table = (tmp_path / "reports" / "tables" / "recorded.md").read_text()
    header, _, row = table.splitlines()[:3]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" val digit acc "].strip() == "–"
    assert cells[" val mAP "].strip() == "0.2500"
    assert "nan" not in table.lower()
