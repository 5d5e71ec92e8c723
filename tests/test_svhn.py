"""Tests for digitexp.data.svhn: a small digitStruct.mat in the real HDF5 layout -> COCO JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

h5py = pytest.importorskip("h5py")

from digitexp.data.svhn import (  # noqa: E402
    SvhnConversion,
    clamp_box,
    convert,
    read_digit_struct,
    svhn_to_coco,
)
from digitexp.errors import DataError  # noqa: E402

Digit = tuple[float, float, float, float, int]  # left, top, width, height, label


def write_digit_struct(path: Path, records: list[tuple[str, list[Digit]]]) -> None:
    """Write ``records`` the way MATLAB v7.3 stores SVHN's digitStruct."""
    ref_dtype = h5py.ref_dtype
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = iter(range(1_000_000))

        def stored(data: np.ndarray) -> object:
            return refs.create_dataset(f"r{next(counter)}", data=data).ref

        group = f.create_group("digitStruct")
        names = group.create_dataset("name", shape=(len(records), 1), dtype=ref_dtype)
        bboxes = group.create_dataset("bbox", shape=(len(records), 1), dtype=ref_dtype)
        for i, (name, digits) in enumerate(records):
            chars = np.array([[ord(c)] for c in name], dtype=np.uint16)
            names[i, 0] = stored(chars)
            box = refs.create_group(f"b{i}")
            for col, key in enumerate(("left", "top", "width", "height", "label")):
                values = [float(d[col]) for d in digits]
                if len(values) == 1:
                    box.create_dataset(key, data=np.array([[values[0]]]))
                else:
                    ds = box.create_dataset(key, shape=(len(values), 1), dtype=ref_dtype)
                    for j, value in enumerate(values):
                        ds[j, 0] = stored(np.array([[value]]))
            bboxes[i, 0] = box.ref


def write_png(path: Path, width: int, height: int) -> None:
    Image.new("RGB", (width, height), (120, 30, 200)).save(path)


RECORDS: list[tuple[str, list[Digit]]] = [
    # one digit, inline values; label 10 is digit 0
    ("1.png", [(5, 4, 10, 20, 10)]),
    # several digits, references; the second sticks out right/bottom, the third is outside
    ("2.png", [(1, 2, 8, 16, 1), (35, 20, 10, 20, 9), (50, 0, 5, 5, 3)]),
    # several digits, one sticks out left/top
    ("17.png", [(-3, -2, 10, 12, 5), (8, 1, 6, 9, 10)]),
]
SIZES = {"1.png": (30, 30), "2.png": (40, 32), "17.png": (20, 15)}


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    mat = tmp_path / "digitStruct.mat"
    write_digit_struct(mat, RECORDS)
    images = tmp_path / "images"
    images.mkdir()
    for name, (w, h) in SIZES.items():
        write_png(images / name, w, h)
    return mat, images


def one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert "digitStruct.mat" in message
    return message


def test_read_digit_struct_inline_and_references(dataset: tuple[Path, Path]) -> None:
    mat, _ = dataset
    records = read_digit_struct(mat)
    assert [name for name, _ in records] == ["1.png", "2.png", "17.png"]
    assert records == RECORDS
    assert all(isinstance(v, float) for _, ds in records for d in ds for v in d[:4])
    assert all(isinstance(d[4], int) for _, ds in records for d in ds)


def test_convert_writes_coco(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    mat, images = dataset
    out = tmp_path / "out" / "train.json"
    result = convert(mat, images, out, progress=False)
    assert result == SvhnConversion(images=3, boxes=5, clamped=2, dropped=1, out=out)
    assert [p.name for p in out.parent.iterdir()] == ["train.json"]  # no temp file left

    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == [1, 2, 17]
    for image in coco.dataset["images"]:
        assert (image["width"], image["height"]) == SIZES[image["file_name"]]
    assert [c["id"] for c in coco.dataset["categories"]] == list(range(1, 11))
    assert [c["name"] for c in coco.dataset["categories"]] == [str(d) for d in range(10)]

    anns = coco.dataset["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4, 5]
    assert [a["image_id"] for a in anns] == [1, 2, 2, 17, 17]
    assert [a["category_id"] for a in anns] == [1, 2, 10, 6, 1]  # label 10 -> digit 0 -> 1
    assert [a["bbox"] for a in anns] == [
        [5, 4, 10, 20],
        [1, 2, 8, 16],
        [35, 20, 5, 12],  # clamped to 40x32
        [0, 0, 7, 10],  # clamped at the left/top
        [8, 1, 6, 9],
    ]
    assert [a["area"] for a in anns] == [200, 128, 60, 70, 54]
    assert all(a["iscrowd"] == 0 for a in anns)
    assert len(coco.getAnnIds(imgIds=[2])) == 2


def test_svhn_to_coco_matches_convert(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    mat, images = dataset
    coco, counts = svhn_to_coco(mat, images)
    out = tmp_path / "x.json"
    convert(mat, images, out, progress=False)
    assert json.loads(out.read_text()) == coco
    assert (counts.images, counts.boxes, counts.clamped, counts.dropped) == (3, 5, 2, 1)


def test_convert_with_progress_requested(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    mat, images = dataset
    assert convert(mat, images, tmp_path / "p.json", progress=True).boxes == 5


def test_clamp_box() -> None:
    assert clamp_box(1, 1, 2, 2, 10, 10) == ([1, 1, 2, 2], False)
    assert clamp_box(-1, 8, 4, 4, 10, 10) == ([0, 8, 3, 2], True)
    assert clamp_box(10, 0, 3, 3, 10, 10) is None
    assert clamp_box(2, 2, 0, 3, 10, 10) is None


def test_missing_image(dataset: tuple[Path, Path]) -> None:
    mat, images = dataset
    (images / "17.png").unlink()
    with pytest.raises(DataError) as err:
        convert(mat, images, images.parent / "o.json", progress=False)
    message = one_line(err)
    assert message == f"digitStruct.mat: record 3 (17.png): image not found in {images}"
    assert not (images.parent / "o.json").exists()


@pytest.mark.parametrize("label", [0, 11])
def test_label_out_of_range(tmp_path: Path, label: int) -> None:
    mat = tmp_path / "digitStruct.mat"
    write_digit_struct(
        mat, [("1.png", [(0, 0, 2, 2, 1)]), ("2.png", [(0, 0, 2, 2, 3), (1, 1, 2, 2, label)])]
    )
    with pytest.raises(DataError) as err:
        read_digit_struct(mat)
    message = one_line(err)
    assert "record 2 (2.png)" in message
    assert f"label {label}" in message


def test_not_hdf5(tmp_path: Path) -> None:
    mat = tmp_path / "digitStruct.mat"
    mat.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + bytes(200))
    with pytest.raises(DataError) as err:
        read_digit_struct(mat)
    assert "not an HDF5 file" in one_line(err)


def test_missing_mat_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_digit_struct(tmp_path / "digitStruct.mat")
    assert "not found" in one_line(err)


def test_missing_group(tmp_path: Path) -> None:
    mat = tmp_path / "digitStruct.mat"
    with h5py.File(mat, "w") as f:
        f.create_group("somethingElse")
    with pytest.raises(DataError) as err:
        read_digit_struct(mat)
    assert "'digitStruct'" in one_line(err)


def test_non_integer_stem(tmp_path: Path) -> None:
    mat = tmp_path / "digitStruct.mat"
    write_digit_struct(mat, [("a1.png", [(0, 0, 2, 2, 1)])])
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "a1.png", 4, 4)
    with pytest.raises(DataError) as err:
        svhn_to_coco(mat, images)
    message = one_line(err)
    assert "record 1 (a1.png)" in message
    assert "not an integer" in message


def test_missing_bbox_field(tmp_path: Path) -> None:
    mat = tmp_path / "digitStruct.mat"
    write_digit_struct(mat, [("1.png", [(0, 0, 2, 2, 1)]), ("2.png", [(0, 0, 2, 2, 1)])])
    with h5py.File(mat, "r+") as f:
        del f["#refs#/b1/label"]
    with pytest.raises(DataError) as err:
        read_digit_struct(mat)
    message = one_line(err)
    assert "record 2 (2.png)" in message
    assert "'label'" in message


def test_h5py_missing(dataset: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    mat, _ = dataset
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError, match=r"pip install 'digitexp\[svhn\]'"):
        read_digit_struct(mat)
