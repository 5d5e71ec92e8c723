"""The bad-input corpus: each case exits 2 with one clear line, no traceback, no run RUNNING.

Cases span datasets (every annotation fault, a corrupt image, an image that only fails to
decode mid-training, an empty split), specs, overrides, checkpoints (a corrupt file and a
pickle that would run code), tracking stores and output folders.
"""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import assert_one_clear_line, read_json, run_subprocess, write_json
from mlflow.tracking import MlflowClient

from digitexp.tracking import contract

GOOD_SPEC = '''\
"""A question? (bad-input corpus)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"a": {}}
'''


@dataclass
class Case:
    """What a case needs: a data copy, a spec file, a store; argv and the expected words."""

    data: Path
    spec: Path
    root: Path
    uri: str


def _ann(case: Case, edit: Callable[[dict], None], split: str = "train") -> None:
    data = read_json(case.data / f"{split}.json")
    edit(data)
    write_json(case.data / f"{split}.json", data)


def _spec(case: Case, body: str) -> Path:
    case.spec.write_text(textwrap.dedent(body))
    return case.spec


def _run(case: Case, *extra: str) -> list[str]:
    return ["run", str(case.spec), "--preset", "smoke", "--data", str(case.data), *extra]


class Evil:
    def __reduce__(self) -> tuple:
        return (print, ("this would run code",))


def _box_outside(d: dict) -> None:
    ann = d["annotations"][0]
    img = next(i for i in d["images"] if i["id"] == ann["image_id"])
    ann["bbox"] = [img["width"] - 1.0, 0.0, 9.0, 9.0]


def _truncate_image(case: Case) -> None:
    """A PNG whose header reads but whose pixels do not decode (found only while training)."""
    path = case.data / "train" / "5.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# name -> (prepare the case and return argv, words the error line must contain)
CASES: dict[str, tuple[Callable[[Case], list[str]], list[str]]] = {
    "malformed_json": (
        lambda c: (c.data.joinpath("train.json").write_text('{"images": [1,'), _run(c))[1],
        ["train.json", "malformed JSON"],
    ),
    "missing_image": (
        lambda c: (c.data.joinpath("train", "3.png").unlink(), _run(c))[1],
        ["train.json", "image id 3", "not found"],
    ),
    "corrupt_image": (
        lambda c: (c.data.joinpath("train", "4.png").write_bytes(b"\x89PNG garbage"), _run(c))[1],
        ["train.json", "image id 4", "unreadable image"],
    ),
    "image_fails_mid_training": (
        lambda c: (_truncate_image(c), _run(c))[1],
        ["5.png", "cannot decode image"],
    ),
    "size_mismatch": (
        lambda c: (_ann(c, lambda d: d["images"][0].update(width=999)), _run(c))[1],
        ["train.json", "image id 1", "size in JSON is 999x"],
    ),
    "box_outside": (
        lambda c: (_ann(c, _box_outside), _run(c))[1],
        ["train.json", "annotation id 1", "outside the"],
    ),
    "zero_area_box": (
        lambda c: (_ann(c, lambda d: d["annotations"][0].update(bbox=[2, 2, 0, 4])), _run(c))[1],
        ["train.json", "annotation id 1", "zero or negative area"],
    ),
    "unknown_category": (
        lambda c: (_ann(c, lambda d: d["annotations"][0].update(category_id=0)), _run(c))[1],
        ["train.json", "annotation id 1", "unknown category_id 0"],
    ),
    "duplicate_image_id": (
        lambda c: (_ann(c, lambda d: d["images"][1].update(id=1)), _run(c))[1],
        ["train.json", "duplicate image id 1"],
    ),
    "duplicate_annotation_id": (
        lambda c: (_ann(c, lambda d: d["annotations"][1].update(id=1)), _run(c))[1],
        ["train.json", "duplicate annotation id 1"],
    ),
    "empty_split": (
        lambda c: (_ann(c, lambda d: d.update(images=[], annotations=[]), "valid"), _run(c))[1],
        ["valid.json", "no images"],
    ),
    "missing_data_root": (
        lambda c: ["run", str(c.spec), "--preset", "smoke", "--data", str(c.root / "nowhere")],
        ["nowhere", "data root not found"],
    ),
    "spec_syntax_error": (
        lambda c: (_spec(c, GOOD_SPEC + "VARIANTS = {\n"), _run(c))[1],
        ["spec.py", "syntax error at line"],
    ),
    "spec_missing_base": (
        lambda c: (_spec(c, '"""Q?"""\nVARIANTS = {"a": {}}\n'), _run(c))[1],
        ["spec.py", "missing BASE"],
    ),
    "spec_unknown_key": (
        lambda c: (_spec(c, GOOD_SPEC.replace("{}", "{'model.anchors': (4,)}")), _run(c))[1],
        ["spec.py", "model.anchors: unknown key"],
    ),
    "spec_wrong_type": (
        lambda c: (_spec(c, GOOD_SPEC.replace("{}", "{'train.epochs': 'ten'}")), _run(c))[1],
        ["spec.py", "train.epochs: expected int"],
    ),
    "spec_empty_variants": (
        lambda c: (_spec(c, GOOD_SPEC.replace('{"a": {}}', "{}")), _run(c))[1],
        ["spec.py", "VARIANTS must be non-empty"],
    ),
    "override_unknown_key": (
        lambda c: _run(c, "--set", "train.learning_rate=0.1"),
        ["train.learning_rate: unknown key"],
    ),
    "override_wrong_type": (
        lambda c: _run(c, "--set", "train.epochs=abc"),
        ["train.epochs: expected int"],
    ),
    "override_not_key_value": (
        lambda c: _run(c, "--set", "train.epochs"),
        ["expected key=value"],
    ),
    "unknown_preset": (
        lambda c: ["run", str(c.spec), "--preset", "giant", "--data", str(c.data)],
        ["unknown preset 'giant'"],
    ),
    "corrupt_checkpoint": (
        lambda c: (
            c.root.joinpath("w.pt").write_bytes(b"PK\x03\x04 not a checkpoint"),
            _run(c, "--set", f"model.weights={c.root / 'w.pt'}"),
        )[1],
        ["w.pt", "not a loadable weights file"],
    ),
    "checkpoint_pickle_runs_code": (
        lambda c: (
            c.root.joinpath("evil.pt").write_bytes(pickle.dumps({"model": Evil()})),
            _run(c, "--set", f"model.weights={c.root / 'evil.pt'}"),
        )[1],
        ["evil.pt", "not a loadable weights file"],
    ),
    "tracking_server_unreachable": (
        lambda c: _run(c),
        ["http://127.0.0.1:9", "unreachable"],
    ),
    "store_folder_unwritable": (
        lambda c: (c.root.joinpath("file").write_text("x"), _run(c))[1],
        ["file", "cannot create the store folder"],
    ),
    "report_out_unwritable": (
        lambda c: (
            c.root.joinpath("file").write_text("x"),
            ["report", "--out", str(c.root / "file" / "reports")],
        )[1],
        ["file"],
    ),
    "synth_out_unwritable": (
        lambda c: (
            c.root.joinpath("file").write_text("x"),
            [
                "data",
                "synth",
                "--out",
                str(c.root / "file" / "d"),
                "--train",
                "2",
                "--valid",
                "1",
                "--test",
                "1",
            ],
        )[1],
        ["file"],
    ),
}
URIS = {
    "tracking_server_unreachable": "http://127.0.0.1:9",
    "store_folder_unwritable": "sqlite:///{root}/file/mlruns/mlflow.db",
}
SUBPROCESS = {
    "malformed_json",
    "image_fails_mid_training",
    "checkpoint_pickle_runs_code",
    "tracking_server_unreachable",
}


def test_the_corpus_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(
    name: str, data_copy: Path, tmp_path: Path, store_uri: str, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare, needles = CASES[name]
    spec = tmp_path / "spec.py"
    spec.write_text(GOOD_SPEC)
    uri = URIS.get(name, store_uri).format(root=tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    case = Case(data=data_copy, spec=spec, root=tmp_path, uri=uri)
    argv = prepare(case)
    if name in SUBPROCESS:
        result = run_subprocess(*argv, env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    else:
        result = cli(*argv)
    assert_one_clear_line(result, *needles)
    if (
        uri.startswith("sqlite")
        and Path(store_uri[len("sqlite:///") :]).exists()
        and uri == store_uri
    ):
        client = MlflowClient(store_uri)
        running = [
            r.info.run_name
            for exp in client.search_experiments()
            for r in client.search_runs([exp.experiment_id])
            if r.info.status == "RUNNING"
        ]
        assert running == []


@pytest.mark.slow
def test_a_corrupt_logged_checkpoint_is_refused_by_predict(
    synth_root: Path, tmp_path: Path, store_uri: str, cli
) -> None:
    spec = tmp_path / "spec.py"
    spec.write_text(GOOD_SPEC)
    assert cli("run", spec, "--preset", "smoke", "--data", synth_root).code == 0
    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("spec")
    (run,) = [
        r for r in client.search_runs([exp.experiment_id]) if contract.PARENT_TAG in r.data.tags
    ]
    best = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints" / "best.pt"
    best.write_bytes(pickle.dumps({"model": Evil(), "config": {}}))
    result = cli(
        "predict", run.info.run_id, "--images", synth_root / "test", "--out", tmp_path / "p"
    )
    assert_one_clear_line(result, "best.pt", "not a loadable checkpoint")
    assert run_subprocess("--help").code == 0
