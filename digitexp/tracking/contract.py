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
TAG_STUDY = "digitexp.study"  # a search run: its Optuna study
TAG_BEST_SET = "digitexp.best_set"  # a search run: the --set line of its best thresholds
PARENT_TAG = "mlflow.parentRunId"

KIND_TRAIN = "train"  # one variant x seed (a child run)
KIND_INVOCATION = "invocation"  # one `run` command or queue worker (a parent run)
KIND_SEARCH = "search"  # one `search` command

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


def best_val_metric(key: str) -> str:
    """``number_acc`` -> ``best_val_number_acc``: the value at the best epoch."""
    return f"best_val_{key}"


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


def candidates_artifact(split: str, cap: int) -> str:
    """A search run's candidate cache of one split and per-image cap."""
    return f"{CANDIDATES}/{split}-cap{cap}.npz"
