"""HW2 / COCO splits: read and validate every annotation file and image header up front.

Layout: ``ROOT/train.json``, ``ROOT/valid.json``, ``ROOT/train/``, ``ROOT/valid/``,
``ROOT/test/`` (``ROOT/test.json`` optional: the synthetic set has it, HW2 does not; without it
image_id is the file name's integer stem). Boxes are COCO ``[x, y, w, h]`` in pixels;
``category_id`` 1..10 is digit 0..9 (:mod:`digitexp.data.categories`).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.config import DataConfig
from digitexp.data.categories import CATEGORY_IDS, COCO_CATEGORIES
from digitexp.data.images import read_header
from digitexp.errors import DataError, first_line

log = logging.getLogger("digitexp.data")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class Split:
    """A validated split: its images and, when annotated, boxes (xyxy) and labels per image."""

    name: str
    image_dir: Path
    json_path: Path | None
    images: tuple[ImageRecord, ...]
    boxes: Mapping[int, np.ndarray] = field(default_factory=dict)
    labels: Mapping[int, np.ndarray] = field(default_factory=dict)
    clipped_boxes: int = 0

    @property
    def has_annotations(self) -> bool:
        return self.json_path is not None

    def path(self, record: ImageRecord) -> Path:
        return self.image_dir / record.file_name

    def limited(self, n: int) -> Split:
        """The first ``n`` images (0 = all)."""
        if n <= 0 or n >= len(self.images):
            return self
        images = self.images[:n]
        keep = {r.id for r in images}
        return Split(
            name=self.name,
            image_dir=self.image_dir,
            json_path=self.json_path,
            images=images,
            boxes={k: v for k, v in self.boxes.items() if k in keep},
            labels={k: v for k, v in self.labels.items() if k in keep},
            clipped_boxes=self.clipped_boxes,
        )

    def coco_gt(self) -> dict[str, Any]:
        """A COCO ground-truth dict of this split's images (for pycocotools)."""
        images = [
            {"id": r.id, "file_name": r.file_name, "width": r.width, "height": r.height}
            for r in self.images
        ]
        annotations = []
        ann_id = 1
        for r in self.images:
            for box, label in zip(self.boxes.get(r.id, ()), self.labels.get(r.id, ()), strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                w, h = x2 - x1, y2 - y1
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": r.id,
                        "bbox": [x1, y1, w, h],
                        "area": w * h,
                        "category_id": int(label),
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
        return {"images": images, "annotations": annotations, "categories": list(COCO_CATEGORIES)}


# --------------------------------------------------------------------------- validation


INT64 = (-(2**63), 2**63 - 1)  # what a torch / numpy int64 holds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    """An integer id that tensors and arrays hold (int64)."""
    return _is_int(value) and INT64[0] <= value <= INT64[1]


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # e.g. an integer literal past Python's digit limit
        raise DataError(f"{path}: malformed JSON ({first_line(exc)[:200]})") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON (nested too deeply to read)") from None


def _header_sizes(paths: Sequence[Path]) -> list[tuple[int, int] | str]:
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(read_header, paths, chunksize=64))


def _check_images(
    json_path: Path, raw_images: Any, image_dir: Path, problems: list[str]
) -> list[ImageRecord]:
    if not isinstance(raw_images, list):
        problems.append(f"{json_path}: 'images' must be a list")
        return []
    records: list[ImageRecord] = []
    seen_ids: set[int] = set()
    seen_files: set[str] = set()
    for i, img in enumerate(raw_images):
        where = f"{json_path}: images[{i}]"
        if not isinstance(img, dict):
            problems.append(f"{where}: expected an object, got {type(img).__name__}")
            continue
        img_id, file_name = img.get("id"), img.get("file_name")
        width, height = img.get("width"), img.get("height")
        if not _is_id(img_id):
            problems.append(
                f"{where}: 'id' must be an integer of at most 64 bits, got {_short(img_id)}"
            )
            continue
        where = f"{json_path}: image id {img_id}"
        if not isinstance(file_name, str) or not file_name:
            problems.append(f"{where}: 'file_name' must be a non-empty string")
            continue
        where = f"{json_path}: image id {img_id} ({_name(file_name)})"
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            problems.append(f"{where}: 'width' and 'height' must be positive integers")
            continue
        if img_id in seen_ids:
            problems.append(f"{where}: duplicate image id {img_id}")
            continue
        if file_name in seen_files:
            problems.append(f"{where}: duplicate file_name {_short(file_name)}")
            continue
        seen_ids.add(img_id)
        seen_files.add(file_name)
        records.append(ImageRecord(img_id, file_name, width, height))
    sizes = _header_sizes([image_dir / r.file_name for r in records])
    good: list[ImageRecord] = []
    for record, size in zip(records, sizes, strict=True):
        where = f"{json_path}: image id {record.id} ({_name(record.file_name)})"
        if isinstance(size, str):
            problems.append(f"{where}: {size} in {image_dir}")
        elif size != (record.width, record.height):
            problems.append(
                f"{where}: size in JSON is {_short(record.width)}x{_short(record.height)} but "
                "the file is "
                f"{size[0]}x{size[1]}"
            )
        else:
            good.append(record)
    return good


def _check_categories(json_path: Path, raw: Any, problems: list[str]) -> set[int]:
    if raw is None:
        return set(CATEGORY_IDS)
    if not isinstance(raw, list):
        problems.append(f"{json_path}: 'categories' must be a list")
        return set(CATEGORY_IDS)
    ids: set[int] = set()
    for i, cat in enumerate(raw):
        cat_id = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cat_id) or cat_id not in CATEGORY_IDS:
            problems.append(
                f"{json_path}: categories[{i}]: id must be 1..10 (digits 0..9), "
                f"got {_short(cat_id)}"
            )
            continue
        ids.add(cat_id)
    return ids


def _check_annotations(
    json_path: Path,
    raw: Any,
    images: Mapping[int, ImageRecord],
    all_image_ids: set[int],
    categories: set[int],
    clip: bool,
    problems: list[str],
) -> tuple[dict[int, list[list[float]]], dict[int, list[int]], int]:
    boxes: dict[int, list[list[float]]] = {i: [] for i in images}
    labels: dict[int, list[int]] = {i: [] for i in images}
    clipped = 0
    if not isinstance(raw, list):
        problems.append(f"{json_path}: 'annotations' must be a list")
        return boxes, labels, clipped
    seen: set[int] = set()
    for i, ann in enumerate(raw):
        where = f"{json_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            problems.append(f"{where}: expected an object, got {type(ann).__name__}")
            continue
        ann_id, image_id = ann.get("id"), ann.get("image_id")
        bbox, category = ann.get("bbox"), ann.get("category_id")
        if _is_id(ann_id):
            where = f"{json_path}: annotation id {ann_id}"
            if ann_id in seen:
                problems.append(f"{where}: duplicate annotation id {ann_id}")
                continue
            seen.add(ann_id)
        else:
            problems.append(
                f"{where}: 'id' must be an integer of at most 64 bits, got {_short(ann_id)}"
            )
            continue
        if not _is_int(image_id) or image_id not in all_image_ids:
            problems.append(f"{where}: image_id {_short(image_id)} is not an image of this file")
            continue
        if not _is_int(category) or category not in categories:
            problems.append(
                f"{where} (image {image_id}): unknown category_id {_short(category)} "
                "(expected 1..10 = digits 0..9)"
            )
            continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            problems.append(
                f"{where} (image {image_id}): bbox must be [x, y, w, h], got {_short(bbox)}"
            )
            continue
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            problems.append(f"{where} (image {image_id}): box {bbox} has zero or negative area")
            continue
        record = images.get(image_id)
        if record is None:  # the image itself has a problem, reported already
            continue
        x1, y1, x2, y2 = x, y, x + w, y + h
        if not _positive_in_float32(x1, y1, x2, y2):
            problems.append(
                f"{where} (image {image_id}): box {bbox} has no width or height once stored as "
                "float32 (as the model reads boxes)"
            )
            continue
        outside = x1 < 0 or y1 < 0 or x2 > record.width or y2 > record.height
        if outside and not clip:
            problems.append(
                f"{where} (image {image_id}): box {bbox} lies outside the "
                f"{record.width}x{record.height} image (data.clip_boxes=True clips such boxes)"
            )
            continue
        if outside:
            x1, y1 = max(x1, 0.0), max(y1, 0.0)
            x2, y2 = min(x2, float(record.width)), min(y2, float(record.height))
            if x2 - x1 <= 0 or y2 - y1 <= 0 or not _positive_in_float32(x1, y1, x2, y2):
                problems.append(f"{where} (image {image_id}): box {bbox} has no area in the image")
                continue
            clipped += 1
        boxes[image_id].append([x1, y1, x2, y2])
        labels[image_id].append(category)
    return boxes, labels, clipped


def _no_boxes(json_path: Path | None, name: str) -> str:
    return (
        f"{json_path}: split {name!r} has no annotated boxes: a model cannot learn from it and "
        "every score on it would mislead (check the file; a test split without labels has no "
        f"{name}.json)"
    )


def _positive_in_float32(x1: float, y1: float, x2: float, y2: float) -> bool:
    """The box keeps a positive width and height as float32 (torchvision asserts it)."""
    a = np.array([x1, y1, x2, y2], dtype=np.float32)
    return bool(a[2] > a[0] and a[3] > a[1])


def _short(value: Any) -> str:
    """``repr(value)`` cut to 60 characters (a 5,000-digit id stays one readable line)."""
    text = repr(value) if not _is_int(value) or abs(value) < 10**40 else f"{str(value)[:20]}..."
    return text if len(text) <= 60 else text[:57] + "..."


def _name(file_name: str) -> str:
    """A file name as it can be printed on one line."""
    plain = file_name.isprintable() and len(file_name) <= 200
    return file_name if plain else _short(file_name)


def _as_arrays(
    boxes: Mapping[int, list[list[float]]], labels: Mapping[int, list[int]]
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    return (
        {k: np.asarray(v, dtype=np.float32).reshape(-1, 4) for k, v in boxes.items()},
        {k: np.asarray(v, dtype=np.int64).reshape(-1) for k, v in labels.items()},
    )


def _image_only_split(name: str, image_dir: Path, problems: list[str]) -> Split:
    files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    records: list[ImageRecord] = []
    paths: list[Path] = []
    for path in files:
        if not (path.stem.isascii() and path.stem.isdigit()):
            problems.append(f"{path}: test image names must be integer ids (e.g. 17.png)")
            continue
        if len(path.stem) > 18 and int(path.stem) > INT64[1]:
            problems.append(f"{path}: image id {path.stem[:20]}... does not fit in 64 bits")
            continue
        paths.append(path)
    sizes = _header_sizes(paths)
    for path, size in zip(paths, sizes, strict=True):
        if isinstance(size, str):
            problems.append(f"{path}: {size}")
            continue
        records.append(ImageRecord(int(path.stem), path.name, size[0], size[1]))
    records.sort(key=lambda r: r.id)
    for a, b in itertools.pairwise(records):
        if a.id == b.id:
            problems.append(f"{image_dir}: {a.file_name} and {b.file_name} share image id {a.id}")
    return Split(name=name, image_dir=image_dir, json_path=None, images=tuple(records))


def image_folder_split(image_dir: Path, name: str = "images") -> Split:
    """An unannotated split over a folder of images named by integer id (``17.png``)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found")
    problems: list[str] = []
    split = _image_only_split(name, image_dir, problems)
    if not split.images and not problems:
        problems.append(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more, problems)
    return split


def check_split(
    root: Path, name: str, *, require_annotations: bool = True, clip_boxes: bool = False
) -> tuple[Split | None, list[str]]:
    """Validate one split and return it with every problem found (one line each)."""
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        return None, [f"{root}: data root not found (see README: 'Getting the data')"]
    image_dir = root / name
    json_path = root / f"{name}.json"
    if not image_dir.is_dir():
        return None, [f"{image_dir}: image folder of split {name!r} not found"]
    if not json_path.exists():
        if require_annotations:
            return None, [f"{json_path}: annotation file of split {name!r} not found"]
        split = _image_only_split(name, image_dir, problems)
        if not split.images:
            problems.append(f"{image_dir}: split {name!r} has no images")
        return split, problems
    try:
        raw = _read_json(json_path)
    except DataError as exc:
        return None, [str(exc)]
    if not isinstance(raw, dict):
        return None, [f"{json_path}: expected a COCO object with images/annotations/categories"]
    categories = _check_categories(json_path, raw.get("categories"), problems)
    records = _check_images(json_path, raw.get("images"), image_dir, problems)
    raw_images = raw.get("images")
    raw_ids = {
        img.get("id")
        for img in (raw_images if isinstance(raw_images, list) else [])
        if isinstance(img, dict) and _is_int(img.get("id"))
    }
    by_id = {r.id: r for r in records}
    if "annotations" not in raw:
        problems.append(f"{json_path}: no 'annotations' list (an annotated split needs one)")
    boxes, labels, clipped = _check_annotations(
        json_path, raw.get("annotations", []), by_id, raw_ids, categories, clip_boxes, problems
    )
    if not raw.get("images"):
        problems.append(f"{json_path}: split {name!r} has no images")
    elif records and not problems and not any(boxes.values()):
        problems.append(_no_boxes(json_path, name))
    box_arrays, label_arrays = _as_arrays(boxes, labels)
    split = Split(
        name=name,
        image_dir=image_dir,
        json_path=json_path,
        images=tuple(records),
        boxes=box_arrays,
        labels=label_arrays,
        clipped_boxes=clipped,
    )
    return split, problems


def load_split(
    root: Path,
    name: str,
    *,
    require_annotations: bool = True,
    clip_boxes: bool = False,
    limit: int = 0,
) -> Split:
    """A validated split; DataError (first problem, with the count of the rest) otherwise."""
    split, problems = check_split(
        root, name, require_annotations=require_annotations, clip_boxes=clip_boxes
    )
    if problems or split is None:
        more = f" (and {len(problems) - 1} more; run: digitexp data check {root})"
        raise DataError(problems[0] + (more if len(problems) > 1 else ""), problems)
    split = split.limited(limit)
    if split.has_annotations and not any(len(b) for b in split.boxes.values()):
        raise DataError(_no_boxes(split.json_path, name) + f" (in its first {limit} images)")
    return split


# --------------------------------------------------------------------------- the three splits


@dataclass(frozen=True)
class DataBundle:
    """The splits one run trains and scores on (test is optional and may lack annotations)."""

    train: Split
    valid: Split
    test: Split | None


def load_data(cfg: DataConfig) -> DataBundle:
    """Validate and load the train, valid and (when its folder exists) test splits."""
    root = Path(cfg.root)
    train = load_split(root, cfg.train_split, clip_boxes=cfg.clip_boxes, limit=cfg.train_limit)
    valid = load_split(root, cfg.valid_split, clip_boxes=cfg.clip_boxes, limit=cfg.valid_limit)
    test = None
    if (root / cfg.test_split).is_dir():
        test = load_split(
            root,
            cfg.test_split,
            require_annotations=False,
            clip_boxes=cfg.clip_boxes,
            limit=cfg.test_limit,
        )
    else:
        log.info("no %s/ folder in %s: no test predictions", cfg.test_split, root)
    return DataBundle(train, valid, test)
