"""Config dataclasses, the one override path, flatten, and the report's seed config."""

from __future__ import annotations

import dataclasses

import pytest

from digitexp.config import (
    ExperimentConfig,
    apply_overrides,
    config_hash,
    diff,
    flatten,
    from_dict,
    parse_set,
    parse_sets,
    seed_config,
    to_dict,
)
from digitexp.errors import ConfigError


def test_seed_config_is_the_reports_final_setup() -> None:
    cfg = seed_config()
    # Table 1
    assert cfg.train.optimizer == "adamw"
    assert cfg.train.lr == 1e-4
    assert cfg.train.weight_decay == 1e-4
    assert (cfg.train.scheduler, cfg.train.step_size, cfg.train.gamma) == ("step", 3, 0.1)
    assert cfg.train.epochs == 20
    assert cfg.train.batch_size == 8
    assert cfg.train.early_stop_patience == 5
    # Table 8 and Listing 1
    assert cfg.data.preprocess == "none"
    assert cfg.data.pre_normalize is True
    assert cfg.model.arch == "fasterrcnn_resnet50_fpn"
    assert cfg.model.weights == "DEFAULT"
    assert (cfg.model.min_size, cfg.model.max_size) == (512, 1024)
    assert cfg.model.anchor_sizes == (4, 8, 12, 24, 48)
    assert cfg.model.aspect_ratios == (0.25, 0.5, 1.0)
    assert cfg.model.box_nms_thresh == 0.3
    assert cfg.model.box_score_thresh == 0.5
    assert cfg.model.box_positive_fraction == 0.25
    assert cfg.model.box_batch_size_per_image == 512
    assert cfg.model.roi_levels == (0, 1, 2, 3)
    assert (cfg.model.roi_output_size, cfg.model.roi_sampling_ratio) == (7, 2)


def test_defaults_are_torchvisions_where_the_report_is_silent() -> None:
    m = ExperimentConfig().model
    assert m.anchor_sizes == (32, 64, 128, 256, 512)
    assert m.aspect_ratios == (0.5, 1.0, 2.0)
    assert (m.rpn_pre_nms_top_n_train, m.rpn_post_nms_top_n_test) == (2000, 1000)
    assert (m.box_score_thresh, m.box_nms_thresh, m.box_detections_per_img) == (0.05, 0.5, 100)


def test_configs_are_frozen() -> None:
    cfg = seed_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_overrides_apply_and_coerce() -> None:
    cfg = apply_overrides(
        seed_config(),
        {
            "model.anchor_sizes": [4, 8, 16, 32, 64],
            "model.aspect_ratios": (1, 1.5, 2),
            "train.lr": 1,
            "model.trainable_backbone_layers": None,
            "data.preprocess": "binary",
            "train.amp": False,
        },
    )
    assert cfg.model.anchor_sizes == (4, 8, 16, 32, 64)
    assert cfg.model.aspect_ratios == (1.0, 1.5, 2.0)
    assert all(isinstance(r, float) for r in cfg.model.aspect_ratios)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.preprocess == "binary"
    assert cfg.train.amp is False
    # the input is untouched
    assert seed_config().model.anchor_sizes == (4, 8, 12, 24, 48)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"model.anchor_size": (4,)}, "model.anchor_size: unknown key"),
        ({"modle.anchor_sizes": (4,)}, "unknown section 'modle'"),
        ({"lr": 0.1}, "section.field"),
        ({"model.anchor_sizes": "big"}, "expected tuple of int"),
        ({"model.anchor_sizes": (4.5, 8)}, "expected tuple of int"),
        ({"train.lr": "fast"}, "train.lr: expected float"),
        ({"train.lr": True}, "train.lr: expected float"),
        ({"train.epochs": 2.5}, "train.epochs: expected int"),
        ({"train.amp": 1}, "train.amp: expected bool"),
        ({"train.optimizer": "adam"}, "'adamw' | 'sgd'"),
        ({"data.preprocess": "gray"}, "'none' | 'color' | 'binary'"),
        ({"model.box_nms_thresh": 1.5}, "model.box_nms_thresh: must be in [0, 1]"),
        ({"model.anchor_sizes": ()}, "model.anchor_sizes: must not be empty"),
        ({"train.device": "gpu"}, "train.device"),
        ({"data.binary_block_size": 10}, "odd integer"),
    ],
)
def test_bad_overrides_name_the_key_and_the_type(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(seed_config(), overrides)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        apply_overrides(seed_config(), {"model.box_nms": 0.3})


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("model.anchor_sizes=(4, 8, 12)", ("model.anchor_sizes", (4, 8, 12))),
        ("train.lr=3e-4", ("train.lr", 3e-4)),
        ("train.amp=False", ("train.amp", False)),
        ("data.root=data/hw2", ("data.root", "data/hw2")),
        ("data.preprocess='binary'", ("data.preprocess", "binary")),
        ("model.trainable_backbone_layers=None", ("model.trainable_backbone_layers", None)),
    ],
)
def test_parse_set(item: str, expected: tuple) -> None:
    assert parse_set(item) == expected


def test_parse_set_needs_key_and_value() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_set("train.lr")
    with pytest.raises(ConfigError, match="empty key"):
        parse_set("=3")


def test_sets_go_through_the_same_override_path() -> None:
    cfg = apply_overrides(seed_config(), parse_sets(["model.box_nms_thresh=0.4", "train.epochs=3"]))
    assert (cfg.model.box_nms_thresh, cfg.train.epochs) == (0.4, 3)


def test_flatten_round_trip_and_hash() -> None:
    cfg = seed_config()
    flat = flatten(cfg)
    assert flat["model.anchor_sizes"] == (4, 8, 12, 24, 48)
    assert flat["train.lr"] == 1e-4
    assert all(k.count(".") == 1 for k in flat)
    assert from_dict(to_dict(cfg)) == cfg
    other = apply_overrides(cfg, {"train.lr": 2e-4})
    assert config_hash(cfg) == config_hash(seed_config())
    assert config_hash(cfg) != config_hash(other)
    assert diff(cfg, other) == {"train.lr": 2e-4}
