"""``build_model(ModelConfig)``: a torchvision Faster R-CNN with every knob of the config.

Architectures: torchvision's ``fasterrcnn_resnet50_fpn`` (the report's), ``..._v2`` and
``fasterrcnn_mobilenet_v3_large_fpn``; ``resnet18_fpn`` (ResNet-18 + FPN) and ``tiny_fpn`` (a
small BatchNorm CNN + FPN) for CPU work. Pretrained COCO weights are loaded first, then the
anchor generator, RoI pooling, box head and the 11-class predictor are swapped in; modules
whose shapes changed (an RPN head for another number of anchors, a box head of another
width) are rebuilt and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from digitexp.config import ModelConfig
from digitexp.data import NUM_CLASSES
from digitexp.errors import ConfigError, WeightsError, first_line

log = logging.getLogger("digitexp.model")

TORCHVISION_ARCHS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
)


# --------------------------------------------------------------------------- weights


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub keeps (and looks for) the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _require_cached(weights: Any, what: str) -> None:
    path = hub_checkpoint_path(weights.url)
    if not path.is_file():
        raise WeightsError(
            f"{what}: pretrained weights {path.name} are not in the torch hub cache; "
            f"copy the file from {weights.url} to {path} (or set TORCH_HOME), "
            "or set model.weights to a local file or 'none'"
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A model state dict from a file: a plain state dict or our checkpoint's ``model``."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        first = first_line(exc)
        raise WeightsError(f"{path}: not a loadable weights file ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return obj


def _load(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).splitlines()
        line = next((d.strip() for d in detail[1:] if d.strip()), detail[0])
        raise WeightsError(f"{source}: weights do not fit this model ({line[:200]})") from None


# --------------------------------------------------------------------------- norm layers


def convert_norm(module: nn.Module, to: type[nn.Module]) -> nn.Module:
    """Replace BatchNorm2d <-> FrozenBatchNorm2d in place, keeping the statistics."""
    for name, child in module.named_children():
        if to is nn.BatchNorm2d and isinstance(child, FrozenBatchNorm2d):
            new: nn.Module = nn.BatchNorm2d(child.weight.shape[0], eps=child.eps)
        elif to is FrozenBatchNorm2d and isinstance(child, nn.BatchNorm2d):
            new = FrozenBatchNorm2d(child.num_features, eps=child.eps)
        else:
            convert_norm(child, to)
            continue
        with torch.no_grad():
            new.weight.copy_(child.weight)
            new.bias.copy_(child.bias)
            new.running_mean.copy_(child.running_mean)
            new.running_var.copy_(child.running_var)
        setattr(module, name, new)
    return module


def _norm_layer(cfg: ModelConfig, pretrained: bool) -> type[nn.Module]:
    match cfg.backbone_norm:
        case "frozen":
            return FrozenBatchNorm2d
        case "batch":
            return nn.BatchNorm2d
        case "auto":
            return FrozenBatchNorm2d if pretrained else nn.BatchNorm2d


# --------------------------------------------------------------------------- backbones


class _Stage(nn.Sequential):
    """Stride-2 conv + one residual block of two 3x3 convs."""

    def __init__(self, cin: int, cout: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), norm(cout), nn.ReLU(True)
        )
        self.block = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            norm(cout),
            nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            norm(cout),
        )
        self.act = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.block(x))


class TinyBody(nn.Module):
    """A small CNN for CPU demos: strides 4, 8, 16, 32 with 32, 48, 64, 96 channels."""

    channels = (32, 48, 64, 96)

    def __init__(self, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 24, 3, stride=2, padding=1, bias=False), norm(24), nn.ReLU(True)
        )
        c1, c2, c3, c4 = self.channels
        self.layer1 = _Stage(24, c1, norm)
        self.layer2 = _Stage(c1, c2, norm)
        self.layer3 = _Stage(c2, c3, norm)
        self.layer4 = _Stage(c3, c4, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # only used through IntermediateLayerGetter
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def _own_backbone(cfg: ModelConfig, norm: type[nn.Module]) -> nn.Module:
    return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    match cfg.arch:
        case "resnet18_fpn":
            weights = None
            if cfg.weights == "DEFAULT":
                weights = torchvision.models.ResNet18_Weights.DEFAULT
                _require_cached(weights, "resnet18_fpn (ImageNet backbone)")
            body: nn.Module = torchvision.models.resnet18(weights=weights, norm_layer=norm)
            in_channels = [64, 128, 256, 512]
            _freeze_resnet_layers(
                body, cfg.trainable_backbone_layers, pretrained=weights is not None
            )
        case _:
            if cfg.weights == "DEFAULT":
                check_weights(cfg)
            body = TinyBody(norm)
            in_channels = list(TinyBody.channels)
    return BackboneWithFPN(body, return_layers, in_channels, cfg.fpn_channels)


def _freeze_resnet_layers(body: nn.Module, trainable: int | None, pretrained: bool) -> None:
    if trainable is None:
        trainable = 3 if pretrained else 5
    layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
    if trainable == 5:
        layers.append("bn1")
    for name, param in body.named_parameters():
        if all(not name.startswith(layer) for layer in layers):
            param.requires_grad_(False)


# --------------------------------------------------------------------------- assembly


FEATURE_MAPS: dict[str, tuple[str, ...]] = {
    "fasterrcnn_resnet50_fpn": ("0", "1", "2", "3", "pool"),
    "fasterrcnn_resnet50_fpn_v2": ("0", "1", "2", "3", "pool"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("0", "1", "pool"),
    "resnet18_fpn": ("0", "1", "2", "3", "pool"),
    "tiny_fpn": ("0", "1", "2", "3", "pool"),
}
"""The feature maps each architecture's FPN hands to the RPN and the RoI pooling (a test holds
this table against the built models)."""

FEATURE_STRIDES: dict[str, tuple[int, ...]] = {
    "fasterrcnn_resnet50_fpn": (4, 8, 16, 32, 64),
    "fasterrcnn_resnet50_fpn_v2": (4, 8, 16, 32, 64),
    "fasterrcnn_mobilenet_v3_large_fpn": (32, 32, 64),
    "resnet18_fpn": (4, 8, 16, 32, 64),
    "tiny_fpn": (4, 8, 16, 32, 64),
}
"""The stride of each feature map of FEATURE_MAPS: on an input of size P (padded to a multiple
of 32) a map has ceil(P / stride) cells (a test holds this table against the built models)."""


def anchor_sizes_per_level(cfg: ModelConfig) -> tuple[tuple[int, ...], ...]:
    """The anchor sizes of each FPN level: one size per level (``model.anchor_layout =
    per_level``, the count must match the levels) or every size on every level
    (``every_level``, as torchvision's MobileNet detector does)."""
    levels = FEATURE_MAPS[cfg.arch]
    if cfg.anchor_layout == "every_level":
        return (tuple(cfg.anchor_sizes),) * len(levels)
    if len(cfg.anchor_sizes) != len(levels):
        raise ConfigError(
            f"model.anchor_sizes: {len(cfg.anchor_sizes)} sizes but {cfg.arch} has "
            f"{len(levels)} feature maps ({', '.join(levels)}); give one size per map, or set "
            "model.anchor_layout=every_level to put every size on every map"
        )
    return tuple((s,) for s in cfg.anchor_sizes)


def anchor_generator(cfg: ModelConfig) -> AnchorGenerator:
    """The RPN's anchor generator: ``anchor_sizes_per_level`` with every aspect ratio (h/w)."""
    sizes = anchor_sizes_per_level(cfg)
    return AnchorGenerator(sizes, (tuple(cfg.aspect_ratios),) * len(sizes))


def check_model(cfg: ModelConfig) -> None:
    """Raise ConfigError / WeightsError now (before any run exists) for a model that cannot be
    built: anchor sizes that do not fit the feature maps, RoI levels the backbone lacks,
    pretrained weights that are not here, a weights file of another architecture."""
    anchor_sizes_per_level(cfg)
    _roi_featmaps(cfg)
    check_weights(cfg)
    if cfg.weights not in ("DEFAULT", "none"):  # a local file: do its weights fit this model?
        build_model(cfg)


def _roi_featmaps(cfg: ModelConfig) -> list[str]:
    names = FEATURE_MAPS[cfg.arch]
    levels = [str(level) for level in cfg.roi_levels]
    missing = [level for level in levels if level not in names]
    if missing:
        raise ConfigError(
            f"model.roi_levels: {cfg.arch} has feature maps {', '.join(names)}; "
            f"no level {', '.join(missing)}"
        )
    return levels


def _scalar_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "min_size": cfg.min_size,
        "max_size": cfg.max_size,
        "rpn_pre_nms_top_n_train": cfg.rpn_pre_nms_top_n_train,
        "rpn_pre_nms_top_n_test": cfg.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_train": cfg.rpn_post_nms_top_n_train,
        "rpn_post_nms_top_n_test": cfg.rpn_post_nms_top_n_test,
        "rpn_nms_thresh": cfg.rpn_nms_thresh,
        "rpn_fg_iou_thresh": cfg.rpn_fg_iou_thresh,
        "rpn_bg_iou_thresh": cfg.rpn_bg_iou_thresh,
        "rpn_batch_size_per_image": cfg.rpn_batch_size_per_image,
        "rpn_positive_fraction": cfg.rpn_positive_fraction,
        "rpn_score_thresh": 0.0,
        "box_score_thresh": cfg.box_score_thresh,
        "box_nms_thresh": cfg.box_nms_thresh,
        "box_detections_per_img": cfg.box_detections_per_img,
        "box_fg_iou_thresh": cfg.box_fg_iou_thresh,
        "box_bg_iou_thresh": cfg.box_bg_iou_thresh,
        "box_batch_size_per_image": cfg.box_batch_size_per_image,
        "box_positive_fraction": cfg.box_positive_fraction,
    }


def _builder(arch: str) -> tuple[Callable[..., FasterRCNN], Any]:
    """torchvision's builder and weights enum for one of its architectures."""
    detection = torchvision.models.detection
    match arch:
        case "fasterrcnn_resnet50_fpn":
            return detection.fasterrcnn_resnet50_fpn, detection.FasterRCNN_ResNet50_FPN_Weights
        case "fasterrcnn_resnet50_fpn_v2":
            return (
                detection.fasterrcnn_resnet50_fpn_v2,
                detection.FasterRCNN_ResNet50_FPN_V2_Weights,
            )
        case "fasterrcnn_mobilenet_v3_large_fpn":
            return (
                detection.fasterrcnn_mobilenet_v3_large_fpn,
                detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
            )
    raise ConfigError(f"model.arch: {arch!r} is not a torchvision architecture")


def check_weights(cfg: ModelConfig) -> None:
    """Raise WeightsError now when the configured weights cannot be had offline."""
    match cfg.weights:
        case "none":
            return
        case "DEFAULT":
            if cfg.arch in TORCHVISION_ARCHS:
                _require_cached(_builder(cfg.arch)[1].DEFAULT, cfg.arch)
            elif cfg.arch == "resnet18_fpn":
                _require_cached(
                    torchvision.models.ResNet18_Weights.DEFAULT, "resnet18_fpn (ImageNet backbone)"
                )
            else:
                raise WeightsError(
                    f"model.weights=DEFAULT: {cfg.arch} has no pretrained weights; use 'none' "
                    "or a local file"
                )
        case path:
            read_state_dict(Path(path))


def _torchvision_model(cfg: ModelConfig) -> tuple[FasterRCNN, bool]:
    """The torchvision builder's model with its weights (COCO head) and scalar knobs."""
    builder, weights_enum = _builder(cfg.arch)
    kwargs = _scalar_kwargs(cfg)
    tbl = cfg.trainable_backbone_layers
    if cfg.weights == "DEFAULT":
        weights = weights_enum.DEFAULT
        _require_cached(weights, cfg.arch)
        model = builder(weights=weights, trainable_backbone_layers=tbl, **kwargs)
        return model, True
    if cfg.weights == "none":
        model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)
        return model, False
    state = read_state_dict(Path(cfg.weights))
    head = state.get("roi_heads.box_predictor.cls_score.weight")
    if head is None or head.shape[0] == NUM_CLASSES:
        # one of our own checkpoints: the caller loads it after the model is assembled
        return builder(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs
        ), False
    model = builder(
        weights=None,
        weights_backbone=None,
        num_classes=int(head.shape[0]),
        **kwargs,
    )
    model = convert_norm(model, FrozenBatchNorm2d)
    _load(model, state, cfg.weights)
    return model, True


def _own_model(cfg: ModelConfig) -> FasterRCNN:
    norm = _norm_layer(cfg, pretrained=cfg.weights == "DEFAULT")
    backbone = _own_backbone(cfg, norm)
    model = FasterRCNN(backbone, num_classes=NUM_CLASSES, **_scalar_kwargs(cfg))
    return model


def _box_head(model: FasterRCNN, cfg: ModelConfig) -> tuple[nn.Module, bool]:
    """The box head for the configured RoI size and width; rebuilt when either changed."""
    head = model.roi_heads.box_head
    channels = model.backbone.out_channels
    out = cfg.roi_output_size
    if isinstance(head, TwoMLPHead):
        same = head.fc6.in_features == channels * out * out and head.fc7.out_features == (
            cfg.box_head_dim
        )
        if same:
            return head, False
        return TwoMLPHead(channels * out * out, cfg.box_head_dim), True
    if isinstance(head, FastRCNNConvFCHead):
        fc = [m for m in head.modules() if isinstance(m, nn.Linear)]
        same = fc[0].in_features == 256 * out * out and fc[-1].out_features == cfg.box_head_dim
        if same:
            return head, False
        new = FastRCNNConvFCHead(
            (channels, out, out), [256, 256, 256, 256], [cfg.box_head_dim], nn.BatchNorm2d
        )
        return new, True
    raise ConfigError(f"unexpected box head {type(head).__name__}")  # pragma: no cover


def _float32_outputs(
    module: nn.Module, args: Any, output: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    return output[0].float(), output[1].float()


def _float32_level_outputs(
    module: nn.Module, args: Any, output: tuple[list[torch.Tensor], list[torch.Tensor]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [t.float() for t in output[0]], [t.float() for t in output[1]]


def build_model(cfg: ModelConfig) -> FasterRCNN:
    """A Faster R-CNN for 11 classes (background + digits 0-9) with the configured knobs."""
    own_weights_file = cfg.weights not in ("DEFAULT", "none")
    if cfg.arch in TORCHVISION_ARCHS:
        model, pretrained = _torchvision_model(cfg)
        if cfg.backbone_norm != "auto":
            model = convert_norm(model, _norm_layer(cfg, pretrained))
    else:
        model = _own_model(cfg)
        pretrained = cfg.weights == "DEFAULT"

    generator = anchor_generator(cfg)
    new_anchors = generator.num_anchors_per_location()[0]
    old_head: RPNHead = model.rpn.head
    old_anchors = old_head.cls_logits.out_channels
    model.rpn.anchor_generator = generator
    if new_anchors != old_anchors:
        model.rpn.head = RPNHead(
            model.backbone.out_channels, new_anchors, conv_depth=len(old_head.conv)
        )
        if pretrained:
            log.info(
                "rebuilt the RPN head for %d anchors per location (pretrained head has %d); "
                "it trains from scratch",
                new_anchors,
                old_anchors,
            )
    # under autocast the RPN head's bf16 deltas would make torchvision decode every proposal
    # in bf16 (boxes.to(rel_codes.dtype): 8 bits of mantissa, steps of 4 px between 512 and
    # 1024 px): decode, clip and NMS the proposals in float32
    model.rpn.head.register_forward_hook(_float32_level_outputs)

    levels = _roi_featmaps(cfg)
    model.roi_heads.box_roi_pool = MultiScaleRoIAlign(
        featmap_names=levels, output_size=cfg.roi_output_size, sampling_ratio=cfg.roi_sampling_ratio
    )
    box_head, rebuilt = _box_head(model, cfg)
    if rebuilt and pretrained:
        log.info(
            "rebuilt the box head (%d wide, RoI %d); it trains from scratch",
            cfg.box_head_dim,
            cfg.roi_output_size,
        )
    model.roi_heads.box_head = box_head
    model.roi_heads.box_predictor = FastRCNNPredictor(cfg.box_head_dim, NUM_CLASSES)
    # under autocast the predictor would hand bf16/fp16 scores and deltas to the box decoding
    # and NMS: keep the post-processing (and the threshold search's replay of it) in float32
    model.roi_heads.box_predictor.register_forward_hook(_float32_outputs)

    if own_weights_file:
        state = read_state_dict(Path(cfg.weights))
        head = state.get("roi_heads.box_predictor.cls_score.weight")
        if head is None or head.shape[0] == NUM_CLASSES:
            _load(model, state, cfg.weights)
    return model


def set_thresholds(model: FasterRCNN, *, score: float, nms: float, detections: int) -> None:
    """Change the RoI heads' post-processing thresholds of a built model."""
    model.roi_heads.score_thresh = score
    model.roi_heads.nms_thresh = nms
    model.roi_heads.detections_per_img = detections


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "FEATURE_MAPS",
    "FEATURE_STRIDES",
    "anchor_generator",
    "anchor_sizes_per_level",
    "build_model",
    "check_model",
    "check_weights",
    "convert_norm",
    "count_parameters",
    "hub_checkpoint_path",
    "read_state_dict",
    "set_thresholds",
]
