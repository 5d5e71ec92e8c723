"""A dataset's identity, as a training run records it: its name, where it lives, a digest of
its annotations, and the size of each split the run used."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitexp.config import DataConfig
from digitexp.data.splits import DataBundle, Split

DIGEST_CHARS = 12


@dataclass(frozen=True)
class DatasetFingerprint:
    name: str  # the data root's folder name
    root: str  # the data root, absolute
    digest: str  # of the annotation files (test image names when the test split has none)
    sizes: dict[str, int]  # images and digits per split used, e.g. {"train_images": 2000, ...}


def _digest_split(split: Split, sha: Any) -> None:
    sha.update(split.name.encode() + b"\0")
    if split.json_path is not None:
        with open(split.json_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
    else:
        for record in split.images:
            sha.update(record.file_name.encode() + b"\0")


def fingerprint(cfg: DataConfig, bundle: DataBundle) -> DatasetFingerprint:
    """The fingerprint of ``bundle`` (the data of ``cfg``): the digest changes when any
    annotation changes; the sizes are those of the splits as loaded (after the limits)."""
    root = Path(cfg.root).resolve()
    sha = hashlib.sha256()
    sizes: dict[str, int] = {}
    for split in (bundle.train, bundle.valid, bundle.test):
        if split is None:
            continue
        _digest_split(split, sha)
        sizes[f"{split.name}_images"] = len(split.images)
        if split.has_annotations:
            sizes[f"{split.name}_digits"] = int(sum(len(v) for v in split.labels.values()))
    return DatasetFingerprint(root.name, str(root), sha.hexdigest()[:DIGEST_CHARS], sizes)
