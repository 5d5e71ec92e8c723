"""Threshold search: exact equivalence with torchvision, Optuna storage, resumption, MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ABLATIONS, assert_one_clear_line, new_store, run_subprocess
from mlflow.tracking import MlflowClient

from digitexp.data import DigitDataset, load_split
from digitexp.engine import infer, load_trained_run
from digitexp.errors import ConfigError
from digitexp.metrics import CandidatePool, evaluate
from digitexp.model import set_thresholds
from digitexp.search import CandidateCache, PostprocessReplay, build_cache, parse_space
from digitexp.tracking import TrackingStore, contract


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, synth_root: Path, empty_store_db: Path
) -> dict:
    """A tiny real training run (final.py, smoke preset, 3 epochs) in its own store."""
    tmp = tmp_path_factory.mktemp("trained")
    uri = new_store(tmp, empty_store_db)
    result = run_subprocess(
        "run",
        ABLATIONS / "final.py",
        "--preset",
        "smoke",
        "--seed",
        "0",
        "--data",
        synth_root,
        "--set",
        "train.epochs=3",
        env={"MLFLOW_TRACKING_URI": uri},
        cwd=tmp,
    )
    assert result.code == 0, result.err
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("final")
    (child,) = [
        r for r in client.search_runs([exp.experiment_id]) if contract.PARENT_TAG in r.data.tags
    ]
    return {"uri": uri, "run_id": child.info.run_id, "tmp": tmp}


@pytest.fixture
def in_store(trained: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(tmp_path)
    return trained


PAIRS = [(0.0, 0.5), (0.05, 0.3), (0.1, 0.7), (0.02, 0.1), (0.0, 0.9), (0.3, 0.45)]


def test_trials_equal_running_the_model_with_the_thresholds(in_store: dict) -> None:
    trained = load_trained_run(TrackingStore(), in_store["run_id"])
    cfg, model = trained.cfg, trained.model
    split = load_split(Path(cfg.data.root), "valid")
    dataset = DigitDataset(split, cfg.data, train=False)
    device = torch.device("cpu")
    cache = build_cache(
        model, dataset, device=device, cap=100_000, batch_size=4, pre_normalize=False
    )
    assert not cache.truncated.any()
    replay = PostprocessReplay(cache, cfg.model.box_detections_per_img, min_nms=0.1)
    pool = CandidatePool(split, cache.image_ids, cache.pool())
    assert replay.edges > 100  # the untrained-ish model overlaps a lot: NMS has work to do
    compared = 0
    for score, nms in PAIRS:
        set_thresholds(model, score=score, nms=nms, detections=cfg.model.box_detections_per_img)
        reference = infer(model, dataset, device=device, batch_size=4, pre_normalize=False)
        ours = {d.image_id: d for d in replay.detections(score, nms)}
        for det in reference:
            mine = ours[det.image_id]
            assert np.array_equal(det.boxes, mine.boxes), (score, nms, det.image_id)
            assert np.array_equal(det.scores, mine.scores)
            assert np.array_equal(det.labels, mine.labels)
            compared += len(det.scores)
        expected = evaluate(split, reference, cfg.eval)
        selected = replay.select(score, nms)
        assert pool.score(selected, cfg.eval) == expected, (score, nms)
        assert replay.capped_images(score) == 0
    assert compared > 200


def test_cache_round_trip(in_store: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cache = CandidateCache(
        image_ids=np.array([3, 7]),
        image=np.array([0, 0, 1]),
        boxes=rng.random((3, 4)).astype(np.float32),
        boxes_original=rng.random((3, 4)).astype(np.float32),
        scores=np.array([0.9, 0.2, 0.5], np.float32),
        labels=np.array([1, 2, 3]),
        truncated=np.array([False, True]),
        cap=2,
    )
    loaded = CandidateCache.load(cache.save(tmp_path / "c.npz"))
    for name in ("image_ids", "image", "boxes", "boxes_original", "scores", "labels", "truncated"):
        assert np.array_equal(getattr(cache, name), getattr(loaded, name))
    assert loaded.cap == 2


def test_search_resumes_and_logs_to_mlflow(in_store: dict, tmp_path: Path, cli) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_id = in_store["run_id"]
    first = cli(
        "search", run_id, "--trials", "6", "--seed", "0", "--storage", storage, "--study", "s"
    )
    assert first.code == 0, first.err
    assert "6 new trial(s), 6 in all" in first.out and "one inference pass" in first.out
    assert "--set model.box_nms_thresh=" in first.out
    second = cli(
        "search", run_id, "--trials", "4", "--seed", "1", "--storage", storage, "--study", "s"
    )
    assert second.code == 0, second.err
    assert "4 new trial(s), 10 in all" in second.out and "reused from search run" in second.out
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 10
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert {"map", "number_acc", "capped_images"} <= set(study.trials[0].user_attrs)
    client = MlflowClient(in_store["uri"])
    source = client.get_run(run_id)
    searches = client.search_runs(
        [source.info.experiment_id], "tags.`digitexp.kind` = 'search'", order_by=["start_time ASC"]
    )
    assert len(searches) == 2
    for run in searches:
        assert run.info.status == "FINISHED"
        assert run.data.tags[contract.TAG_SOURCE_RUN] == run_id
        assert run.data.tags[contract.PARENT_TAG] == run_id  # nested under the run searched
        for line in run.data.tags[contract.TAG_BEST_SET].splitlines():
            assert ": --set model.box_nms_thresh=" in line
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {
            "trials.csv",
            "pareto_front.png",
            "optimization_history.png",
            "best_thresholds.txt",
        } <= names
        assert contract.search_metric("best_map", "map") in run.data.metrics
        assert contract.search_metric("default", "map") in run.data.metrics
    first_names = {a.path for a in client.list_artifacts(searches[0].info.run_id, "candidates")}
    assert first_names == {"candidates/valid-cap300.npz"}
    assert not client.list_artifacts(searches[1].info.run_id, "candidates")
    trials_csv = Path(
        client.download_artifacts(searches[1].info.run_id, "trials.csv", str(tmp_path))
    )
    assert len(trials_csv.read_text().strip().splitlines()) == 11  # header + all 10 trials


def test_seed_makes_a_search_repeatable(in_store: dict, tmp_path: Path, cli) -> None:
    import optuna

    params = []
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / name}.db"
        result = cli(
            "search",
            in_store["run_id"],
            "--trials",
            "5",
            "--seed",
            "7",
            "--objective",
            "map",
            "--storage",
            storage,
        )
        assert result.code == 0, result.err
        study = optuna.load_study(study_name=None, storage=storage)
        params.append([t.params for t in study.trials])
    assert params[0] == params[1]


def test_report_gains_a_search_section(in_store: dict, tmp_path: Path, cli) -> None:
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    assert cli("search", in_store["run_id"], "--trials", "3", "--storage", storage).code == 0
    assert cli("report", "--out", tmp_path / "r", "--ablations", ABLATIONS).code == 0
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "## Threshold searches" in readme
    assert "`final/final/s0`" in readme
    assert "score 0.5, NMS 0.3" in readme  # the spec's thresholds beside the best ones


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        ([], "--space: give at least one"),
        (["box_nms_thresh=0.9"], "expected KEY=LOW:HIGH"),
        (["box_nms_thresh=0.9:0.1"], "0 <= LOW <= HIGH <= 1"),
        (["nms=0.1:0.9"], "unknown key 'nms'"),
        (["box_score_thresh=a:b"], "must be numbers"),
        (["box_score_thresh=0:1:0.3"], "multiple of STEP"),
    ],
)
def test_bad_space(items: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        parse_space(items)


def test_space_defaults_and_grid() -> None:
    space = parse_space(["box_nms_thresh=0.2:0.4:0.1"])
    assert space["box_nms_thresh"].grid() == [0.2, 0.3, 0.4]
    assert (space["box_score_thresh"].low, space["box_score_thresh"].high) == (0.0, 0.95)


def test_bad_run_id_and_space_exit_2(in_store: dict, cli) -> None:
    assert_one_clear_line(cli("search", "0" * 32, "--trials", "1"), "no run with id")
    assert_one_clear_line(
        cli("search", in_store["run_id"], "--space"), "--space: give at least one"
    )
    assert_one_clear_line(
        cli("search", in_store["run_id"], "--space", "box_nms_thresh=2:3"), "0 <= LOW <= HIGH <= 1"
    )


def test_run_without_checkpoint_exits_2(in_store: dict, cli) -> None:
    client = MlflowClient(in_store["uri"])
    exp = client.get_experiment_by_name("final")
    parent = client.create_run(exp.experiment_id).info.run_id
    bare = client.create_run(
        exp.experiment_id, tags={contract.PARENT_TAG: parent, contract.TAG_KIND: "train"}
    ).info.run_id
    client.set_terminated(bare, "FAILED")
    assert_one_clear_line(cli("search", bare, "--trials", "1"), bare, "no checkpoints/best.pt")


@pytest.mark.parametrize("count", [300, 1500])
def test_engine_equals_batched_nms_with_thin_boxes_and_large_coordinates(count: int) -> None:
    """One image's candidates against torchvision's batched_nms + top-k: thin slivers, boxes
    reaching 1333 px (large class offsets), ties; the offset path and, above 1000 boxes, the
    per-class path."""
    from torchvision.ops import batched_nms

    rng = np.random.default_rng(count)
    x1 = rng.uniform(0, 1300, count).astype(np.float32)
    y1 = rng.uniform(0, 700, count).astype(np.float32)
    w = np.where(
        rng.random(count) < 0.3, rng.uniform(0.0101, 0.05, count), rng.uniform(1, 40, count)
    )
    h = rng.uniform(0.02, 60, count)
    boxes = np.stack([x1, y1, np.minimum(x1 + w, 1333), np.minimum(y1 + h, 800)], 1).astype(
        np.float32
    )
    boxes[:40] = boxes[40:80] + rng.normal(0, 0.5, (40, 4)).astype(np.float32)  # overlaps
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.0101)
    scores = rng.random(count).astype(np.float32)
    if count <= 1000:  # ties: the offset path sorts stably; the per-class path above 1000
        scores[::7] = scores[0]  # boxes sorts ties in an unspecified order (not compared)
    labels = rng.integers(1, 11, count).astype(np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    cache = CandidateCache(
        image_ids=np.array([1]),
        image=np.zeros(count, np.int64),
        boxes=boxes,
        boxes_original=boxes,
        scores=scores,
        labels=labels,
        truncated=np.array([False]),
        cap=count,
    )
    replay = PostprocessReplay(cache, detections_per_img=100, min_nms=0.1)
    for score, nms in [(0.0, 0.3), (0.2, 0.1), (0.5, 0.55), (0.0, 0.9)]:
        passing = np.flatnonzero(scores > np.float32(score))
        keep = batched_nms(
            torch.from_numpy(boxes[passing]),
            torch.from_numpy(scores[passing]),
            torch.from_numpy(labels[passing]),
            nms,
        )[:100]
        expected = set(passing[keep.numpy()].tolist())
        assert set(np.flatnonzero(replay.select(score, nms)).tolist()) == expected, (score, nms)
    with pytest.raises(ValueError, match="below"):
        replay.select(0.1, 0.05)


def test_pareto_ends_break_ties_by_the_other_objective() -> None:
    import optuna

    from digitexp.search import choices

    study = optuna.create_study(directions=["maximize", "maximize"])
    for number, (m, n) in enumerate([(0.5, 0.6), (0.5, 0.7), (0.4, 0.7)]):
        study.add_trial(
            optuna.trial.create_trial(
                values=[m, n],
                params={"box_nms_thresh": 0.1 * (number + 1), "box_score_thresh": 0.0},
                distributions={
                    "box_nms_thresh": optuna.distributions.FloatDistribution(0, 1),
                    "box_score_thresh": optuna.distributions.FloatDistribution(0, 1),
                },
                user_attrs={
                    "map": m,
                    "map50": m,
                    "map75": m,
                    "digit_acc": n,
                    "number_acc": n,
                    "capped_images": 0.0,
                },
            )
        )
    best_map, best_task2 = choices(study, "both")
    assert best_map.number == 1  # (0.5, 0.7) dominates (0.5, 0.6)
    assert best_task2.number == 1  # (0.5, 0.7) dominates (0.4, 0.7)


def test_a_run_trained_with_one_loader_worker_per_core_can_be_searched(in_store: dict) -> None:
    """``train.workers=-1`` (one per core) is resolved once for inference, not handed raw to
    the DataLoader."""
    from digitexp.engine.runtime import loader_workers
    from digitexp.search import candidates_of, scored_split

    trained = load_trained_run(TrackingStore(), in_store["run_id"], overrides={"train.workers": -1})
    assert trained.workers == loader_workers(-1) >= 1
    split = scored_split(trained.cfg, trained.cfg.data.valid_split)
    cache = candidates_of(trained, split, cap=50)
    assert cache.image_ids.tolist() == sorted(r.id for r in split.images)


def test_overrides_that_change_the_architecture_are_refused(in_store: dict) -> None:
    from digitexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.fpn_channels") as info:
        load_trained_run(TrackingStore(), in_store["run_id"], overrides={"model.fpn_channels": 8})
    assert "fixes the architecture" in str(info.value)
