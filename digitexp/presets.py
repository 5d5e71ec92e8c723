"""Named override sets for small machines.

A preset is just a dict of dotted overrides, applied after a spec's BASE and before the
variant's own overrides, so a preset never erases what a variant tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from digitexp.errors import ConfigError

# A tiny from-scratch detector on the synthetic set: the whole anchors ablation (4 variants)
# trains and evaluates in about 10 minutes on 2 CPU cores.
DEMO: Mapping[str, Any] = MappingProxyType(
    {
        "data.root": "data/synth",
        "data.pre_normalize": False,
        "data.cache_images": True,
        "model.arch": "tiny_fpn",
        "model.weights": "none",
        "model.fpn_channels": 32,
        "model.box_head_dim": 128,
        "model.min_size": 80,
        "model.max_size": 160,
        "model.rpn_pre_nms_top_n_train": 300,
        "model.rpn_post_nms_top_n_train": 150,
        "model.rpn_pre_nms_top_n_test": 300,
        "model.rpn_post_nms_top_n_test": 150,
        "model.box_batch_size_per_image": 32,
        "model.roi_levels": (0,),
        "model.roi_sampling_ratio": 1,
        "train.epochs": 5,
        "train.lr": 2e-3,
        "train.scheduler": "cosine",
        "train.t_max": 5,
        "train.warmup_iters": 50,
        "train.early_stop_patience": 0,
        "train.workers": 0,
        "train.eval_batch_size": 32,
    }
)

# Seconds per run, for tests and for checking that a spec runs end to end.
SMOKE: Mapping[str, Any] = MappingProxyType(
    {
        "data.root": "data/synth",
        "data.train_limit": 16,
        "data.valid_limit": 8,
        "data.test_limit": 8,
        "data.pre_normalize": False,
        "model.arch": "tiny_fpn",
        "model.weights": "none",
        "model.fpn_channels": 16,
        "model.box_head_dim": 32,
        "model.min_size": 64,
        "model.max_size": 96,
        "model.rpn_pre_nms_top_n_train": 100,
        "model.rpn_post_nms_top_n_train": 50,
        "model.rpn_pre_nms_top_n_test": 100,
        "model.rpn_post_nms_top_n_test": 50,
        "model.box_batch_size_per_image": 32,
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.lr": 1e-3,
        "train.scheduler": "none",
        "train.early_stop_patience": 0,
        "train.workers": 0,
        "train.log_every": 2,
        "train.eval_batch_size": 8,
    }
)

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"demo": DEMO, "smoke": SMOKE})


def overrides(name: str) -> Mapping[str, Any]:
    """The overrides of preset ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})") from None
