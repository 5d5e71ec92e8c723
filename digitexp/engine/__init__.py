"""The training engine: the one loop every spec shares and everything it needs.

- :mod:`.trainer`: :class:`Trainer` (one run's state, ``train_epoch``, ``validate``) and
  :func:`fit` (epochs, checkpoints, early stopping, predictions, logging to a Tracker).
- :mod:`.checkpoints`: save, load (``weights_only=True``), the config stored in one.
- :mod:`.runtime`: device, AMP, autocast, loader workers, seeding, channels_last.
- :mod:`.optim`: optimizer and learning-rate schedule.
- :mod:`.distributed`: DDP set-up under torchrun and the collectives the loop uses.
- :mod:`.inference`: batched inference; :mod:`.trained`: a trained run loaded for inference.
- :mod:`.hooks`: :class:`RunHook`, code that runs at the end of each epoch and of a run.
- :mod:`.preemption`: a stop request (a scheduler's signal) ends training at a safe point,
  resumable (:class:`Preempted`).
- :mod:`.serving`: a run's best checkpoint called on images, registered as an MLflow model.
"""

from digitexp.engine.checkpoints import checkpoint_config, load_checkpoint, save_checkpoint
from digitexp.engine.hooks import RunHook
from digitexp.engine.inference import infer
from digitexp.engine.preemption import Preempted
from digitexp.engine.trained import TrainedModel, load_trained_run, require_training_run
from digitexp.engine.trainer import RunResult, Trainer, build_datasets, fit

__all__ = [
    "Preempted",
    "RunHook",
    "RunResult",
    "TrainedModel",
    "Trainer",
    "build_datasets",
    "checkpoint_config",
    "fit",
    "infer",
    "load_checkpoint",
    "load_trained_run",
    "require_training_run",
    "save_checkpoint",
]
