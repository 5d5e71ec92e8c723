"""Tests for digitexp.data.synth: HW2 COCO layout, exact boxes, determinism, argument checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from digitexp.data import synth
from digitexp.data.synth import (
    SynthOptions,
    SynthSummary,
    available_fonts,
    generate,
    render_layers,
    render_sample,
    split_index,
    writer,
)
from digitexp.errors import ConfigError, DataError

COUNTS = {"train": 12, "valid": 4, "test": 4}
# Geometry and layout stay random; only the effects that spread or distort ink are off.
CLEAN = SynthOptions(blur_prob=0.0, lowres_prob=0.0, jpeg_prob=0.0, hard_fraction=0.0)


def load(out: Path, split: str) -> dict:
    return json.loads((out / f"{split}.json").read_text())


def pixels(out: Path, split: str, image_id: int) -> np.ndarray:
    with Image.open(out / split / f"{image_id}.png") as im:
        return np.asarray(im.convert("RGB"))


def assert_tight(mask: np.ndarray, box: tuple[float, float, float, float]) -> None:
    """The box holds 90% of the digit's mask and every edge of it touches the mask."""
    x, y, bw, bh = box
    assert bw >= 1 and bh >= 1
    x0, y0, x1, y1 = int(x), int(y), int(x + bw), int(y + bh)
    assert mask[y0:y1, x0:x1].sum() >= 0.9 * mask.sum()
    for edge in (mask[y0, x0:x1], mask[y1 - 1, x0:x1], mask[y0:y1, x0], mask[y0:y1, x1 - 1]):
        assert edge.max() > 0.08


@pytest.fixture(scope="module")
def gen_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    out = tmp_path_factory.mktemp("a")
    return out, generate(out, COUNTS, seed=0, workers=1, progress=False)


@pytest.fixture(scope="module")
def gen_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b")
    generate(out, COUNTS, seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def gen_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c")
    generate(out, {"train": 12}, seed=1, workers=1, progress=False)
    return out


def test_summary(gen_a: tuple[Path, SynthSummary]) -> None:
    out, summary = gen_a
    assert summary.out == out
    assert [(s.name, s.images) for s in summary.splits] == list(COUNTS.items())
    for split in summary.splits:
        assert split.boxes == len(load(out, split.name)["annotations"])
    assert summary.seconds > 0 and summary.images_per_second > 0


@pytest.mark.parametrize("split", list(COUNTS))
def test_pycocotools_loads(gen_a: tuple[Path, SynthSummary], split: str) -> None:
    out, _ = gen_a
    coco = COCO(str(out / f"{split}.json"))
    assert sorted(coco.getImgIds()) == list(range(1, COUNTS[split] + 1))
    assert sorted(coco.getCatIds()) == list(range(1, 11))
    assert [c["name"] for c in coco.loadCats(list(range(1, 11)))] == list("0123456789")


@pytest.mark.parametrize("split", list(COUNTS))
def test_layout_images_and_boxes(gen_a: tuple[Path, SynthSummary], split: str) -> None:
    out, _ = gen_a
    data = load(out, split)
    images = {im["id"]: im for im in data["images"]}
    assert list(images) == list(range(1, COUNTS[split] + 1))
    for image_id, im in images.items():
        assert im["file_name"] == f"{image_id}.png"
        with Image.open(out / split / im["file_name"]) as pil:
            assert pil.size == (im["width"], im["height"])
            assert pil.mode == "RGB"
        assert 32 <= im["height"] <= 160
    ann_ids = [a["id"] for a in data["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    per_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert 1 <= a["category_id"] <= 10
        assert a["iscrowd"] == 0 and a["area"] == pytest.approx(w * h)
        per_image.setdefault(a["image_id"], []).append(a)
    assert set(per_image) == set(images)  # every image has a number
    for anns in per_image.values():
        assert 1 <= len(anns) <= 5
        centres = [a["bbox"][0] + a["bbox"][2] / 2 for a in anns]
        assert centres == sorted(centres)  # left to right


def test_same_seed_identical_any_workers(gen_a: tuple[Path, SynthSummary], gen_b: Path) -> None:
    out_a, _ = gen_a
    for split, count in COUNTS.items():
        assert (out_a / f"{split}.json").read_bytes() == (gen_b / f"{split}.json").read_bytes()
        for image_id in range(1, count + 1):
            assert np.array_equal(pixels(out_a, split, image_id), pixels(gen_b, split, image_id))


def test_other_seed_differs(gen_a: tuple[Path, SynthSummary], gen_c: Path) -> None:
    out_a, _ = gen_a
    assert (out_a / "train.json").read_bytes() != (gen_c / "train.json").read_bytes()
    same = [
        pixels(out_a, "train", i).shape == pixels(gen_c, "train", i).shape
        and np.array_equal(pixels(out_a, "train", i), pixels(gen_c, "train", i))
        for i in range(1, 13)
    ]
    assert not any(same)


def test_render_is_deterministic() -> None:
    a = render_layers(np.random.default_rng([7, 0, 3]))
    b = render_layers(np.random.default_rng([7, 0, 3]))
    assert np.array_equal(a.image, b.image)
    assert a.boxes == b.boxes and a.digits == b.digits
    image, boxes, digits = render_sample(np.random.default_rng([7, 0, 3]))
    assert np.array_equal(np.asarray(image), a.image)
    assert boxes == a.boxes and digits == a.digits


def test_boxes_hold_the_digits_ink() -> None:
    """Image with digits minus the same image without them = ink; it must sit in the boxes."""
    for i in range(40):
        with_digits = render_layers(np.random.default_rng([3, 9, i]), CLEAN)
        without = render_layers(np.random.default_rng([3, 9, i]), CLEAN, draw_digits=False)
        assert with_digits.boxes == without.boxes
        diff = np.abs(with_digits.image.astype(int) - without.image.astype(int)).max(axis=2)
        ink = diff > 40
        h, w = diff.shape
        covered = np.zeros_like(ink)
        for x, y, bw, bh in with_digits.boxes:
            x0, y0 = max(int(x) - 1, 0), max(int(y) - 1, 0)
            x1, y1 = min(int(x + bw) + 1, w), min(int(y + bh) + 1, h)
            covered[y0:y1, x0:x1] = True
            assert ink[int(y) : int(y + bh), int(x) : int(x + bw)].any(), f"sample {i}: empty box"
        assert not (ink & ~covered).any(), f"sample {i}: digit ink outside the boxes"
        for mask, box in zip(with_digits.masks, with_digits.boxes, strict=True):
            assert_tight(mask, box)


@pytest.mark.parametrize("height", [16, 32, 160])
def test_masks_inside_boxes_with_default_effects(height: int) -> None:
    options = SynthOptions(min_height=height, max_height=height)
    for i in range(30):
        sample = render_layers(np.random.default_rng([5, 0, i]), options)
        assert len(sample.masks) == len(sample.boxes) == len(sample.digits)
        for mask, box in zip(sample.masks, sample.boxes, strict=True):
            assert_tight(mask, box)


def test_digit_count_and_sizes_follow_options() -> None:
    options = SynthOptions(min_height=40, max_height=60, min_digits=2, max_digits=3)
    seen = set()
    for i in range(40):
        image, boxes, digits = render_sample(np.random.default_rng([1, 1, i]), options)
        assert 2 <= len(digits) <= 3 and len(boxes) == len(digits)
        assert all(0 <= d <= 9 for d in digits)
        assert 40 <= image.height <= 60
        seen.add(len(digits))
    assert seen == {2, 3}


def test_default_digit_counts_and_shapes() -> None:
    counts = np.zeros(6, dtype=int)
    wide = 0
    aspects = []
    for i in range(150):
        image, boxes, digits = render_sample(np.random.default_rng([2, 0, i]))
        counts[len(digits)] += 1
        wide += image.width > image.height
        for (_, _, bw, bh), digit in zip(boxes, digits, strict=True):
            assert 0.25 * image.height <= bh <= 0.95 * image.height
            if digit != 1:
                aspects.append(bh / bw)
    assert counts[0] == 0 and counts[1:4].sum() > 0.7 * counts.sum() and counts[5] < counts[2]
    assert wide > 100  # mostly wider than tall
    assert 1.4 <= float(np.median(aspects)) <= 2.6  # tall digits


def test_fonts_come_from_matplotlib() -> None:
    fonts = available_fonts()
    names = {f.name for f in fonts}
    assert {"DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "cmr10"} <= names
    assert not names & {"cmex10", "cmsy10", "cmmi10", "LastResort-Regular", "LastResortHE-Regular"}
    assert all(Path(f.path).parent == synth.font_dir() for f in fonts)


def test_split_index_is_stable() -> None:
    assert (split_index("train"), split_index("valid"), split_index("test")) == (0, 1, 2)
    assert split_index("extra") == split_index("extra") >= 3
    assert split_index("extra") != split_index("extra2")


@pytest.mark.parametrize(
    "counts",
    [{}, {"train": 0}, {"train": -3}, {"train": 2.5}, {"train": True}, {"../x": 2}, {"": 1}],
)
def test_bad_counts_raise(tmp_path: Path, counts: dict) -> None:
    with pytest.raises(ConfigError):
        generate(tmp_path, counts, progress=False)


def test_bad_seed_and_workers_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate(tmp_path, {"train": 1}, seed=-1, progress=False)
    with pytest.raises(ConfigError):
        generate(tmp_path, {"train": 1}, workers=0, progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_height": 100, "max_height": 50},
        {"min_height": 4},
        {"min_digits": 0},
        {"min_digits": 4, "max_digits": 2},
        {"max_digits": 11},
        {"min_digit_fraction": 0.9, "max_digit_fraction": 0.5},
        {"blur_prob": 1.5},
        {"max_rotation": -1.0},
    ],
)
def test_bad_options_raise(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SynthOptions(**kwargs)


def test_output_folder_that_is_a_file_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError):
        generate(blocker, {"train": 1}, progress=False)


def test_failed_generation_leaves_no_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.json").write_text("{}")  # stale result of an older run
    real = writer.render_layers

    def failing(rng: np.random.Generator, options: SynthOptions) -> synth.RenderedSample:
        if failing.calls == 3:
            raise RuntimeError("boom")
        failing.calls += 1
        return real(rng, options)

    failing.calls = 0
    monkeypatch.setattr(writer, "render_layers", failing)
    with pytest.raises(RuntimeError):
        generate(tmp_path, {"train": 6}, workers=1, progress=False)
    assert not (tmp_path / "train.json").exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
