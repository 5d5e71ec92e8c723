"""Checkpoints: the whole training state (model, optimizer, scheduler, scaler, early stopping,
history, RNG states and the config), written atomically and loaded with ``weights_only=True``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitexp.common import files
from digitexp.config import ExperimentConfig, from_dict
from digitexp.errors import ConfigError, WeightsError, first_line

CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, rng in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(rng, device)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write keeps the old file."""
    files.write_with(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded with ``weights_only=True``."""
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that would run code
        first = first_line(exc)
        raise WeightsError(f"{path}: not a loadable checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise WeightsError(f"{path}: not a digitexp checkpoint (no model/config entries)")
    return state


def checkpoint_config(state: dict[str, Any], source: Path | str) -> ExperimentConfig:
    """The config a checkpoint was trained with; ``source`` names it in errors."""
    try:
        return from_dict(state["config"])
    except ConfigError as exc:
        raise WeightsError(f"{source}: checkpoint config does not load ({exc})") from None
