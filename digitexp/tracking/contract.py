"""The tracking contract: every name of a tag, metric and artifact that digitexp writes to
MLflow and reads back, defined once.

docs/architecture.md ("Tracking contract") lists the same names; a test holds the two
together. Everything else (the trainer, the launchers, the search, the report, the CLI and the
tests) imports the names from here.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- tags

TAG_SPEC = "digitexp.spec"  # the spec's name (file stem)
TAG_SPEC_PATH = "digitexp.spec_path"  # the spec file the run was started from
TAG_VARIANT = "digitexp.variant"
TAG_SEED = "digitexp.seed"
TAG_PRESET = "digitexp.preset"  # "none" when no preset applied
TAG_GIT = "digitexp.git_commit"
TAG_CONFIG_HASH = "digitexp.config_hash"
TAG_KIND = "digitexp.kind"  # one of the KIND_ values below
TAG_DATA = "digitexp.data_root"
TAG_ERROR = "digitexp.error"  # why a run FAILED or was KILLED
TAG_OWNER = "digitexp.owner"  # host:pid of the process that trains the run
TAG_HEARTBEAT = "digitexp.heartbeat"  # unix time of the owner's last beat
TAG_EPOCH = "digitexp.epoch"  # the last epoch whose metrics are logged
TAG_NUM_PARAMETERS = "digitexp.num_parameters"
TAG_WORLD_SIZE = "digitexp.world_size"
TAG_EFFECTIVE_LR = "digitexp.effective_lr"
TAG_EFFECTIVE_BATCH_SIZE = "digitexp.effective_batch_size"
TAG_QUEUE = "digitexp.queue"  # the work queue (Optuna study) a worker's invocation serves
TAG_SOURCE_RUN = "digitexp.source_run"  # a search run: the training run it searched
TAG_SPLIT = "digitexp.split"  # a search run: the split it scored
TAG_STUDY = "digitexp.study"  # a search, tune or trial run: its Optuna study
TAG_BEST_SET = "digitexp.best_set"  # a search or tune run: the --set line of its best trial
TAG_OVERRIDES = "digitexp.overrides"  # parent, child: the `--set` line that applied, or "none"
TAG_BEST_VARIANT = "digitexp.best_variant"  # a parent: the variant of highest mean val mAP
TAG_SLURM_JOB = "digitexp.slurm_job"  # the Slurm (array) job id the run was trained in
TAG_SLURM_TASK = "digitexp.slurm_task"  # a child run: its task id in the Slurm job array
TAG_PREEMPTED = "digitexp.preempted"  # times training stopped early, resumable, on request
TAG_TRIAL = "digitexp.trial"  # a trial run: the number of the Optuna trial that started it
TAG_PRUNED = "digitexp.pruned"  # a pruned trial run (status KILLED): the epoch it stopped after
PARENT_TAG = "mlflow.parentRunId"

# MLflow's own tags, which its UI reads (the run table's Source, Version, User, Description)
SOURCE_NAME = "mlflow.source.name"  # the spec file (training) or `digitexp search`
SOURCE_TYPE = "mlflow.source.type"  # LOCAL
SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
USER = "mlflow.user"
DESCRIPTION = "mlflow.note.content"  # Markdown; on runs and on experiments
DATASET_CONTEXT = "train"  # the context of a training run's dataset input
VIEW_KEY = "digitexp"  # experiment tag mlflow.sharedViewState.digitexp: the printed URL's view

KIND_TRAIN = "train"  # one variant x seed (a child run)
KIND_INVOCATION = "invocation"  # one `run` command or queue worker (a parent run)
KIND_SEARCH = "search"  # one `search` command
KIND_TUNE = "tune"  # one `tune` study (a parent run, shared by every worker of the study)
KIND_TRIAL = "trial"  # one trial of a `tune` study (a child run of it)

# --------------------------------------------------------------------------- metrics

# per epoch (step = epoch number, from 1)
TRAIN_LOSS = "train_loss"
LOSS_PARTS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
LR = "lr"
VAL_MAP = "val_map"
VAL_MAP50 = "val_map50"
VAL_MAP75 = "val_map75"
VAL_DIGIT_ACC = "val_digit_acc"
VAL_NUMBER_ACC = "val_number_acc"
EPOCH_SECONDS = "epoch_seconds"
TRAIN_IMAGES_PER_S = "train_images_per_s"
EPOCH_METRICS = (
    TRAIN_LOSS,
    *LOSS_PARTS,
    LR,
    VAL_MAP,
    VAL_MAP50,
    VAL_MAP75,
    VAL_DIGIT_ACC,
    VAL_NUMBER_ACC,
    EPOCH_SECONDS,
    TRAIN_IMAGES_PER_S,
)
TIMING_METRICS = (EPOCH_SECONDS, TRAIN_IMAGES_PER_S)

# once, at the end of a run
BEST_VAL_MAP = "best_val_map"
BEST_EPOCH = "best_epoch"
FINAL_TRAIN_LOSS = "final_train_loss"
TEST_MAP = "test_map"
TEST_NUMBER_ACC = "test_number_acc"
SUMMARY_METRICS = (BEST_VAL_MAP, BEST_EPOCH, FINAL_TRAIN_LOSS, TEST_MAP, TEST_NUMBER_ACC)


def val_metric(key: str) -> str:
    """``map`` -> ``val_map``: a key of :func:`digitexp.metrics.evaluate` on the valid split."""
    return f"val_{key}"


def test_metric(key: str) -> str:
    """``map`` -> ``test_map``: the same on the test split (when it has annotations)."""
    return f"test_{key}"


def at_best_metric(key: str) -> str:
    """``number_acc`` -> ``val_number_acc_at_best``: the value at the best epoch (named to sort
    right after its curve, so the run page's charts open on curves, not on single values)."""
    return f"val_{key}_at_best"


# a parent run, when its children end: the comparison (section "comparison" in the UI)
COMPARISON_BEST_VAL_MAP = "comparison/best_val_map"  # the best variant's mean best_val_map
COMPARISON_WORST_VAL_MAP = "comparison/worst_val_map"  # the worst variant's
COMPARISON_VAL_MAP_SPREAD = "comparison/val_map_spread"  # best minus worst
COMPARISON_RUNS_FINISHED = "comparison/runs_finished"
COMPARISON_METRICS = (
    COMPARISON_BEST_VAL_MAP,
    COMPARISON_WORST_VAL_MAP,
    COMPARISON_VAL_MAP_SPREAD,
    COMPARISON_RUNS_FINISHED,
)

# a search run (nested under the training run it searched): every metric under "search/"
SEARCH_PREFIX = "search/"
SEARCH_TRIALS = "search/trials_total"
SEARCH_INFERENCE_SECONDS = "search/inference_seconds"
SEARCH_TRIAL_SECONDS = "search/trial_seconds_mean"


def search_metric(choice: str, key: str) -> str:
    """``("best_map", "number_acc")`` -> ``search/best_map_number_acc``: a metric (or chosen
    threshold) of one of a search's choices: ``default`` (the spec's thresholds),
    ``best_map``, ``best_number_acc``."""
    return f"{SEARCH_PREFIX}{choice}_{key}"


# --------------------------------------------------------------------------- artifacts

CONFIG_JSON = "config.json"  # the resolved config, verbatim
SPEC_PY = "spec.py"  # the spec file's source
CHECKPOINTS = "checkpoints"
BEST_CHECKPOINT = "checkpoints/best.pt"
LAST_CHECKPOINT = "checkpoints/last.pt"
PREDICTIONS = "predictions"
VAL_PREDICTIONS = "predictions/val.json"  # COCO results of the best checkpoint on valid
VAL_INFERENCE = "predictions/inference.json"  # how val.json was made (batch size, device)
TEST_PREDICTIONS = "predictions/test"  # the submission files (digitexp.submission) on test
TEST_INFERENCE = "predictions/test/inference.json"  # how the submission was made
CANDIDATES = "candidates"  # a search run: its cached candidate detections
FIGURES = "figures"
CURVES_FIGURE = "figures/curves.png"  # a training run: its per-epoch curves
PREDICTIONS_FIGURE = "figures/val_predictions.png"  # its best checkpoint on validation images
MODEL = "model"  # the name of a registered run's logged MLflow model


def candidates_artifact(split: str, cap: int) -> str:
    """A search run's candidate cache of one split and per-image cap."""
    return f"{CANDIDATES}/{split}-cap{cap}.npz"


# --------------------------------------------------------------------------- tune studies

# a study's run (``tune``): every metric under "tune/", rewritten after each trial
TUNE_PREFIX = "tune/"
TRIALS_COMPLETE = "tune/trials_complete"
TRIALS_PRUNED = "tune/trials_pruned"
TRIALS_FAILED = "tune/trials_failed"
EPOCHS_TRAINED = "tune/epochs_trained"  # epochs every trial trained, together
EPOCHS_PRUNED = "tune/epochs_pruned"  # epochs the pruned trials did not train
TRAIN_SECONDS = "tune/train_seconds"  # training time of every trial (sum of epoch_seconds)
PRUNED_SECONDS = "tune/pruned_seconds"  # estimated: each pruned trial's epochs left x epoch time
TUNE_METRICS = (
    TRIALS_COMPLETE,
    TRIALS_PRUNED,
    TRIALS_FAILED,
    EPOCHS_TRAINED,
    EPOCHS_PRUNED,
    TRAIN_SECONDS,
    PRUNED_SECONDS,
)
SPACE_PARAM_PREFIX = "space."  # a study's params: space.train.lr = log:1e-05:0.01


def space_param(key: str) -> str:
    """``train.lr`` -> ``space.train.lr``: the param of a study run holding a key's space."""
    return f"{SPACE_PARAM_PREFIX}{key}"


TRIALS_CSV = "trials.csv"  # every trial: state, settings, values, epochs, seconds, run
BEST_SETTINGS = "best_settings.txt"  # the best trial as a --set line and a Variant(...) line
TUNE_HISTORY_FIGURE = "optimization_history.png"
TUNE_CURVES_FIGURE = "intermediate_values.png"  # each trial's val metric per epoch
PARAM_IMPORTANCES_CSV = "param_importances.csv"
PARAM_IMPORTANCES_FIGURE = "param_importances.png"
TUNE_ARTIFACTS = (
    TRIALS_CSV,
    BEST_SETTINGS,
    TUNE_HISTORY_FIGURE,
    TUNE_CURVES_FIGURE,
    PARAM_IMPORTANCES_CSV,
    PARAM_IMPORTANCES_FIGURE,
)

# --------------------------------------------------------------------------- error analysis

ANALYSIS = "analysis"  # a run's error analysis (digitexp.insight): metric prefix, artifact folder


def analysis_metric(key: str) -> str:
    """``ap_digit_3`` -> ``analysis/ap_digit_3``: a value of a run's error analysis."""
    return f"{ANALYSIS}/{key}"


ANALYSIS_METRICS = (
    *(f"analysis/ap_digit_{d}" for d in range(10)),  # AP of each digit
    "analysis/ap_small",  # COCO's area ranges
    "analysis/ap_medium",
    "analysis/ap_large",
    "analysis/ap_height_0_16",  # ground-truth box height in the original image, [lo, hi) px
    "analysis/ap_height_16_32",
    "analysis/ap_height_32_64",
    "analysis/ap_height_64_up",
    "analysis/task2_correct",  # share of validation images in each Task-2 failure class
    "analysis/task2_no_detection",
    "analysis/task2_read_twice",
    "analysis/task2_missed_digit",
    "analysis/task2_extra_digit",
    "analysis/task2_wrong_digit",
    "analysis/task2_wrong_order",
)
ANALYSIS_AP_BY_DIGIT = "analysis/ap_by_digit.csv"
ANALYSIS_AP_BY_SIZE = "analysis/ap_by_size.csv"
ANALYSIS_CONFUSION = "analysis/confusion.csv"
ANALYSIS_FAILURES = "analysis/task2_failures.csv"
ANALYSIS_IMAGES = "analysis/task2_images.csv"  # every image: truth, reading, failure class
ANALYSIS_AP_FIGURE = "analysis/ap.png"
ANALYSIS_CONFUSION_FIGURE = "analysis/confusion.png"
ANALYSIS_FAILURES_FIGURE = "analysis/task2_failures.png"
ANALYSIS_WORST_FIGURE = "analysis/worst_images.png"
ANALYSIS_ARTIFACTS = (
    ANALYSIS_AP_BY_DIGIT,
    ANALYSIS_AP_BY_SIZE,
    ANALYSIS_CONFUSION,
    ANALYSIS_FAILURES,
    ANALYSIS_IMAGES,
    ANALYSIS_AP_FIGURE,
    ANALYSIS_CONFUSION_FIGURE,
    ANALYSIS_FAILURES_FIGURE,
    ANALYSIS_WORST_FIGURE,
)
