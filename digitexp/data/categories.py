"""The digit categories: one table for every reader and writer of COCO files.

``category_id`` 1..10 means digit 0..9 (SVHN's label 10 is digit 0); label 0 of the model is the
background, so a detector has ``NUM_CLASSES`` = 11 outputs.
"""

from __future__ import annotations

DIGITS = "0123456789"
CATEGORY_IDS = tuple(range(1, 11))
NUM_CLASSES = 11  # background + 10 digits
COCO_CATEGORIES: tuple[dict[str, object], ...] = tuple(
    {"id": d + 1, "name": str(d)} for d in range(10)
)


def category_of(digit: int) -> int:
    """The COCO category id of a digit (0..9 -> 1..10)."""
    return digit + 1


def digit_of(category_id: int) -> int:
    """The digit of a COCO category id (1..10 -> 0..9)."""
    return category_id - 1
