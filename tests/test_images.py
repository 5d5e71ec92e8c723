"""Image files: modes converted to 8-bit RGB with their pixels intact or refused in one line,
the pixel limit, and every image decoded once before a run (remembered beside the data)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitexp.data import decode_rgb, load_split, read_header, verify_images
from digitexp.data.images import MAX_IMAGE_PIXELS
from digitexp.data.verification import RECORD_NAME, decode_problems, unverified
from digitexp.errors import DataError


def test_a_16_bit_gradient_keeps_its_values(tmp_path: Path) -> None:
    """Pillow's own convert("RGB") clips 16-bit grey to white (a nearly constant image); the
    decoder scales it to 8 bits instead: every value v reads round(v / 257)."""
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    path = tmp_path / "g16.png"
    Image.fromarray(gradient).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
        clipped = np.asarray(img.convert("RGB"))
    assert len(np.unique(clipped)) < 16  # what the report's code would have trained on
    rgb = decode_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 256, 3)
    expected = np.round(gradient.astype(np.float64) / 257).astype(np.uint8)
    assert np.array_equal(rgb[:, :, 0], expected)
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 2])
    assert len(np.unique(rgb)) == 256


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("1", "PNG"), ("L", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG")],
)
def test_other_modes_convert_as_pillow_converts_them(tmp_path: Path, mode: str, fmt: str) -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    path = tmp_path / f"x.{fmt.lower()}"
    rgb.convert(mode).save(path, format=fmt)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    decoded = decode_rgb(path)
    assert np.array_equal(decoded, expected)
    assert decoded.std() > 0  # not a constant image


@pytest.mark.parametrize(
    ("array", "mode"),
    [(np.full((6, 7), 70_000, np.int32), "I"), (np.full((6, 7), 0.5, np.float32), "F")],
)
def test_modes_without_a_faithful_rgb_form_are_refused(
    tmp_path: Path, array: np.ndarray, mode: str
) -> None:
    path = tmp_path / "x.tif"
    Image.fromarray(array, mode=mode).save(path)
    assert f"unsupported image mode {mode!r}" in str(read_header(path))
    with pytest.raises(DataError, match=f"unsupported image mode '{mode}'"):
        decode_rgb(path)


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` (its pixel data is a stub)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    assert read_header(_png_declaring(tmp_path / "ok.png", side, 1)) == (side, 1)
    problem = read_header(_png_declaring(tmp_path / "big.png", side, side))
    assert isinstance(problem, str) and problem.startswith("oversized image")
    bomb = read_header(_png_declaring(tmp_path / "bomb.png", 30_000, 30_000))
    assert isinstance(bomb, str) and bomb.startswith("oversized image")  # Pillow's guard
    with pytest.raises(DataError, match="oversized image"):
        decode_rgb(tmp_path / "bomb.png")


def test_truncated_pixels_pass_the_header_but_not_the_decode(
    data_copy: Path, tmp_path: Path
) -> None:
    path = data_copy / "train" / "5.png"
    path.write_bytes(path.read_bytes()[:-400])
    assert isinstance(read_header(path), tuple)
    ((bad, problem),) = decode_problems([path, data_copy / "train" / "6.png"], progress=False)
    assert bad == path and problem.startswith("cannot decode image")
    split = load_split(data_copy, "train")
    with pytest.raises(DataError, match=r"5\.png: cannot decode image"):
        verify_images(split, progress=False)


def test_verified_images_are_remembered_and_changes_are_seen(data_copy: Path) -> None:
    split = load_split(data_copy, "train")
    names = [r.file_name for r in split.images]
    folder = data_copy / "train"
    (folder / RECORD_NAME).unlink(missing_ok=True)
    assert unverified(folder, names)[0] == names
    verify_images(split, progress=False)
    record = json.loads((folder / RECORD_NAME).read_text())
    assert sorted(record["files"]) == sorted(names)
    assert unverified(folder, names)[0] == []  # the next run decodes nothing
    # a file changed since (size and mtime move): decoded again, and refused when broken
    path = folder / "7.png"
    path.write_bytes(path.read_bytes()[:-300])
    assert unverified(folder, names)[0] == ["7.png"]
    with pytest.raises(DataError, match=r"7\.png"):
        verify_images(split, progress=False)
    assert unverified(folder, names)[0] == ["7.png"]  # still not trusted
    # a record from other rules, or a damaged one, is not trusted
    (folder / RECORD_NAME).write_text('{"rules": "other", "files": {}}')
    assert len(unverified(folder, names)[0]) == len(names)
    (folder / RECORD_NAME).write_bytes(b"\xff\x00")
    assert len(unverified(folder, names)[0]) == len(names)


def test_a_read_only_data_folder_is_verified_without_a_record(
    synth_root: Path, tmp_path: Path
) -> None:
    """Without write access the images are decoded every time, and nothing fails."""
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    (data / "valid" / RECORD_NAME).unlink(missing_ok=True)
    blocker = data / "valid" / RECORD_NAME
    blocker.mkdir()  # stands in for a read-only folder (root ignores permissions)
    verify_images(load_split(data, "valid"), progress=False)
    assert blocker.is_dir()


def test_data_check_decodes_every_image_unless_headers_only(data_copy: Path, cli) -> None:
    path = data_copy / "valid" / "3.png"
    path.write_bytes(path.read_bytes()[:-500])
    quick = cli("data", "check", data_copy, "--headers-only")
    assert quick.code == 0 and "image headers checked" in quick.out
    full = cli("data", "check", data_copy)
    assert full.code == 2 and "Traceback" not in full.err
    (line,) = [x for x in full.err.splitlines() if x.startswith("error:")]
    assert "3.png" in line and "cannot decode image" in line


def test_a_16_bit_image_in_a_split_decodes_to_its_8_bit_values(data_copy: Path) -> None:
    """A training image swapped for its 16-bit version passes the checks and decodes to the
    8-bit values it was made from."""
    path = data_copy / "train" / "2.png"
    gray = np.asarray(Image.open(path).convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    verify_images(load_split(data_copy, "train"), progress=False)
    decoded = decode_rgb(path)
    assert np.array_equal(decoded[:, :, 1], gray)
