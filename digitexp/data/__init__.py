"""Datasets: HW2/COCO splits validated up front, the torch Dataset and samplers, transforms,
the digit category table, and two dataset writers (synthetic house numbers, SVHN conversion).

This package imports nothing of the training engine, tracking, search, launch, report or CLI.
"""

from digitexp.data.categories import CATEGORY_IDS, COCO_CATEGORIES, NUM_CLASSES
from digitexp.data.dataset import DigitDataset, ImageCache, collate
from digitexp.data.images import MAX_IMAGE_PIXELS, decode_rgb, read_header
from digitexp.data.sampling import (
    DistributedBatches,
    EpochBatchSampler,
    aspect_ratio_groups,
    batches_of,
)
from digitexp.data.splits import (
    DataBundle,
    ImageRecord,
    Split,
    check_split,
    image_folder_split,
    load_data,
    load_split,
)
from digitexp.data.verification import split_problems, verify_images

__all__ = [
    "CATEGORY_IDS",
    "COCO_CATEGORIES",
    "MAX_IMAGE_PIXELS",
    "NUM_CLASSES",
    "DataBundle",
    "DigitDataset",
    "DistributedBatches",
    "EpochBatchSampler",
    "ImageCache",
    "ImageRecord",
    "Split",
    "aspect_ratio_groups",
    "batches_of",
    "check_split",
    "collate",
    "decode_rgb",
    "image_folder_split",
    "load_data",
    "load_split",
    "read_header",
    "split_problems",
    "verify_images",
]
