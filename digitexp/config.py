"""Frozen configuration dataclasses, the one override path, and flattening for MLflow.

Every knob the HW2 report turns lives here, next to the ones a practitioner needs beside
them. Defaults are torchvision's where the report says nothing; :func:`seed_config` returns
the report's final setup (its Tables 1 and 8).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import re
import shlex
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from digitexp.errors import ConfigError

Preprocess = Literal["none", "color", "binary"]
Arch = Literal[
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "resnet18_fpn",
    "tiny_fpn",
]
BackboneNorm = Literal["auto", "frozen", "batch"]
AnchorLayout = Literal["per_level", "every_level"]
Optimizer = Literal["adamw", "sgd"]
Scheduler = Literal["step", "cosine", "none"]
LrScaling = Literal["none", "linear"]
CocoBackend = Literal["pycocotools", "faster_coco_eval"]

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how images are prepared before the model sees them."""

    root: str = "data/hw2"
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test"
    # Use only the first N images of a split (0 = all); for smoke runs on small machines.
    train_limit: int = 0
    valid_limit: int = 0
    test_limit: int = 0
    # Clip boxes that stick out of their image instead of rejecting the file.
    clip_boxes: bool = False
    # Preprocessing: none | color (ColorJitter + RandomGrayscale, train only)
    # | binary (OpenCV adaptive mean threshold, inverted, every split).
    preprocess: Preprocess = "none"
    color_brightness: float = 0.2
    color_contrast: float = 0.2
    color_saturation: float = 0.2
    color_hue: float = 0.1
    grayscale_p: float = 0.1
    binary_block_size: int = 11
    binary_c: float = 2.0
    # ImageNet Normalize applied before the model, whose own transform normalizes again.
    # The report did this; it is a visible flag so an ablation can turn it off.
    pre_normalize: bool = False
    # Decode every image once into one shared uint8 buffer (RAM) instead of per epoch.
    cache_images: bool = False
    # Group images of similar aspect ratio into batches to cut padding.
    group_by_aspect_ratio: bool = False

    def __post_init__(self) -> None:
        for key in ("train_limit", "valid_limit", "test_limit"):
            _require(getattr(self, key) >= 0, f"data.{key}", "must be >= 0 (0 = all images)")
        _require(
            self.binary_block_size >= 3 and self.binary_block_size % 2 == 1,
            "data.binary_block_size",
            "must be an odd integer >= 3 (OpenCV adaptiveThreshold)",
        )
        _require(0.0 <= self.grayscale_p <= 1.0, "data.grayscale_p", "must be in [0, 1]")
        _require(0.0 <= self.color_hue <= 0.5, "data.color_hue", "must be in [0, 0.5]")
        for key in ("color_brightness", "color_contrast", "color_saturation"):
            _require(getattr(self, key) >= 0.0, f"data.{key}", "must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """Faster R-CNN architecture and its RPN / RoI-head knobs (torchvision names)."""

    arch: Arch = "fasterrcnn_resnet50_fpn"
    # "DEFAULT" (torchvision's COCO weights from the torch hub cache), "none", or a local file.
    weights: str = "none"
    # Backbone layers left trainable (None = torchvision's choice: 3 with weights, all without).
    trainable_backbone_layers: int | None = None
    # auto = FrozenBatchNorm with pretrained weights, BatchNorm from scratch.
    backbone_norm: BackboneNorm = "auto"
    # Channels of the FPN and width of the box head's two MLP layers (own backbones only
    # change the FPN; a box head other than 1024 is rebuilt and trained from scratch).
    fpn_channels: int = 256
    box_head_dim: int = 1024
    min_size: int = 800
    max_size: int = 1333
    # Anchor sizes: one per feature map (torchvision: ((32,), (64,), ...)) with anchor_layout
    # per_level, the count must match the backbone's feature maps (5; MobileNet: 3); with
    # every_level, every size on every map, as torchvision's MobileNet detector does.
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    anchor_layout: AnchorLayout = "per_level"
    # Anchor aspect ratios, height / width as torchvision defines them (2.0 = tall).
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    box_nms_thresh: float = 0.5
    box_score_thresh: float = 0.05
    box_detections_per_img: int = 100
    # MultiScaleRoIAlign: FPN levels used by the box head, output size, sampling ratio.
    roi_levels: tuple[int, ...] = (0, 1, 2, 3)
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2

    def __post_init__(self) -> None:
        _require(len(self.anchor_sizes) > 0, "model.anchor_sizes", "must not be empty")
        _require(all(s > 0 for s in self.anchor_sizes), "model.anchor_sizes", "must be > 0")
        _require(len(self.aspect_ratios) > 0, "model.aspect_ratios", "must not be empty")
        _require(all(r > 0 for r in self.aspect_ratios), "model.aspect_ratios", "must be > 0")
        _require(len(self.roi_levels) > 0, "model.roi_levels", "must not be empty")
        _require(
            len(set(self.roi_levels)) == len(self.roi_levels) and min(self.roi_levels) >= 0,
            "model.roi_levels",
            "must be distinct non-negative FPN level indices",
        )
        _require(0 < self.min_size <= self.max_size, "model.min_size", "must be in (0, max_size]")
        _require(
            self.max_size <= MAX_IMAGE_SIDE, "model.max_size", f"must be <= {MAX_IMAGE_SIDE} pixels"
        )
        for key in (
            "rpn_nms_thresh",
            "rpn_fg_iou_thresh",
            "rpn_bg_iou_thresh",
            "rpn_positive_fraction",
            "box_fg_iou_thresh",
            "box_bg_iou_thresh",
            "box_positive_fraction",
            "box_nms_thresh",
            "box_score_thresh",
        ):
            _require(0.0 <= getattr(self, key) <= 1.0, f"model.{key}", "must be in [0, 1]")
        for key in (
            "rpn_pre_nms_top_n_train",
            "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_train",
            "rpn_post_nms_top_n_test",
            "rpn_batch_size_per_image",
            "box_batch_size_per_image",
            "box_detections_per_img",
            "roi_output_size",
            "fpn_channels",
            "box_head_dim",
        ):
            _require(getattr(self, key) > 0, f"model.{key}", "must be > 0")
        tbl = self.trainable_backbone_layers
        _require(
            tbl is None or 0 <= tbl <= 6, "model.trainable_backbone_layers", "must be in [0, 6]"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, stopping, and how the loop runs."""

    epochs: int = 20
    batch_size: int = 8
    optimizer: Optimizer = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    # step: StepLR(step_size, gamma) per epoch; cosine: CosineAnnealingLR(t_max, eta_min).
    scheduler: Scheduler = "step"
    step_size: int = 3
    gamma: float = 0.1
    t_max: int = 20
    eta_min: float = 0.0
    # Linear warm-up over the first N iterations from lr * warmup_factor (0 = off).
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    # Clip the gradient norm to this value (0 = off).
    grad_clip_norm: float = 0.0
    # Stop when val mAP has not improved for this many epochs (0 = never).
    early_stop_patience: int = 5
    # Mixed precision on CUDA (bf16 where supported, fp16 with a GradScaler otherwise).
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    # DataLoader worker processes; -1 = one per CPU of the run's allotment, at most 8.
    workers: int = 2
    # torch's CPU threads: "auto" = the CPUs of the process's affinity (or Slurm's
    # SLURM_CPUS_PER_TASK) divided among the digitexp runs on this machine, counted again each
    # epoch (digitexp/engine/cpus.py); an integer is used as is.
    threads: int | Literal["auto"] = "auto"
    # Read the loss back to the host every N steps (no sync on the other steps).
    log_every: int = 20
    # Stop each epoch after N batches (0 = the whole split); for smoke runs.
    max_steps_per_epoch: int = 0
    eval_batch_size: int = 8
    # channels_last memory format for the backbone's convolutions (CUDA only).
    channels_last: bool = False
    # torch.compile the backbone (CUDA only; off: not measured to help yet).
    compile_backbone: bool = False
    # With N data-parallel processes (torchrun) the effective batch is N x batch_size:
    # "linear" multiplies lr by N (Goyal et al. 2017), "none" keeps it.
    lr_scaling: LrScaling = "none"
    # Deterministic algorithms on the CPU (and cuDNN); slower on a GPU.
    deterministic: bool = False

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "train.epochs", "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _require(self.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1")
        _require(self.lr > 0, "train.lr", "must be > 0")
        _require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _require(self.momentum >= 0, "train.momentum", "must be >= 0")
        _require(self.gamma > 0, "train.gamma", "must be > 0")
        _require(self.eta_min >= 0, "train.eta_min", "must be >= 0")
        _require(
            0 <= self.seed <= SEED_MAX, "train.seed", f"must be in [0, {SEED_MAX}] (NumPy's range)"
        )
        _require(self.step_size >= 1, "train.step_size", "must be >= 1")
        _require(self.t_max >= 1, "train.t_max", "must be >= 1")
        _require(self.warmup_iters >= 0, "train.warmup_iters", "must be >= 0")
        _require(0 < self.warmup_factor <= 1, "train.warmup_factor", "must be in (0, 1]")
        _require(self.grad_clip_norm >= 0, "train.grad_clip_norm", "must be >= 0 (0 = off)")
        _require(self.early_stop_patience >= 0, "train.early_stop_patience", "must be >= 0")
        _require(
            -1 <= self.workers <= 64, "train.workers", "must be in [0, 64] (or -1 = one per core)"
        )
        _require(
            self.threads == "auto" or self.threads >= 1,
            "train.threads",
            "must be >= 1 (or 'auto' = a share of this machine's CPUs)",
        )
        _require(self.log_every >= 1, "train.log_every", "must be >= 1")
        _require(self.max_steps_per_epoch >= 0, "train.max_steps_per_epoch", "must be >= 0")
        _require(
            bool(_DEVICE_RE.match(self.device)),
            "train.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are scored (docs/architecture.md, 'Metrics')."""

    # Task 2: detections with score > this are read as the number.
    score_thresh: float = 0.5
    # Digit accuracy: a prediction counts when its best IoU with the ground truth is > this.
    digit_iou: float = 0.5
    # Digit accuracy: the class-agnostic NMS over each image's predictions before matching,
    # as the report's author ran it (torchvision nms at IoU 0.5); 1.0 turns it off.
    digit_nms_iou: float = 0.5
    coco_backend: CocoBackend = "pycocotools"
    # Class-agnostic NMS before the digits are joined for Task 2 (off, as in the report).
    agnostic_nms: bool = False
    agnostic_nms_iou: float = 0.5
    # pred.json: every detection the model returned instead of those with score >
    # score_thresh (the author's file; README "Submission files").
    submission_all_detections: bool = False

    def __post_init__(self) -> None:
        for key in ("score_thresh", "digit_iou", "digit_nms_iou", "agnostic_nms_iou"):
            _require(0.0 <= getattr(self, key) <= 1.0, f"eval.{key}", "must be in [0, 1]")


@dataclass(frozen=True)
class ExperimentConfig:
    """One run's complete configuration: logged verbatim as params and config.json."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def seed_config() -> ExperimentConfig:
    """The report's final setup: its Table 1 (hyperparameters) and Table 8 (configuration)."""
    return ExperimentConfig(
        data=DataConfig(root="data/hw2", preprocess="none", pre_normalize=True),
        model=ModelConfig(
            arch="fasterrcnn_resnet50_fpn",
            weights="DEFAULT",
            min_size=512,
            max_size=1024,
            anchor_sizes=(4, 8, 12, 24, 48),
            aspect_ratios=(0.25, 0.5, 1.0),
            box_positive_fraction=0.25,
            box_batch_size_per_image=512,
            box_nms_thresh=0.3,
            box_score_thresh=0.5,
            roi_levels=(0, 1, 2, 3),
            roi_output_size=7,
            roi_sampling_ratio=2,
        ),
        train=TrainConfig(
            epochs=20,
            batch_size=8,
            optimizer="adamw",
            lr=1e-4,
            weight_decay=1e-4,
            scheduler="step",
            step_size=3,
            gamma=0.1,
            early_stop_patience=5,
        ),
        eval=EvalConfig(score_thresh=0.5, digit_iou=0.5),
    )


# --------------------------------------------------------------------------- overrides


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes 0 .. 2**32 - 1
MAX_IMAGE_SIDE = 16384  # model.min_size / max_size: the resize target of the model's transform


def _brief(value: Any) -> str:
    """A value for an error line: at most 60 characters (a 4,000-digit int stays readable)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        text = f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(hint))
    if origin is tuple:
        return f"tuple of {_type_name(get_args(hint)[0])}"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Return ``value`` as type ``hint`` or raise ConfigError naming the key and the type."""
    origin = get_origin(hint)
    bad = ConfigError(f"{key}: expected {_type_name(hint)}, got {_brief(value)}")
    if origin is Literal:
        if value in get_args(hint) and isinstance(value, str):
            return value
        raise bad
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        (item_hint, _ellipsis) = get_args(hint)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, list | tuple):
            raise bad
        try:
            return tuple(_coerce(v, item_hint, key) for v in value)
        except ConfigError:
            raise bad from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ConfigError(f"{key}: {_brief(value)} does not fit in 64 bits")
            return value
        raise bad
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {_brief(value)}")
            return number
        raise bad
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(f"{key}: unsupported field type {hint!r}")  # pragma: no cover


def _section_fields(section: Any) -> dict[str, Any]:
    return get_type_hints(type(section))


def _field_hint(sections: Mapping[str, Any], key: Any) -> Any:
    """The type hint of dotted ``key``; ConfigError naming the key when there is none."""
    if not isinstance(key, str) or key.count(".") != 1:
        raise ConfigError(
            f"{key!r}: override keys are 'section.field' with section one of {', '.join(sections)}"
        )
    section_name, field_name = key.split(".")
    if section_name not in sections:
        raise ConfigError(
            f"{key}: unknown section {section_name!r} (allowed: {', '.join(sections)})"
        )
    hints = _section_fields(sections[section_name])
    if field_name not in hints:
        close = [n for n in hints if n.split("_")[0] == field_name.split("_")[0]]
        hint = f" (did you mean {', '.join(section_name + '.' + c for c in close)}?)"
        raise ConfigError(f"{key}: unknown key{hint if close else ''}")
    return hints[field_name]


def field_type(key: str) -> Any:
    """The type of dotted config key ``key`` (``train.lr`` -> ``float``, ``model.anchor_sizes``
    -> ``tuple[int, ...]``), for tools that generate values for a key (the tuner's spaces).
    An unknown key raises ConfigError as :func:`apply_overrides` does."""
    cfg = ExperimentConfig()
    return _field_hint({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}, key)


def type_name(hint: Any) -> str:
    """A type as error messages name it: ``float``, ``'step' | 'cosine'``, ``tuple of int``."""
    return _type_name(hint)


def apply_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """Return ``cfg`` with dotted overrides applied, e.g. ``{"model.anchor_sizes": (4, 8)}``.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key and
    the allowed type. This is the one override path: specs, presets and ``--set`` use it.
    """
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    changes: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in overrides.items():
        hint = _field_hint(sections, key)
        section_name, field_name = key.split(".")
        changes[section_name][field_name] = _coerce(value, hint, key)
    new_sections = {
        name: dataclasses.replace(section, **changes[name]) if changes[name] else section
        for name, section in sections.items()
    }
    return dataclasses.replace(cfg, **new_sections)


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value``; the value goes through ``ast.literal_eval``.

    A value that is not a Python literal is taken as a plain string (``data.root=data/x``).
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--set`` items as a dict; a key given twice with different values is refused (which
    one was meant?)."""
    out: dict[str, Any] = {}
    for item in items:
        key, value = parse_set(item)
        if key in out and out[key] != value:
            raise ConfigError(
                f"--set {key}: given twice ({_brief(out[key])} and {_brief(value)}); keep one"
            )
        out[key] = value
    return out


def format_set(key: str, value: Any) -> str:
    """One ``--set`` item that :func:`parse_set` reads back as ``(key, value)``, quoted for a
    shell where needed: ``train.epochs=3``, ``model.anchor_sizes=4,8,16``, ``data.root=data/x``."""
    if isinstance(value, tuple | list):
        text = ",".join(repr(v) for v in value) + ("," if len(value) == 1 else "")
        text = text or "()"
    elif isinstance(value, str) and parse_set(f"{key}={value}")[1] == value:
        text = value
    else:
        text = repr(value)
    return shlex.quote(f"{key}={text}")


# --------------------------------------------------------------------------- flatten


def to_dict(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Nested plain dict (tuples as lists): what config.json holds."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Rebuild a config from :func:`to_dict` output (e.g. a logged config.json)."""
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a mapping of fields")
        for name, value in values.items():
            flat[f"{section}.{name}"] = value
    return apply_overrides(ExperimentConfig(), flat)


def flatten(cfg: ExperimentConfig) -> dict[str, Any]:
    """``{"model.anchor_sizes": (4, 8, 12, 24, 48), "train.lr": 0.0001, ...}``: MLflow params."""
    out: dict[str, Any] = {}
    for section in dataclasses.fields(cfg):
        obj = getattr(cfg, section.name)
        for f in dataclasses.fields(obj):
            out[f"{section.name}.{f.name}"] = getattr(obj, f.name)
    return out


def config_hash(cfg: ExperimentConfig) -> str:
    """Short stable hash of the resolved config (tag ``digitexp.config_hash``)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def diff(base: ExperimentConfig, other: ExperimentConfig) -> dict[str, Any]:
    """Flattened keys whose value in ``other`` differs from ``base``."""
    a, b = flatten(base), flatten(other)
    return {k: v for k, v in b.items() if a[k] != v}


__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_hash",
    "diff",
    "field_type",
    "flatten",
    "from_dict",
    "parse_set",
    "parse_sets",
    "seed_config",
    "to_dict",
    "type_name",
]
