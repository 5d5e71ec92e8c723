"""The MLflow UI as the front door: what a person finds in the store after `run`, `search`,
`report` and `register` (read back through the MLflow client), and, in Debian's headless
Chromium, what the URL `digitexp ui` prints opens.

One real `run` of ablations/anchors.py (two variants, smoke preset, one epoch) serves the
module; the browser test skips, saying why, where Chromium cannot be had.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, chromium
from conftest import ABLATIONS, new_store
from mlflow.tracking import MlflowClient
from mlflow_ui import EXPANDER, NAMES_JS, ROWS, digitexp_ui
from PIL import Image

from digitexp.config import parse_set
from digitexp.spec import load_spec
from digitexp.tracking import contract
from digitexp.tracking.ui import VIEW_TAG

pytestmark = pytest.mark.slow  # one real training run, a search, a report, a UI server

SPEC = ABLATIONS / "anchors.py"
VARIANTS = list(load_spec(SPEC).variants)[:2]


def cli_main(*argv: object) -> tuple[int, str]:
    from digitexp.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def launched(
    tmp_path_factory: pytest.TempPathFactory, synth_root: Path, empty_store_db: Path
) -> dict:
    tmp = tmp_path_factory.mktemp("ui")
    uri = new_store(tmp, empty_store_db)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(tmp)
        variants = [a for v in VARIANTS for a in ("--variant", v)]
        run = cli_main(
            "run", SPEC, "--preset", "smoke", "--data", synth_root, *variants,
            "--set", "train.epochs=1",
        )  # fmt: skip
        assert run[0] == 0, run[1]
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("anchors")
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get(contract.TAG_KIND) == contract.KIND_TRAIN]
        source = children[0].info.run_id
        search = cli_main(
            "search", source, "--trials", "12", "--seed", "0",
            "--storage", f"sqlite:///{tmp / 'optuna.db'}",
        )  # fmt: skip
        assert search[0] == 0, search[1]
        report = cli_main(
            "report", "--out", tmp / "reports", "--spec", "anchors", "--ablations", ABLATIONS
        )
        assert report[0] == 0, report[1]
    return {
        "uri": uri,
        "tmp": tmp,
        "client": client,
        "experiment": exp,
        "run_out": run[1],
        "search_out": search[1],
        "report_out": report[1],
        "source": source,
    }


def by_kind(launched: dict) -> dict[str, list]:
    client, exp = launched["client"], launched["experiment"]
    out: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        out.setdefault(run.data.tags[contract.TAG_KIND], []).append(run)
    return out


def test_child_runs_are_named_variant_first_and_parents_by_the_question(launched: dict) -> None:
    runs = by_kind(launched)
    children, (parent,) = runs["train"], runs["invocation"]
    assert [c.info.run_name for c in children] == [f"{v}/s0" for v in VARIANTS]
    question = load_spec(SPEC).question.split("(")[0].strip()
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d · (.*) · smoke", parent.info.run_name)
    assert parent.info.run_name.split(" · ")[1] == question


def test_standard_tags_and_dataset_input(launched: dict, synth_root: Path) -> None:
    runs = by_kind(launched)
    for run in [*runs["train"], *runs["invocation"]]:
        tags = run.data.tags
        assert tags[contract.SOURCE_NAME] == str(SPEC)
        assert tags[contract.SOURCE_TYPE] == "LOCAL"
        assert tags[contract.USER]
        assert re.fullmatch(r"[0-9a-f]{40}", tags[contract.SOURCE_GIT_COMMIT])
        assert tags[contract.SOURCE_GIT_COMMIT] == tags[contract.TAG_GIT]
        assert tags[contract.TAG_OVERRIDES] == f"--set train.epochs=1 data.root={synth_root}"
    for child in runs["train"]:
        (dataset_input,) = child.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == synth_root.name
        assert json.loads(dataset.source) == {"uri": str(synth_root.resolve())}
        assert re.fullmatch(r"[0-9a-f]{12}", dataset.digest)
        # the smoke preset's limits: 16 train, 8 valid and 8 test images
        profile = json.loads(dataset.profile)
        assert (profile["train_images"], profile["valid_images"], profile["test_images"]) == (
            16,
            8,
            8,
        )
        assert profile["train_digits"] > 0
        assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "train"}
    digests = {c.inputs.dataset_inputs[0].dataset.digest for c in runs["train"]}
    assert len(digests) == 1


def test_the_parent_run_tells_the_story(launched: dict) -> None:
    runs = by_kind(launched)
    children, (parent,) = runs["train"], runs["invocation"]
    spec = load_spec(SPEC)
    note = parent.data.tags[contract.DESCRIPTION]
    assert spec.question.replace("(", r"\(").replace(")", r"\)") in note
    for variant in VARIANTS:
        assert variant.replace("_", r"\_") in note
    assert "### Results" in note
    # params: what every variant shares, not what varies
    params = parent.data.params
    assert params["train.epochs"] == "1" and params["model.arch"] == "tiny_fpn"
    assert "model.anchor_sizes" not in params
    best = {
        c.data.tags[contract.TAG_VARIANT]: c.data.metrics[contract.BEST_VAL_MAP] for c in children
    }
    metrics = parent.data.metrics
    assert metrics[contract.COMPARISON_BEST_VAL_MAP] == max(best.values())
    assert metrics[contract.COMPARISON_WORST_VAL_MAP] == min(best.values())
    assert metrics[contract.COMPARISON_VAL_MAP_SPREAD] == pytest.approx(
        max(best.values()) - min(best.values())
    )
    assert metrics[contract.COMPARISON_RUNS_FINISHED] == 2
    assert parent.data.tags[contract.TAG_BEST_VARIANT] == max(best, key=lambda v: best[v])
    for child in children:
        text = child.data.tags[contract.DESCRIPTION]
        assert text.startswith(f"**best val mAP {child.data.metrics[contract.BEST_VAL_MAP]:.4f}**")
        assert f"get-artifact?path=figures%2Fcurves.png&run_uuid={child.info.run_id}" in text
        assert contract.at_best_metric("number_acc") in child.data.metrics
    experiment = launched["experiment"]
    assert (
        spec.question.replace("(", r"\(").replace(")", r"\)")
        in experiment.tags[contract.DESCRIPTION]
    )
    view = json.loads(experiment.tags[VIEW_TAG])
    first_section = view["compareRunSections"][0]["uuid"]
    first_charts = [
        c["metricKey"] for c in view["compareRunCharts"] if c["metricSectionId"] == first_section
    ]
    assert first_charts[0] == contract.VAL_MAP and set(first_charts) == set(contract.EPOCH_METRICS)


def test_each_training_run_logs_its_figures(launched: dict) -> None:
    client = launched["client"]
    for child in by_kind(launched)["train"]:
        listed = {a.path for a in client.list_artifacts(child.info.run_id, contract.FIGURES)}
        assert listed == {contract.CURVES_FIGURE, contract.PREDICTIONS_FIGURE}
        for artifact in listed:
            local = client.download_artifacts(child.info.run_id, artifact, str(launched["tmp"]))
            with Image.open(local) as img:
                assert img.format == "PNG"
                img.verify()
            with Image.open(local) as img:
                assert img.width >= 800 and img.height >= 400
    examples = launched["tmp"] / "reports" / "figures" / "anchors_examples.png"
    with Image.open(examples) as img:
        assert img.format == "PNG" and img.width >= 800


def test_searches_nest_under_the_run_they_searched(launched: dict) -> None:
    client = launched["client"]
    (search,) = by_kind(launched)["search"]
    assert search.data.tags[contract.PARENT_TAG] == launched["source"]
    assert search.data.tags[contract.SOURCE_NAME] == "digitexp search"
    training = set(contract.EPOCH_METRICS) | set(contract.SUMMARY_METRICS)
    assert search.data.metrics and all(
        k.startswith(contract.SEARCH_PREFIX) for k in search.data.metrics
    )
    assert not training & set(search.data.metrics)
    for line in search.data.tags[contract.TAG_BEST_SET].splitlines():
        label, _, set_line = line.rpartition(": ")
        assert label.startswith("best val")
        items = shlex.split(set_line)
        assert items[0] == "--set"
        assert {parse_set(i)[0] for i in items[1:]} == {
            "model.box_nms_thresh",
            "model.box_score_thresh",
        }
    trials = Path(client.download_artifacts(search.info.run_id, "trials.csv", str(launched["tmp"])))
    rows = list(csv.DictReader(trials.open()))
    assert len(rows) == 12
    numbers = [v for row in rows for v in row.values() if re.fullmatch(r"-?[0-9.e+-]+", v or "")]
    assert numbers and all(len(v.split(".")[-1]) <= 6 for v in numbers)
    # the report and `runs` still count the training runs only, and their reuse lines
    readme = (launched["tmp"] / "reports" / "README.md").read_text()
    assert "2 run(s) counted" in readme
    assert (
        f"overrides `{by_kind(launched)['train'][0].data.tags[contract.TAG_OVERRIDES]}`" in readme
    )
    reuse = [line for line in readme.splitlines() if line.startswith("- `anchors/")]
    assert reuse and all(line.count("--set") == 1 for line in reuse)


def test_commands_print_the_experiments_runs_url(launched: dict) -> None:
    exp_id = launched["experiment"].experiment_id
    url = (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={contract.VIEW_KEY}"
    )
    for key in ("run_out", "search_out", "report_out"):
        assert url in launched[key], key


def test_register_logs_a_pyfunc_model_that_detects_digits(launched: dict, synth_root: Path) -> None:
    import mlflow

    source = launched["source"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", launched["uri"])
        code, out = cli_main("register", source, "--name", "digits")
    assert code == 0, out
    assert "models:/digits/1" in out
    client = MlflowClient(launched["uri"], registry_uri=launched["uri"])
    version = client.get_model_version("digits", "1")
    assert version.run_id == source
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", launched["uri"])
        mp.setenv("MLFLOW_REGISTRY_URI", launched["uri"])
        model = mlflow.pyfunc.load_model("models:/digits/1")
    images = sorted((synth_root / "valid").glob("*.png"))[:3]
    frame = model.predict([str(p) for p in images])
    assert list(frame.columns) == ["image", "x", "y", "w", "h", "score", "category_id", "digit"]
    assert set(frame["image"]) <= {0, 1, 2}
    assert ((frame["category_id"] >= 1) & (frame["category_id"] <= 10)).all()
    assert (frame["digit"] == frame["category_id"] - 1).all()
    with Image.open(images[0]) as img:
        rgb = np.asarray(img.convert("RGB"))
    single = model.predict(rgb)  # an array reads as its file does
    assert single.equals(model.predict([str(images[0])]))


@pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (apt-get install chromium)"
)
def test_the_printed_url_opens_the_runs_table_in_a_real_browser(launched: dict) -> None:
    with digitexp_ui(launched["uri"], launched["tmp"]) as server, Browser(1400, 900) as browser:
        browser.goto(server.urls["anchors"])
        browser.wait_for(f"document.querySelectorAll('{ROWS}').length >= 1", timeout=60)
        assert "Model training" in browser.text()
        assert "No data available" not in browser.text()  # not the GenAI overview
        browser.click(EXPANDER)  # the parent's (+): its children
        browser.wait_for(f"document.querySelectorAll('{ROWS}').length >= 3")
        shown = dict(browser.eval(NAMES_JS))
    children = [f"{v}/s0" for v in VARIANTS]
    assert set(children) <= set(shown)
    assert not any(shown[name] for name in children), "a child's name is cut in its cell"
