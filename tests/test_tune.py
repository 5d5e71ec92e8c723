"""`tune`: an Optuna study over training settings, each trial a nested MLflow run, pruned from
its per-epoch validation metric; shared, resumable, and a killed worker's trial retried."""

from __future__ import annotations

import ast
import csv
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO, assert_one_clear_line, run_subprocess
from mlflow.tracking import MlflowClient

from digitexp import presets
from digitexp.config import apply_overrides, config_hash, parse_sets, seed_config
from digitexp.errors import ConfigError
from digitexp.tracking import contract as names
from digitexp.tune import best_trials, parse_space, totals

SPEC = '''\
"""Which learning rate and aspect ratios? (test spec)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"only": {}}
'''
SMOKE = seed_config()
SMOKE = apply_overrides(SMOKE, presets.overrides("smoke"))


def _spec(root: Path) -> Path:
    (root / "ablations").mkdir(exist_ok=True)
    path = root / "ablations" / "spec.py"
    path.write_text(SPEC)
    return path


def _runs(client: MlflowClient, experiment: str = "spec") -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def _kind(runs: list, kind: str) -> list:
    return [r for r in runs if r.data.tags.get(names.TAG_KIND) == kind]


def _artifact(uri: str, run_id: str, path: str, tmp: Path) -> str:
    local = MlflowClient(uri).download_artifacts(run_id, path, str(tmp))
    return Path(local).read_text()


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _storage(root: Path) -> str:
    return f"sqlite:///{root / 'mlruns' / 'optuna.db'}"


# --------------------------------------------------------------------------- the space


def test_space_kinds_values_and_lines() -> None:
    space = parse_space(
        [
            "train.lr=log:1e-4:1e-2",
            "train.batch_size=int:2:8:2",
            "train.gamma=float:0.1:0.5:0.1",
            "train.scheduler=choice:none|cosine",
            "model.aspect_ratios=choice:(0.5,1.0,2.0)|(1.0,)",
        ],
        SMOKE,
    )
    assert space.keys == [
        "train.lr",
        "train.batch_size",
        "train.gamma",
        "train.scheduler",
        "model.aspect_ratios",
    ]
    assert space.text() == (
        "train.lr=log:0.0001:0.01 train.batch_size=int:2:8:2 train.gamma=float:0.1:0.5:0.1 "
        "train.scheduler=choice:none|cosine model.aspect_ratios=choice:(0.5,1.0,2.0)|(1.0,)"
    )
    with pytest.raises(ConfigError, match="continuous"):
        space.grid()
    grid = parse_space(["train.gamma=float:0.1:0.5:0.1", "train.batch_size=int:2:8:2"], SMOKE)
    assert grid.grid() == {
        "train.gamma": [0.1, 0.2, 0.3, 0.4, 0.5],
        "train.batch_size": [2, 4, 6, 8],
    }

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        assert 1e-4 <= values["train.lr"] <= 1e-2
        assert values["train.lr"] == float(f"{values['train.lr']:.4g}")  # what is trained
        assert values["train.batch_size"] in (2, 4, 6, 8)
        assert values["train.gamma"] in (0.1, 0.2, 0.3, 0.4, 0.5)
        assert values["model.aspect_ratios"] in ((0.5, 1.0, 2.0), (1.0,))
        # the --set line and the Variant line give back exactly these values
        from digitexp.tune import set_line, variant_line

        line = set_line(values)
        sets = parse_sets(shlex.split(line)[1:])
        assert apply_overrides(SMOKE, sets) == apply_overrides(SMOKE, values)
        call = ast.parse(variant_line("tuned", values)).body[0].value
        assert ast.literal_eval(call.args[1]) == values
        assert space.values_of(trial.params) == values
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("train.lr", "expected KEY=float"),
        ("train.lrr=log:1e-4:1e-2", "unknown key"),
        ("train.lr=uniform:0:1", "unknown kind"),
        ("train.batch_size=float:2:8", "is an int"),
        ("train.lr=int:1:3", "int: is for int keys"),
        ("train.scheduler=float:0:1", "use choice"),
        ("train.lr=log:0:1e-2", "LOW > 0"),
        ("train.lr=float:0:1e-2", "train.lr: must be > 0"),
        ("train.lr=log:1e-2:1e-4", "LOW must be < HIGH"),
        ("train.batch_size=int:2:9:2", "multiple of STEP"),
        ("train.batch_size=int:2:x", "HIGH must be an integer"),
        ("train.scheduler=choice:step|adam", "train.scheduler: expected"),
        ("train.scheduler=choice:step|step", "given twice"),
        ("model.roi_levels=choice:(0,)|(0,9)", "no level 9"),
        ("model.aspect_ratios=choice:", "give one or more values"),
    ],
)
def test_bad_spaces_name_the_item(item: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_space([item], SMOKE)
    message = str(info.value)
    assert "\n" not in message
    assert needle in message, message
    assert message.startswith("--space")


def test_a_key_in_space_and_set_is_refused() -> None:
    with pytest.raises(ConfigError, match="also given with --set"):
        parse_space(["train.lr=log:1e-4:1e-2"], SMOKE, {"train.lr": 1e-3})
    with pytest.raises(ConfigError, match="in --space twice"):
        parse_space(["train.lr=log:1e-4:1e-2", "train.lr=float:0.1:0.2"], SMOKE)


def test_bad_input_fails_before_anything_exists(
    cli, store_uri: str, tmp_path: Path, synth_root: Path
) -> None:
    spec = _spec(tmp_path)
    common = ["--preset", "smoke", "--data", synth_root]
    cases = [
        (["--space", "train.batch_size=float:1:2"], "train.batch_size is an int"),
        (
            ["--space", "train.lr=log:1e-4:1e-2", "--objective", "both", "--pruner", "median"],
            "cannot prune a multi-objective study",
        ),
        (["--space", "train.lr=log:1e-4:1e-2", "--sampler", "grid"], "continuous"),
        (["--space", "train.lr=log:1e-4:1e-2", "--trials", "0"], "--trials must be >= 1"),
        (["--space", "train.lr=log:1e-4:1e-2", "--variant", "nope"], "unknown variant"),
        (["--space", "train.lr=log:1e-4:1e-2", "--data", tmp_path / "nodata"], "nodata"),
    ]
    for args, needle in cases:
        result = cli("tune", spec, *common, *args)
        assert_one_clear_line(result, needle)
    client = MlflowClient(store_uri)
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == []
    assert client.search_runs([e.experiment_id for e in experiments]) == []  # no run
    assert not (tmp_path / "mlruns" / "optuna.db").exists()  # no study either


def test_best_trials_and_totals_from_a_real_study() -> None:
    """Pareto ends for two objectives; a retried trial counts once; pruning's saving is each
    pruned trial's epochs left x its own epoch time."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    space = parse_space(["train.lr=log:1e-4:1e-2"], SMOKE)
    dist = {"train.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    study = optuna.create_study(directions=["maximize", "maximize"])

    def add(state, lr, attrs, values=None, system=None):
        study.add_trial(
            create_trial(
                state=state,
                params={"train.lr": lr},
                distributions=dist,
                user_attrs={"planned_epochs": 5, **attrs},
                system_attrs=system or {},
                values=values,
            )
        )

    add(
        TrialState.COMPLETE,
        1e-3,
        {
            "val_map": 0.5,
            "val_number_acc": 0.2,
            "epochs": 5,
            "train_seconds": 10.0,
            "mlflow_run": "a",
        },
        [0.5, 0.2],
    )
    add(
        TrialState.COMPLETE,
        2e-3,
        {
            "val_map": 0.4,
            "val_number_acc": 0.6,
            "epochs": 5,
            "train_seconds": 12.0,
            "mlflow_run": "b",
        },
        [0.4, 0.6],
    )
    add(
        TrialState.PRUNED,
        3e-3,
        {"val_map": 0.1, "epochs": 2, "train_seconds": 3.0, "mlflow_run": "c"},
    )
    add(TrialState.FAIL, 4e-3, {"epochs": 1, "train_seconds": 2.0, "mlflow_run": "d"})
    add(
        TrialState.COMPLETE,
        4e-3,
        {
            "val_map": 0.3,
            "val_number_acc": 0.3,
            "epochs": 5,
            "train_seconds": 9.0,
            "mlflow_run": "d",
        },
        [0.3, 0.3],
        {"failed_trial": 3, "retry_history": [3]},
    )
    add(
        TrialState.FAIL,
        5e-3,
        {"error": "diverged", "epochs": 1, "train_seconds": 1.0, "mlflow_run": "e"},
    )

    best = best_trials(study, space, "both")
    assert [(b.label, b.number) for b in best] == [("best val mAP", 0), ("best val Task-2", 1)]
    assert best[0].values == {"train.lr": 0.001}
    t = totals(study)
    assert t[names.TRIALS_COMPLETE] == 3
    assert t[names.TRIALS_PRUNED] == 1
    assert t[names.TRIALS_FAILED] == 1  # trial 3 was retried (as trial 4): not failed for good
    assert t[names.EPOCHS_TRAINED] == 5 + 5 + 2 + 5 + 1  # run "d" once, as its retry left it
    assert t[names.EPOCHS_PRUNED] == 3
    assert t[names.PRUNED_SECONDS] == pytest.approx(3 * 3.0 / 2)
    assert t[names.TRAIN_SECONDS] == pytest.approx(10 + 12 + 3 + 9 + 1)


def test_the_contract_names_are_documented() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Tracking contract") :]
    for name in (*names.TUNE_METRICS, *names.TUNE_ARTIFACTS, names.KIND_TUNE, names.KIND_TRIAL):
        assert f"`{name}`" in section, name


# --------------------------------------------------------------------------- studies


def _tune(root: Path, synth_root: Path, *args: str, env: dict | None = None):
    return run_subprocess(
        "tune",
        _spec(root),
        "--preset",
        "smoke",
        "--data",
        synth_root,
        *args,
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        },
        cwd=root,
    )


TRIAL_TAGS = (
    names.TAG_SPEC,
    names.TAG_SPEC_PATH,
    names.TAG_VARIANT,
    names.TAG_SEED,
    names.TAG_PRESET,
    names.TAG_GIT,
    names.TAG_CONFIG_HASH,
    names.TAG_DATA,
    names.TAG_OWNER,
    names.TAG_HEARTBEAT,
    names.TAG_EPOCH,
    names.TAG_NUM_PARAMETERS,
    names.TAG_WORLD_SIZE,
    names.TAG_EFFECTIVE_LR,
    names.TAG_EFFECTIVE_BATCH_SIZE,
    names.TAG_STUDY,
    names.TAG_TRIAL,
)


@pytest.mark.slow
def test_trials_are_nested_runs_with_the_contract_and_the_command_resumes(
    tmp_path: Path,
    synth_root: Path,
    empty_store_db: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conftest import new_store

    uri = new_store(tmp_path, empty_store_db)
    args = [
        "--space",
        "train.lr=log:1e-4:1e-2",
        "model.aspect_ratios=choice:(0.5,1.0,2.0)|(1.0,)",
        "--set",
        "train.epochs=2",
        "--sampler",
        "random",
    ]
    first = _tune(tmp_path, synth_root, *args, "--trials", "2")
    assert first.code == 0, first.err
    assert "2 trial(s) in all" in first.out
    client = MlflowClient(uri)
    runs = _runs(client)
    (study_run,) = _kind(runs, names.KIND_TUNE)
    trials = _kind(runs, names.KIND_TRIAL)
    assert len(trials) == 2
    study_name = study_run.data.tags[names.TAG_STUDY]
    for run in trials:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags[names.PARENT_TAG] == study_run.info.run_id
        assert set(TRIAL_TAGS) <= set(tags), set(TRIAL_TAGS) - set(tags)
        assert tags[names.TAG_STUDY] == study_name
        assert tags[names.TAG_VARIANT] == "BASE"
        assert run.info.run_name == f"BASE/t{tags[names.TAG_TRIAL]}"
        for key in names.EPOCH_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == [1, 2], key
        for key in (names.BEST_VAL_MAP, names.BEST_EPOCH, names.FINAL_TRAIN_LOSS):
            assert key in run.data.metrics
        listed = {a.path for a in client.list_artifacts(run.info.run_id, names.CHECKPOINTS)}
        assert listed == {names.BEST_CHECKPOINT, names.LAST_CHECKPOINT}
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {names.CONFIG_JSON, names.SPEC_PY, names.PREDICTIONS} <= top
        # the sampled values are the trained ones: params and the config hash agree
        lr = float(run.data.params["train.lr"])
        assert 1e-4 <= lr <= 1e-2
        ratios = ast.literal_eval(run.data.params["model.aspect_ratios"])
        cfg = apply_overrides(
            apply_overrides(seed_config(), presets.overrides("smoke")),
            {
                "data.root": str(synth_root),
                "train.epochs": 2,
                "train.lr": lr,
                "model.aspect_ratios": ratios,
            },
        )
        assert tags[names.TAG_CONFIG_HASH] == config_hash(cfg)

    # the study's run: its name, description, space, shared settings, totals and results
    assert study_run.info.run_name.startswith(f"{study_name} · ")  # tune-spec-...
    assert study_run.data.params[names.space_param("train.lr")] == "log:0.0001:0.01"
    assert "train.lr" not in study_run.data.params  # a space key is no shared setting
    assert study_run.data.params["train.epochs"] == "2"
    final = client.get_run(study_run.info.run_id).data.tags[names.DESCRIPTION]
    assert "train.lr" in final and "2 trial(s) complete, 0 pruned, 0 failed" in final
    for run in trials:  # a trial's description: its results, then the values it trained with
        text = run.data.tags[names.DESCRIPTION]
        assert f"Trial **{run.data.tags[names.TAG_TRIAL]}** of study" in text
        assert f"train.lr = {run.data.params['train.lr']}" in text
        assert text.startswith("**best val mAP ")
    assert study_run.data.metrics[names.TRIALS_COMPLETE] == 2
    listed = {a.path for a in client.list_artifacts(study_run.info.run_id)}
    assert set(names.TUNE_ARTIFACTS) <= listed
    rows = _csv(_artifact(uri, study_run.info.run_id, names.TRIALS_CSV, tmp_path / "a"))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert {r["mlflow_run"] for r in rows} == {r.info.run_id for r in trials}
    assert all(r["epochs"] == "2" for r in rows)
    for row in rows:  # no float noise
        assert len(row["val_map"].split(".")[-1]) <= 4
    best = _artifact(uri, study_run.info.run_id, names.BEST_SETTINGS, tmp_path / "b")
    set_line = next(line for line in best.splitlines() if line.startswith("--set "))
    assert study_run.data.tags[names.TAG_BEST_SET] == set_line
    assert "Variant(" in best
    best_run = next(
        r for r in trials if r.info.run_id in best.splitlines()[0]
    )  # the --set line reproduces the best trial's config
    sets = parse_sets(shlex.split(set_line)[1:])
    cfg = apply_overrides(
        apply_overrides(seed_config(), presets.overrides("smoke")),
        {"data.root": str(synth_root), "train.epochs": 2, **sets},
    )
    assert config_hash(cfg) == best_run.data.tags[names.TAG_CONFIG_HASH]

    # the same command resumes the study, here in two workers at once: exactly the requested
    # new trials (one each), in the same study and under the same study run
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "digitexp", "tune", str(tmp_path / "ablations" / "spec.py"),
            "--preset", "smoke", "--data", str(synth_root), *args, "--trials", "1"]  # fmt: skip
    workers = [
        subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    for worker in workers:
        _out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    runs = _runs(client)
    assert [r.info.run_id for r in _kind(runs, names.KIND_TUNE)] == [study_run.info.run_id]
    assert len(_kind(runs, names.KIND_TRIAL)) == 4
    assert optuna.get_all_study_names(_storage(tmp_path)) == [study_name]
    study = optuna.load_study(study_name=study_name, storage=_storage(tmp_path))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    rows = _csv(_artifact(uri, study_run.info.run_id, names.TRIALS_CSV, tmp_path / "c"))
    assert len(rows) == 4
    assert client.get_run(study_run.info.run_id).info.status == "FINISHED"

    # the report shows the study; `runs` lists its trials
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    report = cli("report", "--ablations", tmp_path / "ablations", "--out", tmp_path / "report")
    assert report.code == 0, report.err
    text = (tmp_path / "report" / "README.md").read_text()
    assert f"## Tune study `{study_name}`" in text
    assert "4 complete, 0 pruned, 0 failed" in text
    best_line = client.get_run(study_run.info.run_id).data.tags[names.TAG_BEST_SET]
    assert best_line in text
    assert (tmp_path / "report" / "figures" / f"tune_{study_name}.png").is_file()
    listing = cli("runs")
    assert listing.out.count("BASE/t") == 4


@pytest.mark.slow
def test_the_median_pruner_prunes_a_trial_below_the_median(
    tmp_path: Path, synth_root: Path, empty_store_db: Path
) -> None:
    """Trial 0 (score threshold 0: it detects) completes; trial 1 (score threshold 1: no
    detection passes, val mAP exactly 0 every epoch) must be pruned at the first epoch where
    trial 0's val mAP is above 0, and stop there with its checkpoint kept."""
    from conftest import new_store

    uri = new_store(tmp_path, empty_store_db)
    args = [
        "--space",
        "train.lr=choice:0.005",
        "--study",
        "prune-test",
        "--set",
        "train.epochs=3",
        "train.batch_size=2",
        "data.train_limit=24",
        "train.deterministic=True",
        "--trials",
        "1",
    ]
    first = _tune(
        tmp_path, synth_root, *args, "--set", "model.box_score_thresh=0.0", "--pruner", "none"
    )
    assert first.code == 0, first.err
    second = _tune(
        tmp_path,
        synth_root,
        *args,
        "--set",
        "model.box_score_thresh=1.0",
        "--pruner",
        "median",
        "--startup-trials",
        "1",
        "--warmup-epochs",
        "0",
    )
    assert second.code == 0, second.err
    client = MlflowClient(uri)
    trials = {r.data.tags[names.TAG_TRIAL]: r for r in _kind(_runs(client), names.KIND_TRIAL)}
    curve = [
        m.value
        for m in sorted(
            client.get_metric_history(trials["0"].info.run_id, names.VAL_MAP), key=lambda m: m.step
        )
    ]
    expected = next((e for e, v in enumerate(curve[:-1], start=1) if v > 0), None)
    assert expected is not None, f"trial 0 never beat val mAP 0 before its last epoch: {curve}"

    pruned = trials["1"]
    assert pruned.info.status == "KILLED"
    assert pruned.data.tags[names.TAG_PRUNED] == str(expected)
    assert "pruned after epoch" in pruned.data.tags[names.TAG_ERROR]
    steps = sorted(m.step for m in client.get_metric_history(pruned.info.run_id, names.VAL_MAP))
    assert steps == list(range(1, expected + 1))  # stopped at once
    assert all(m.value == 0.0 for m in client.get_metric_history(pruned.info.run_id, names.VAL_MAP))
    assert names.BEST_VAL_MAP not in pruned.data.metrics
    listed = {a.path for a in client.list_artifacts(pruned.info.run_id, names.CHECKPOINTS)}
    assert names.LAST_CHECKPOINT in listed  # kept

    study = optuna.load_study(study_name="prune-test", storage=_storage(tmp_path))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    (study_run,) = _kind(_runs(client), names.KIND_TUNE)
    m = study_run.data.metrics
    assert m[names.TRIALS_PRUNED] == 1 and m[names.EPOCHS_PRUNED] == 3 - expected
    seconds = [x.value for x in client.get_metric_history(pruned.info.run_id, names.EPOCH_SECONDS)]
    assert m[names.PRUNED_SECONDS] == pytest.approx(
        (3 - expected) * sum(seconds) / len(seconds), abs=0.2
    )
    rows = _csv(_artifact(uri, study_run.info.run_id, names.TRIALS_CSV, tmp_path / "a"))
    assert rows[1]["state"] == "PRUNED" and rows[1]["pruned_at"] == str(expected)
    assert "pruned" in second.out

    listing = run_subprocess("runs", env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    line = next(row for row in listing.out.splitlines() if pruned.info.run_id in row)
    assert "pruned" in line


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_workers_trial_is_retried_in_the_same_run(
    sig: signal.Signals, tmp_path: Path, synth_root: Path, empty_store_db: Path
) -> None:
    """SIGKILL: the worker cannot say anything; Optuna's heartbeat fails its trial and the
    retry callback enqueues it again. SIGTERM (a scheduler's preemption, Ctrl-C): the run ends
    KILLED and the worker enqueues its trial again itself. Either way the next worker resumes
    the same MLflow run from its last checkpoint."""
    from conftest import new_store

    uri = new_store(tmp_path, empty_store_db)
    spec = _spec(tmp_path)
    argv = [
        sys.executable, "-m", "digitexp", "tune", str(spec),
        "--space", "train.lr=log:1e-4:1e-2",
        "--preset", "smoke", "--data", str(synth_root),
        "--set", "train.epochs=5", "model.min_size=96", "model.max_size=128",
        "--trials", "1", "--heartbeat", "1", "--sampler-seed", "0",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "DIGITEXP_HEARTBEAT_S": "1",
        "OMP_NUM_THREADS": "1",
    }
    victim = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    client = MlflowClient(uri)
    deadline = time.monotonic() + 240
    killed = None
    while killed is None:
        assert time.monotonic() < deadline, "the worker never finished an epoch"
        assert victim.poll() is None, victim.stderr.read().decode() if victim.stderr else ""
        for run in _kind(_runs(client), names.KIND_TRIAL):
            if int(run.data.tags.get(names.TAG_EPOCH, 0)) >= 1:
                killed = run.info.run_id
        time.sleep(0.1)
    victim.send_signal(sig)
    assert victim.wait(timeout=120) == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert client.get_run(killed).info.status == "KILLED"  # it said so itself

    # the same command again: it retries the dead worker's trial (Optuna's heartbeat fails
    # it), resuming the same MLflow run, and runs its own new trial
    worker = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    resumed = client.get_run(killed)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags[names.TAG_OWNER].split(":")[-1] != str(victim.pid)
    for key in (names.TRAIN_LOSS, names.VAL_MAP, names.EPOCH_SECONDS):
        steps = sorted(m.step for m in client.get_metric_history(killed, key))
        assert steps == [1, 2, 3, 4, 5], key  # no step lost or doubled
    trials = _kind(_runs(client), names.KIND_TRIAL)
    assert len(trials) == 2  # the killed trial went on in its own run
    assert all(r.info.status == "FINISHED" for r in trials)
    (study_name,) = optuna.get_all_study_names(_storage(tmp_path))
    study = optuna.load_study(study_name=study_name, storage=_storage(tmp_path))
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") is not None)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["mlflow_run"] == killed
    assert "retry of" in worker.stdout
