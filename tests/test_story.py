"""What the UI tells of a launch, without training: names, descriptions, the parent's
comparison, `--set` lines, the URL and the view it selects."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from conftest import ABLATIONS

from digitexp.config import format_set, parse_set
from digitexp.launch import plan_runs
from digitexp.launch.story import (
    comparison,
    invocation_name,
    md,
    overrides_text,
    shared_params,
    short_question,
)
from digitexp.search.study import Choice
from digitexp.search.thresholds import reuse_lines
from digitexp.spec import load_spec
from digitexp.tracking import RunRecord, runs_url, ui_base_url
from digitexp.tracking import contract as names
from digitexp.tracking.ui import MIN_NAME_PX, run_name_width, view_state


def test_runs_are_named_by_variant_first_and_parents_by_the_question() -> None:
    spec = load_spec(ABLATIONS / "anchors.py", preset="demo")
    plans = plan_runs(spec, seeds=[0, 1])
    assert plans[0].name == f"{plans[0].variant}/s0" and plans[1].name.endswith("/s1")
    assert short_question(spec.question) == (
        "Do digit-sized anchors and other aspect ratios raise val mAP?"
    )
    assert short_question("x" * 100).endswith("…") and len(short_question("x" * 100)) == 64
    name = invocation_name(spec)
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d · Do digit-sized anchors .* val mAP\? · demo", name)
    assert invocation_name(spec, "worker").split(" · ")[3] == "worker"


def test_shared_params_are_what_no_variant_changes() -> None:
    spec = load_spec(ABLATIONS / "anchors.py")
    shared = shared_params(plan_runs(spec))
    assert "model.anchor_sizes" not in shared and "train.batch_size" not in shared
    assert shared["model.arch"] == spec.base.model.arch


@pytest.mark.parametrize(
    "sets",
    [
        {},
        {"train.epochs": 3},
        {"data.root": "data/my synth", "model.anchor_sizes": (4, 8, 16), "train.lr": 0.001},
        {"model.roi_levels": (0,), "eval.agnostic_nms": True, "data.root": "3"},
    ],
)
def test_the_overrides_line_reads_back(sets: dict) -> None:
    line = overrides_text(sets)
    if not sets:
        assert line == "none"
        return
    items = shlex.split(line)
    assert items[0] == "--set"
    assert dict(parse_set(i) for i in items[1:]) == sets
    for key, value in sets.items():  # each item alone reads back too
        assert parse_set(shlex.split(format_set(key, value))[0]) == (key, value)


def record(
    run_id: str, variant: str, value: float | None, start: int, status: str = "FINISHED"
) -> RunRecord:
    metrics = (
        {}
        if value is None
        else {names.BEST_VAL_MAP: value, names.at_best_metric("number_acc"): value / 2}
    )
    return RunRecord(
        run_id, "e", f"{variant}/s0", status, start, None, {names.TAG_VARIANT: variant}, {}, metrics
    )


def test_the_parents_comparison() -> None:
    children = [
        record("a", "small", 0.4, 1),
        record("b", "small", 0.6, 2),
        record("c", "large", 0.3, 3),
        record("d", "large", None, 4, status="FAILED"),
    ]
    metrics, best, table = comparison(children)
    assert best == "small"
    assert metrics[names.COMPARISON_BEST_VAL_MAP] == pytest.approx(0.5)
    assert metrics[names.COMPARISON_WORST_VAL_MAP] == pytest.approx(0.3)
    assert metrics[names.COMPARISON_VAL_MAP_SPREAD] == pytest.approx(0.2)
    assert metrics[names.COMPARISON_RUNS_FINISHED] == 3
    assert table.index("small") < table.index("large")  # best first
    assert comparison([record("d", "x", None, 1, "FAILED")])[1] is None


def test_markdown_is_escaped() -> None:
    assert md("sizes_4_8 (report Table 5) *x*") == r"sizes\_4\_8 \(report Table 5\) \*x\*"


def test_one_reuse_line_per_distinct_choice() -> None:
    params = {"box_nms_thresh": 0.3, "box_score_thresh": 0.5}
    a = Choice("best val mAP", 1, params, {}, "map")
    b = Choice("best val Task-2", 1, params, {}, "number_acc")
    assert reuse_lines([a, b]) == (
        "best val mAP and best val Task-2: --set model.box_nms_thresh=0.3 "
        "model.box_score_thresh=0.5"
    )
    c = Choice("best val Task-2", 2, {**params, "box_score_thresh": 0.7}, {}, "number_acc")
    assert reuse_lines([a, c]).count("--set") == 2


def test_the_url_and_the_view_it_selects() -> None:
    assert ui_base_url("sqlite:///mlruns/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_base_url("https://bob:s3cret@mlflow.example.org/") == "https://mlflow.example.org"
    url = runs_url("http://127.0.0.1:5000", "7")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
        "&viewStateShareKey=digitexp"
    )
    assert run_name_width([("a", 0)]) == MIN_NAME_PX
    assert run_name_width([("x" * 50, 1)]) > run_name_width([("x" * 40, 1)])
    view = json.loads(view_state(400))
    assert view["columnWidths"]["attributes.`Run Name`"] == 400
    assert view["isAccordionReordered"] is True
    sections = [s["name"] for s in view["compareRunSections"]]
    assert sections[0] == "Per-epoch curves"
    charts = view["compareRunCharts"]
    assert charts[0]["metricKey"] == names.VAL_MAP and charts[0]["type"] == "LINE"
    assert {c["metricKey"] for c in charts} >= set(names.EPOCH_METRICS) | set(names.SUMMARY_METRICS)
    assert len(view_state(400)) < 20000  # MLflow's limit on an experiment tag
