"""build_model: every architecture, every knob lands on the built model, weights handling."""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from digitexp.config import ModelConfig
from digitexp.errors import ConfigError, WeightsError
from digitexp.model import (
    FEATURE_MAPS,
    FEATURE_STRIDES,
    build_model,
    check_model,
    check_weights,
    convert_norm,
    hub_checkpoint_path,
)

ARCHS = [
    "tiny_fpn",
    "resnet18_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
]
SMALL = {"min_size": 64, "max_size": 96}


def _norms(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d)}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_builds_with_the_knobs(arch: str) -> None:
    levels = (0, 1) if "mobilenet" in arch else (0, 1, 2)
    cfg = ModelConfig(
        arch=arch,
        weights="none",
        anchor_sizes=(4, 8, 12, 24, 48),
        anchor_layout="every_level" if "mobilenet" in arch else "per_level",
        aspect_ratios=(1.0, 1.5, 2.0, 3.0),
        roi_levels=levels,
        roi_output_size=5,
        roi_sampling_ratio=1,
        box_nms_thresh=0.3,
        box_score_thresh=0.5,
        box_detections_per_img=37,
        box_batch_size_per_image=64,
        box_positive_fraction=0.4,
        rpn_pre_nms_top_n_test=111,
        rpn_post_nms_top_n_test=55,
        rpn_nms_thresh=0.6,
        box_head_dim=128,
        **SMALL,
    )
    model = build_model(cfg)
    heads = model.roi_heads
    assert heads.box_predictor.cls_score.out_features == 11
    assert heads.box_predictor.bbox_pred.out_features == 44
    assert heads.box_roi_pool.featmap_names == [str(level) for level in levels]
    assert heads.box_roi_pool.output_size == (5, 5)
    assert heads.box_roi_pool.sampling_ratio == 1
    assert (heads.nms_thresh, heads.score_thresh, heads.detections_per_img) == (0.3, 0.5, 37)
    assert heads.fg_bg_sampler.batch_size_per_image == 64
    assert heads.fg_bg_sampler.positive_fraction == 0.4
    assert model.rpn._pre_nms_top_n["testing"] == 111
    assert model.rpn._post_nms_top_n["testing"] == 55
    assert model.rpn.nms_thresh == 0.6
    assert (model.transform.min_size, model.transform.max_size) == ((64,), 96)
    generator = model.rpn.anchor_generator
    if "mobilenet" in arch:  # 3 levels: every size on every level
        assert generator.sizes == ((4, 8, 12, 24, 48),) * 3
        assert generator.num_anchors_per_location() == [20] * 3
    else:
        assert generator.sizes == ((4,), (8,), (12,), (24,), (48,))
        assert generator.num_anchors_per_location() == [4] * 5
    assert model.rpn.head.cls_logits.out_channels == generator.num_anchors_per_location()[0]
    assert _norms(model.backbone) == {nn.BatchNorm2d}  # from scratch: BatchNorm trains


@pytest.mark.parametrize("arch", ["tiny_fpn", "resnet18_fpn"])
def test_small_models_train_and_predict(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, fpn_channels=32, box_head_dim=64, **SMALL))
    images = [torch.rand(3, 40, 90), torch.rand(3, 50, 60)]
    targets = [
        {"boxes": torch.tensor([[5.0, 5.0, 20.0, 35.0]]), "labels": torch.tensor([3])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}


def test_backbone_norm_override() -> None:
    model = build_model(ModelConfig(arch="resnet18_fpn", backbone_norm="frozen", **SMALL))
    assert _norms(model.backbone) == {FrozenBatchNorm2d}


@pytest.mark.parametrize("arch", ARCHS)
def test_feature_map_table_matches_the_built_backbones(arch: str) -> None:
    cfg = ModelConfig(arch=arch, anchor_layout="every_level", roi_levels=(0, 1), **SMALL)
    model = build_model(cfg).eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 96, 64))
    assert tuple(features) == FEATURE_MAPS[arch]
    # a map of stride s has ceil(P / s) cells on an input of size P (96 / 64: not a multiple)
    cells = [tuple(f.shape[-2:]) for f in features.values()]
    assert cells == [(math.ceil(96 / s), math.ceil(64 / s)) for s in FEATURE_STRIDES[arch]]


def test_anchor_sizes_that_do_not_fit_the_feature_maps_are_refused() -> None:
    cfg = ModelConfig(arch="fasterrcnn_mobilenet_v3_large_fpn", roi_levels=(0, 1), **SMALL)
    for check in (build_model, check_model):
        with pytest.raises(ConfigError, match=r"5 sizes but .* has 3 feature maps") as info:
            check(cfg)
        assert "model.anchor_layout=every_level" in str(info.value)
    model = build_model(replace(cfg, anchor_sizes=(16, 32, 64)))
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,))


def test_roi_level_the_backbone_lacks() -> None:
    cfg = ModelConfig(
        arch="fasterrcnn_mobilenet_v3_large_fpn",
        anchor_sizes=(8, 16, 32),
        roi_levels=(0, 3),
        **SMALL,
    )
    with pytest.raises(ConfigError, match="no level 3"):
        build_model(cfg)


def test_missing_pretrained_weights_name_the_file_and_the_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = ModelConfig(arch="fasterrcnn_resnet50_fpn", weights="DEFAULT")
    with pytest.raises(WeightsError) as info:
        check_weights(cfg)
    message = str(info.value)
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/" in message
    with pytest.raises(WeightsError):
        build_model(cfg)
    with pytest.raises(WeightsError, match="no pretrained weights"):
        check_weights(ModelConfig(arch="tiny_fpn", weights="DEFAULT"))


def test_hub_path_follows_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = hub_checkpoint_path("https://example.org/models/x-123.pth")
    assert path == tmp_path / "hub" / "checkpoints" / "x-123.pth"


def test_own_weights_file_round_trip(tmp_path: Path) -> None:
    cfg = ModelConfig(arch="tiny_fpn", fpn_channels=16, box_head_dim=32, **SMALL)
    torch.manual_seed(1)
    source = build_model(cfg)
    path = tmp_path / "w.pt"
    torch.save({"model": source.state_dict()}, path)
    loaded = build_model(ModelConfig(**{**cfg.__dict__, "weights": str(path)}))
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_coco_style_weights_file_rebuilds_the_rpn_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A torchvision COCO checkpoint (91 classes, FrozenBatchNorm): loaded, then the head swap."""
    import torchvision

    coco = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    convert_norm(coco, FrozenBatchNorm2d)
    path = tmp_path / "coco.pth"
    torch.save(coco.state_dict(), path)
    cfg = ModelConfig(
        arch="fasterrcnn_mobilenet_v3_large_fpn",
        weights=str(path),
        anchor_sizes=(8, 16),
        anchor_layout="every_level",
        aspect_ratios=(0.5, 1.0, 2.0),
        roi_levels=(0, 1),
        **SMALL,
    )
    with caplog.at_level(logging.INFO, logger="digitexp.model"):
        model = build_model(cfg)
    assert "rebuilt the RPN head for 6 anchors per location (pretrained head has 15)" in caplog.text
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    backbone_key = "backbone.body.0.0.weight"
    assert torch.equal(model.state_dict()[backbone_key], coco.state_dict()[backbone_key])
    assert _norms(model.backbone) == {FrozenBatchNorm2d}


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


@pytest.mark.parametrize("content", ["corrupt", "pickle"])
def test_bad_weights_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.pt"
    if content == "corrupt":
        path.write_bytes(b"\x00\x01 definitely not a checkpoint")
    else:
        path.write_bytes(pickle.dumps({"model": _Evil()}))
    with pytest.raises(WeightsError) as info:
        check_weights(ModelConfig(arch="tiny_fpn", weights=str(path)))
    assert str(path) in str(info.value)
    with pytest.raises(WeightsError):
        check_weights(ModelConfig(arch="tiny_fpn", weights=str(tmp_path / "missing.pt")))


def test_box_predictor_outputs_float32_under_autocast() -> None:
    """Post-processing (and the threshold search's replay of it) runs in float32 under AMP."""
    model = build_model(ModelConfig(arch="tiny_fpn", fpn_channels=16, box_head_dim=32, **SMALL))
    features = torch.rand(3, 16 * 7 * 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head = model.roi_heads.box_head(features)
        scores, deltas = model.roi_heads.box_predictor(head)
    assert head.dtype == torch.bfloat16
    assert scores.dtype == deltas.dtype == torch.float32
