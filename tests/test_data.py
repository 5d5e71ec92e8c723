"""The HW2/COCO loader and validator, the dataset, the cache, the samplers, `data check`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_clear_line, read_json, run_subprocess, write_json

from digitexp.config import DataConfig
from digitexp.data import (
    DigitDataset,
    EpochBatchSampler,
    aspect_ratio_groups,
    check_split,
    collate,
    image_folder_split,
    load_split,
)
from digitexp.data.summary import split_stats
from digitexp.data.transforms import decode_image
from digitexp.errors import DataError


def test_generated_set_loads(synth_root: Path) -> None:
    train = load_split(synth_root, "train")
    assert len(train.images) == 24
    assert train.has_annotations
    for record in train.images:
        boxes = train.boxes[record.id]
        assert boxes.dtype == np.float32 and boxes.shape[1] == 4
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert set(train.labels[record.id].tolist()) <= set(range(1, 11))
    gt = train.coco_gt()
    raw = read_json(synth_root / "train.json")
    assert len(gt["annotations"]) == len(raw["annotations"])


def test_limit_takes_the_first_images(synth_root: Path) -> None:
    split = load_split(synth_root, "train", limit=5)
    assert [r.id for r in split.images] == [1, 2, 3, 4, 5]
    assert set(split.boxes) == {1, 2, 3, 4, 5}


def test_dataset_returns_uint8_images_and_xyxy_targets(synth_root: Path) -> None:
    split = load_split(synth_root, "valid")
    ds = DigitDataset(split, DataConfig(), train=False)
    image, target = ds[0]
    record = split.images[0]
    assert image.dtype == torch.uint8 and image.shape == (3, record.height, record.width)
    assert ds.get_height_and_width(0) == (record.height, record.width)
    raw = read_json(synth_root / "valid.json")
    anns = [a for a in raw["annotations"] if a["image_id"] == record.id]
    expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
    assert np.allclose(target["boxes"].numpy(), np.array(expected, np.float32).reshape(-1, 4))
    assert target["labels"].tolist() == [a["category_id"] for a in anns]
    assert int(target["image_id"]) == record.id
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_cache_gives_the_same_images(synth_root: Path) -> None:
    split = load_split(synth_root, "train")
    plain = DigitDataset(split, DataConfig(), train=False)
    cached = DigitDataset(split, DataConfig(cache_images=True), train=False)
    calls: list[int] = []
    cache = cached.build_cache(calls.append)
    assert len(calls) == len(split.images) == len(cache)
    expected_bytes = sum(r.width * r.height * 3 for r in split.images)
    assert cache.nbytes == expected_bytes
    for i in range(len(split.images)):
        assert torch.equal(plain[i][0], cached[i][0])


def test_binary_mode_is_applied_at_decode_and_cached(synth_root: Path) -> None:
    split = load_split(synth_root, "valid")
    ds = DigitDataset(split, DataConfig(preprocess="binary", cache_images=True), train=False)
    ds.build_cache()
    image, target = ds[0]
    assert set(image.unique().tolist()) <= {0, 255}
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    plain = DigitDataset(split, DataConfig(), train=False)
    assert torch.equal(target["boxes"], plain[0][1]["boxes"])


def test_color_mode_only_changes_training_images(synth_root: Path) -> None:
    split = load_split(synth_root, "valid")
    cfg = DataConfig(preprocess="color")
    original = DigitDataset(split, DataConfig(), train=True)[0][0]
    assert torch.equal(DigitDataset(split, cfg, train=False)[0][0], original)
    torch.manual_seed(0)
    draws = [DigitDataset(split, cfg, train=True)[0][0] for _ in range(4)]
    assert any(not torch.equal(d, original) for d in draws)
    assert all(d.shape == original.shape and d.dtype == torch.uint8 for d in draws)


def test_test_split_without_annotations(data_copy: Path) -> None:
    (data_copy / "test.json").unlink()
    split = load_split(data_copy, "test", require_annotations=False)
    assert not split.has_annotations
    assert [r.id for r in split.images] == sorted(r.id for r in split.images)
    assert len(split.images) == 8
    folder = image_folder_split(data_copy / "test")
    assert [r.id for r in folder.images] == [r.id for r in split.images]
    with pytest.raises(DataError, match="annotation file"):
        load_split(data_copy, "test")


def test_split_stats(synth_root: Path) -> None:
    stats = split_stats(load_split(synth_root, "train"))
    assert stats.images == 24
    assert sum(stats.digits_per_image.values()) == 24
    assert sum(stats.digit_counts.values()) == stats.boxes
    assert stats.box_aspect_hw[1] > 1.0  # digits are taller than wide


def test_epoch_batch_sampler_is_deterministic_per_epoch() -> None:
    a = EpochBatchSampler(10, 3, seed=1)
    b = EpochBatchSampler(10, 3, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert len(list(a)) == len(a) == 4
    assert sorted(i for batch in a for i in batch) == list(range(10))
    b.set_epoch(3)
    assert list(a) != list(b)


def test_grouped_batches_stay_within_a_group(synth_root: Path) -> None:
    ds = DigitDataset(load_split(synth_root, "train"), DataConfig(), train=True)
    groups = aspect_ratio_groups(ds, num_groups=3)
    sampler = EpochBatchSampler(len(ds), 4, seed=0, groups=groups)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    for batch in batches:
        assert len({groups[i] for i in batch}) == 1


def test_odd_test_image_names(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "test"
    folder.mkdir()
    for name in ("1.png", "01.png", "².png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    with pytest.raises(DataError) as info:
        image_folder_split(folder)
    problems = info.value.problems
    assert any("².png: test image names must be integer ids" in p for p in problems)
    assert any(
        "01.png and 1.png share image id 1" in p or "1.png and 01.png" in p for p in problems
    )


def test_empty_cache_and_sharding_with_few_batches() -> None:
    from digitexp.data import DistributedBatches, ImageCache

    assert len(ImageCache.build([], lambda p: None)) == 0
    shards = [list(DistributedBatches(2, 2, seed=0, num_replicas=4, rank=r)) for r in range(4)]
    assert all(len(s) == 1 for s in shards)  # every rank gets a batch (DDP needs equal counts)


def test_decode_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "1.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"1\.png: cannot decode image"):
        decode_image(bad)


# --------------------------------------------------------------------------- bad input


def _ann(root: Path, edit: Callable[[dict], None], split: str = "train") -> None:
    data = read_json(root / f"{split}.json")
    edit(data)
    write_json(root / f"{split}.json", data)


def _malformed(root: Path) -> None:
    (root / "train.json").write_text('{"images": [}')


def _missing_image(root: Path) -> None:
    (root / "train" / "3.png").unlink()


def _corrupt_image(root: Path) -> None:
    (root / "train" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def _size_mismatch(root: Path) -> None:
    _ann(root, lambda d: d["images"][1].update(width=d["images"][1]["width"] + 7))


def _box_outside(root: Path) -> None:
    def edit(d: dict) -> None:
        ann = d["annotations"][0]
        img = next(i for i in d["images"] if i["id"] == ann["image_id"])
        ann["bbox"] = [img["width"] - 2.0, 1.0, 10.0, 5.0]

    _ann(root, edit)


def _zero_area(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][1].update(bbox=[1.0, 1.0, 0.0, 5.0]))


def _unknown_category(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][2].update(category_id=11))


def _duplicate_image_id(root: Path) -> None:
    _ann(root, lambda d: d["images"][2].update(id=d["images"][1]["id"]))


def _duplicate_annotation_id(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][3].update(id=d["annotations"][0]["id"]))


def _unknown_image_id(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][0].update(image_id=999))


def _bad_bbox(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][0].update(bbox=[1, 2, 3]))


def _empty_split(root: Path) -> None:
    _ann(root, lambda d: d.update(images=[], annotations=[]), split="valid")


def _missing_json(root: Path) -> None:
    (root / "valid.json").unlink()


def _missing_folder(root: Path) -> None:
    import shutil

    shutil.rmtree(root / "valid")


def _images_not_a_list(root: Path) -> None:
    _ann(root, lambda d: d.update(images=5))


def _image_id_a_list(root: Path) -> None:
    _ann(root, lambda d: d["images"][0].update(id=[1]))


def _huge_bbox_number(root: Path) -> None:
    _ann(root, lambda d: d["annotations"][0].update(bbox=[10**400, 1, 2, 3]))


def _no_annotations_key(root: Path) -> None:
    _ann(root, lambda d: d.pop("annotations"))


BAD_INPUTS = [
    (_malformed, ["train.json", "malformed JSON at line 1"]),
    (_missing_image, ["train.json", "image id 3", "image file not found"]),
    (_corrupt_image, ["train.json", "image id 4", "unreadable image"]),
    (_size_mismatch, ["train.json", "image id 2", "size in JSON"]),
    (_box_outside, ["train.json", "annotation id 1", "outside the"]),
    (_zero_area, ["train.json", "annotation id 2", "zero or negative area"]),
    (_unknown_category, ["train.json", "annotation id 3", "unknown category_id 11"]),
    (_duplicate_image_id, ["train.json", "duplicate image id 2"]),
    (_duplicate_annotation_id, ["train.json", "duplicate annotation id 1"]),
    (_unknown_image_id, ["train.json", "image_id 999"]),
    (_bad_bbox, ["train.json", "bbox must be [x, y, w, h]"]),
    (_empty_split, ["valid.json", "has no images"]),
    (_missing_json, ["valid.json", "annotation file of split 'valid' not found"]),
    (_missing_folder, ["valid", "image folder of split 'valid' not found"]),
    (_images_not_a_list, ["train.json", "'images' must be a list"]),
    (_image_id_a_list, ["train.json", "images[0]", "'id' must be an integer"]),
    (_huge_bbox_number, ["train.json", "annotation id 1", "bbox must be"]),
    (_no_annotations_key, ["train.json", "no 'annotations' list"]),
]


@pytest.mark.parametrize(
    ("breaker", "needles"), BAD_INPUTS, ids=[b[0].__name__[1:] for b in BAD_INPUTS]
)
def test_each_bad_input_kind_is_one_clear_line(
    data_copy: Path, breaker: Callable[[Path], None], needles: list[str]
) -> None:
    breaker(data_copy)
    split_name = "valid" if "valid" in needles[0] else "train"
    _, problems = check_split(data_copy, split_name)
    assert problems and all("\n" not in p for p in problems)
    assert all(n in problems[0] for n in needles), problems[0]
    with pytest.raises(DataError) as info:
        load_split(data_copy, split_name)
    assert all(n in str(info.value) for n in needles)


def test_clip_boxes_accepts_boxes_outside(data_copy: Path) -> None:
    _box_outside(data_copy)
    split = load_split(data_copy, "train", clip_boxes=True)
    assert split.clipped_boxes == 1


def test_all_problems_are_listed(data_copy: Path) -> None:
    _zero_area(data_copy)
    _unknown_category(data_copy)
    _missing_image(data_copy)
    _, problems = check_split(data_copy, "train")
    assert len(problems) == 3
    with pytest.raises(DataError, match=r"and 2 more"):
        load_split(data_copy, "train")


def test_data_check_accepts_a_generated_set(synth_root: Path) -> None:
    result = run_subprocess("data", "check", synth_root)
    assert result.code == 0, result.err
    assert "train: 24 images" in result.out
    assert "box h/w" in result.out
    assert f"ok: {synth_root}" in result.out


def test_data_check_rejects_a_broken_set(data_copy: Path) -> None:
    _unknown_category(data_copy)
    result = run_subprocess("data", "check", data_copy)
    assert_one_clear_line(result, "train.json", "unknown category_id 11")


def test_data_check_missing_root(tmp_path: Path) -> None:
    result = run_subprocess("data", "check", tmp_path / "nowhere")
    assert_one_clear_line(result, "data root not found")
