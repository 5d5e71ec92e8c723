"""Convert SVHN "format 1" annotations (``digitStruct.mat``) to COCO JSON in the HW2 format.

``digitStruct.mat`` is a MATLAB v7.3 file, i.e. HDF5. Its group ``digitStruct`` holds two
datasets of shape ``(N, 1)`` with one object reference per image:

* ``name`` -> a uint16 char array holding the file name (``"1.png"``);
* ``bbox`` -> a group with datasets ``height``, ``left``, ``top``, ``width`` and ``label``.
  With one digit each of them holds the value inline (shape ``(1, 1)``); with several digits
  it has shape ``(n, 1)`` and holds references to ``(1, 1)`` datasets with the values.

SVHN label 10 means digit 0. The COCO output uses ``category_id = digit + 1`` (categories
1..10 named "0".."9"), image ids are the file names' integer stems, widths and heights come
from the image files' headers, and boxes are clamped to the image (a box with no area left
is dropped and counted).

h5py is an optional extra (``pip install 'digitexp[svhn]'``); it is imported only when a
``.mat`` file is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.common import files
from digitexp.common.progress import Progress
from digitexp.data.categories import COCO_CATEGORIES, category_of
from digitexp.data.images import read_header
from digitexp.errors import DataError

Box = tuple[float, float, float, float, int]
"""One digit as stored in SVHN: ``(left, top, width, height, label_1_to_10)``."""

Record = tuple[str, list[Box]]
"""One image: ``(file_name, boxes)`` with boxes in file order."""

_FIELDS = ("left", "top", "width", "height", "label")
_H5PY_MISSING = "h5py is needed to read digitStruct.mat: pip install 'digitexp[svhn]'"


@dataclass(frozen=True)
class SvhnCounts:
    """What a conversion produced.

    ``boxes`` counts the annotations written; ``clamped`` those of them that had to be cut
    to the image; ``dropped`` the boxes left out because clamping left no area.
    """

    images: int
    boxes: int
    clamped: int
    dropped: int


@dataclass(frozen=True)
class SvhnConversion(SvhnCounts):
    """Result of :func:`convert`: the counts and the file written."""

    out: Path


# --------------------------------------------------------------------------- reading .mat


def _brief(exc: BaseException) -> str:
    """An exception's message on one line, for a DataError message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise DataError(_H5PY_MISSING) from exc
    return h5py


def _open_mat(h5py: Any, mat_path: Path) -> Any:
    if not mat_path.is_file():
        raise DataError(f"{mat_path}: file not found")
    try:
        is_hdf5 = h5py.is_hdf5(str(mat_path))
    except OSError as exc:
        raise DataError(f"{mat_path}: cannot be read ({_brief(exc)})") from exc
    if not is_hdf5:
        raise DataError(
            f"{mat_path}: not an HDF5 file; expected a MATLAB v7.3 digitStruct.mat (SVHN format 1)"
        )
    try:
        return h5py.File(mat_path, "r")
    except OSError as exc:
        raise DataError(f"{mat_path}: cannot be opened as HDF5 ({_brief(exc)})") from exc


def _reference_array(h5py: Any, group: Any, key: str, mat_path: Path) -> Any:
    """``digitStruct/<key>`` read at once as a flat array of object references."""
    ds = group.get(key)
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{mat_path}: 'digitStruct' has no dataset '{key}'")
    if h5py.check_dtype(ref=ds.dtype) is None:
        raise DataError(f"{mat_path}: 'digitStruct/{key}' does not hold object references")
    return ds[()].reshape(-1)


class _RecordReader:
    """Reads records through h5py's low-level API.

    The high-level ``File[ref]`` / ``Dataset[()]`` calls cost about twice as much per object,
    and the real file holds several hundred thousand tiny objects.
    """

    _READ_ERRORS = (ValueError, KeyError, TypeError, IndexError, OSError, RuntimeError)

    def __init__(self, h5py: Any, f: Any) -> None:
        self._h5py = h5py
        self._fid = f.id
        self._all = h5py.h5s.ALL
        self._ref_class = h5py.h5t.REFERENCE
        self._scalar = np.empty((1, 1), dtype=np.float64)

    def _read(self, dsid: Any, dtype: Any) -> np.ndarray:
        arr = np.empty(dsid.shape, dtype=dtype)
        dsid.read(self._all, self._all, arr)
        return arr

    def _read_scalar(self, ref: Any) -> float:
        """A referenced (1, 1) dataset's value."""
        self._h5py.h5r.dereference(ref, self._fid).read(self._all, self._all, self._scalar)
        return float(self._scalar[0, 0])

    def _name(self, ref: Any) -> str:
        """A MATLAB char array (uint16 code units) as a string."""
        chars = self._read(self._h5py.h5r.dereference(ref, self._fid), np.uint16)
        return "".join(map(chr, chars.reshape(-1).tolist()))

    def _field(self, group_id: Any, key: str) -> list[float]:
        """One bbox field: inline floats, or references to (1, 1) datasets with the values."""
        dsid = self._h5py.h5o.open(group_id, key.encode())
        if dsid.get_type().get_class() != self._ref_class:
            return self._read(dsid, np.float64).reshape(-1).tolist()
        refs = self._read(dsid, self._h5py.ref_dtype).reshape(-1)
        return [self._read_scalar(ref) for ref in refs]

    def record(self, name_ref: Any, bbox_ref: Any, where: str) -> Record:
        """One record; ``where`` is ``"<mat>: record <k>"`` and gains the file name once known."""
        try:
            name = self._name(name_ref)
        except self._READ_ERRORS as exc:
            raise DataError(f"{where}: name cannot be read ({_brief(exc)})") from exc
        if not name:
            raise DataError(f"{where}: empty file name")
        where = f"{where} ({name})"
        try:
            group_id = self._h5py.h5r.dereference(bbox_ref, self._fid)
        except self._READ_ERRORS as exc:
            raise DataError(f"{where}: bbox reference cannot be read ({_brief(exc)})") from exc
        if not isinstance(group_id, self._h5py.h5g.GroupID):
            raise DataError(f"{where}: bbox is not a group")
        columns: dict[str, list[float]] = {}
        for key in _FIELDS:
            if key.encode() not in group_id:
                raise DataError(f"{where}: bbox has no dataset '{key}'")
            try:
                columns[key] = self._field(group_id, key)
            except self._READ_ERRORS as exc:
                raise DataError(f"{where}: bbox '{key}' cannot be read ({_brief(exc)})") from exc
        return name, _boxes(columns, where)


def _check_label(value: float, where: str) -> int:
    label = int(value) if float(value).is_integer() else None
    if label is None or not 1 <= label <= 10:
        raise DataError(f"{where}: label {value:g} is outside 1..10")
    return label


def _boxes(columns: dict[str, list[float]], where: str) -> list[Box]:
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise DataError(f"{where}: bbox fields have different lengths ({detail})")
    return [
        (left, top, width, height, _check_label(label, where))
        for left, top, width, height, label in zip(*(columns[k] for k in _FIELDS), strict=True)
    ]


def _iter_records(mat_path: Path, progress: bool | None) -> Iterator[Record]:
    h5py = _import_h5py()
    with _open_mat(h5py, mat_path) as f:
        group = f.get("digitStruct")
        if not isinstance(group, h5py.Group):
            raise DataError(f"{mat_path}: no 'digitStruct' group (not an SVHN digitStruct.mat)")
        names = _reference_array(h5py, group, "name", mat_path)
        bboxes = _reference_array(h5py, group, "bbox", mat_path)
        if len(names) != len(bboxes):
            raise DataError(
                f"{mat_path}: 'digitStruct' has {len(names)} names but {len(bboxes)} bboxes"
            )
        bar = Progress(len(names), f"reading {mat_path.name}", enabled=progress, unit="img")
        reader = _RecordReader(h5py, f)
        with bar:
            for index, (name_ref, bbox_ref) in enumerate(zip(names, bboxes, strict=True), start=1):
                where = f"{mat_path.name}: record {index}"
                yield reader.record(name_ref, bbox_ref, where)
                bar.update(1)


def read_digit_struct(mat_path: Path, progress: bool | None = False) -> list[Record]:
    """``[(file_name, [(left, top, width, height, label_1_to_10), ...]), ...]`` in file order.

    Raises :class:`DataError` when h5py is missing, the file is missing or not a MATLAB v7.3
    (HDF5) file, the ``digitStruct`` layout is wrong, or a label is outside 1..10.
    """
    return list(_iter_records(Path(mat_path), progress))


# --------------------------------------------------------------------------- to COCO


def _image_id(name: str, where: str) -> int:
    stem = Path(name).stem
    if not stem.isascii() or not stem.isdigit():
        raise DataError(f"{where}: file name stem '{stem}' is not an integer image id")
    return int(stem)


def _image_size(path: Path, images_dir: Path, where: str) -> tuple[int, int]:
    """``(width, height)`` from the image header (no full decode)."""
    if not path.is_file():
        raise DataError(f"{where}: image not found in {images_dir}")
    size = read_header(path)  # the image rules of every split (modes, pixel limit)
    if isinstance(size, str):
        raise DataError(f"{where}: {size}")
    return size


def clamp_box(
    left: float, top: float, width: float, height: float, image_w: int, image_h: int
) -> tuple[list[float], bool] | None:
    """``([x, y, w, h], clamped)`` with the box cut to the image, or ``None`` if no area is left."""
    x1, y1 = max(left, 0.0), max(top, 0.0)
    x2, y2 = min(left + width, float(image_w)), min(top + height, float(image_h))
    if x2 <= x1 or y2 <= y1:
        return None
    clamped = (x1, y1, x2, y2) != (left, top, left + width, top + height)
    return [x1, y1, x2 - x1, y2 - y1], clamped


def category_id(label: int) -> int:
    """SVHN label (1..10, 10 = digit 0) -> HW2 category id (digit + 1)."""
    return category_of(label % 10)


def records_to_coco(
    records: list[Record], images_dir: Path, source: str = "digitStruct.mat"
) -> tuple[dict[str, Any], SvhnCounts]:
    """Build the COCO dict from records read by :func:`read_digit_struct`.

    ``source`` names the annotation file in error messages.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    clamped = dropped = 0
    for index, (name, boxes) in enumerate(records, start=1):
        where = f"{source}: record {index} ({name})"
        image_id = _image_id(name, where)
        if image_id in seen:
            raise DataError(f"{where}: image id {image_id} already used by record {seen[image_id]}")
        seen[image_id] = index
        width, height = _image_size(images_dir / name, images_dir, where)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for left, top, w, h, label in boxes:
            result = clamp_box(left, top, w, h, width, height)
            if result is None:
                dropped += 1
                continue
            bbox, was_clamped = result
            clamped += was_clamped
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "bbox": bbox,
                    "category_id": category_id(label),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    coco = {"images": images, "annotations": annotations, "categories": list(COCO_CATEGORIES)}
    counts = SvhnCounts(len(images), len(annotations), clamped, dropped)
    return coco, counts


def svhn_to_coco(
    mat_path: Path, images_dir: Path, progress: bool | None = False
) -> tuple[dict[str, Any], SvhnCounts]:
    """Read ``mat_path`` and return ``(coco_dict, counts)`` for the images in ``images_dir``.

    Annotation ids run 1.. in file order; digits keep their order within an image.
    """
    mat_path, images_dir = Path(mat_path), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: images folder not found")
    records = read_digit_struct(mat_path, progress=progress)
    return records_to_coco(records, images_dir, source=mat_path.name)


# --------------------------------------------------------------------------- writing


def convert(
    mat_path: Path, images_dir: Path, out: Path, progress: bool | None = None
) -> SvhnConversion:
    """Convert ``mat_path`` to COCO JSON at ``out`` (written atomically) and return the counts.

    ``progress``: a bar over the records (None: in a terminal, not under CI).
    """
    out = Path(out)
    coco, counts = svhn_to_coco(mat_path, images_dir, progress=progress)
    files.write_json(out, coco)
    return SvhnConversion(counts.images, counts.boxes, counts.clamped, counts.dropped, out)
