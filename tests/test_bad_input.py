"""The bad-input corpus: every case exits 2 with one clear ``error:`` line, no traceback, no
run left RUNNING, and nothing recorded before lost.

Each case starts from a store that already holds a finished training run (params, metrics,
tags and its ``checkpoints/best.pt``, written by the real trainer's checkpoint code), a fresh
copy of the synthetic data and a good spec; it breaks one thing and runs one command. After
it, the store must hold the earlier run exactly as before. Cases are grouped by category
(:data:`CATEGORIES`); most run in-process through the ``cli`` fixture, the few where a real
process matters (an import-time failure, a pickle, a network timeout) in a subprocess.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import sqlite3
import struct
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import CliResult, Recorded, read_json, run_subprocess, write_json
from PIL import Image

from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

GOOD_SPEC = '''\
"""A question? (bad-input corpus)"""
from digitexp.config import seed_config

BASE = seed_config()
VARIANTS = {"a": {}}
'''


# --------------------------------------------------------------------------- the store


def store_state(db: Path) -> dict[str, set[tuple]]:
    """Everything the store holds about its runs, read with plain sqlite."""
    if not db.is_file():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {
            "runs": set(conn.execute("SELECT run_uuid, name, status, lifecycle_stage FROM runs")),
            "metrics": set(conn.execute("SELECT run_uuid, key, value, step FROM metrics")),
            "params": set(conn.execute("SELECT run_uuid, key, value FROM params")),
            "tags": set(conn.execute("SELECT run_uuid, key, value FROM tags")),
            "experiments": set(conn.execute("SELECT experiment_id, name FROM experiments")),
        }


def assert_nothing_lost(before: dict[str, set[tuple]], after: dict[str, set[tuple]]) -> None:
    """Every row recorded before is still there, unchanged; no run is RUNNING."""
    for table, rows in before.items():
        missing = rows - after.get(table, set())
        assert not missing, (table, sorted(missing)[:3])
    running = [r for r in after.get("runs", ()) if r[2] == "RUNNING"]
    assert running == [], running


def assert_one_error_line(result: CliResult, *needles: str) -> None:
    """Exit 2, no traceback, exactly one ``error:`` line, naming what is wrong."""
    assert "Traceback" not in result.err, result.err[-2000:]
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert result.code == 2, (result.code, result.err[-1500:])
    assert len(errors) == 1, result.err[-1500:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


# --------------------------------------------------------------------------- case helpers


@dataclass
class Case:
    """What a case works on: a data copy, a spec file, its folder, the store, the run."""

    data: Path
    spec: Path
    root: Path
    db: Path
    run_id: str
    parent_id: str
    checkpoint: Path
    env: dict[str, str] = field(default_factory=dict)


def ann(case: Case, edit: Callable[[dict], None], split: str = "train") -> None:
    data = read_json(case.data / f"{split}.json")
    edit(data)
    write_json(case.data / f"{split}.json", data)


def spec(case: Case, body: str | bytes) -> Path:
    if isinstance(body, bytes):
        case.spec.write_bytes(body)
    else:
        case.spec.write_text(textwrap.dedent(body))
    return case.spec


def run(case: Case, *extra: str) -> list[str]:
    return ["run", str(case.spec), "--preset", "smoke", "--data", str(case.data), *extra]


def uri(case: Case, value: str, *argv: str) -> list[str]:
    """Point MLFLOW_TRACKING_URI at ``value`` for this case; the command is ``argv``."""
    case.env["MLFLOW_TRACKING_URI"] = value
    return list(argv)


def image(case: Case, name: str = "5.png", split: str = "train") -> Path:
    return case.data / split / name


def replace_image(case: Case, img: Image.Image, fmt: str, name: str = "5.png") -> None:
    """Replace train image ``name`` by ``img`` (its JSON size updated to match)."""
    path = image(case, name)
    img.save(path, format=fmt)
    image_id = int(Path(name).stem)
    ann(
        case,
        lambda d: next(i for i in d["images"] if i["id"] == image_id).update(
            width=img.width, height=img.height
        ),
    )
    _fit_boxes(case, image_id, img.width, img.height)


def _fit_boxes(case: Case, image_id: int, width: int, height: int) -> None:
    def edit(d: dict) -> None:
        for a in d["annotations"]:
            if a["image_id"] == image_id:
                a["bbox"] = [1.0, 1.0, min(8.0, width - 2.0), min(8.0, height - 2.0)]

    ann(case, edit)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (and holds a tiny, wrong IDAT)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def declared(case: Case, width: int, height: int) -> list[str]:
    """Train image 5 declaring a huge size, the JSON agreeing (only the pixels are missing)."""
    image(case).write_bytes(png_header(width, height))
    ann(
        case,
        lambda d: next(i for i in d["images"] if i["id"] == 5).update(width=width, height=height),
    )
    return run(case)


def truncate(path: Path, keep: float = 1 / 3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def box(case: Case, bbox: list, split: str = "train") -> None:
    ann(case, lambda d: d["annotations"][0].update(bbox=bbox), split)


def raw_json(case: Case, text: str | bytes, split: str = "train") -> None:
    path = case.data / f"{split}.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def make_run_without_checkpoint(case: Case) -> str:
    """A training run (child of an invocation) that never logged a checkpoint."""
    store = TrackingStore(f"sqlite:///{case.db}")
    run_ = store.create_run(
        "recorded",
        "b/s0",
        {names.TAG_KIND: names.KIND_TRAIN, names.TAG_SPEC: "recorded", names.TAG_VARIANT: "b"},
        parent_id=case.parent_id,
    )
    store.end_run(run_.run_id, "KILLED")
    return run_.run_id


def make_run_with_checkpoint(case: Case, content: bytes) -> str:
    """A training run whose checkpoints/best.pt holds ``content``."""
    store = TrackingStore(f"sqlite:///{case.db}")
    run_ = store.create_run(
        "recorded",
        "c/s0",
        {names.TAG_KIND: names.KIND_TRAIN, names.TAG_SPEC: "recorded", names.TAG_VARIANT: "c"},
        parent_id=case.parent_id,
    )
    path = case.root / "best.pt"
    path.write_bytes(content)
    run_.log_artifact(path, names.CHECKPOINTS)
    store.end_run(run_.run_id, "FINISHED")
    return run_.run_id


def checkpoint_bytes(state: object) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    return path


def busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


class Evil:
    def __reduce__(self) -> tuple:
        return (print, ("this would run code",))


def ids(path: Path) -> list[int]:
    return [i["id"] for i in read_json(path)["images"]]


# --------------------------------------------------------------------------- the cases

Prepare = Callable[[Case], list[str]]


@dataclass(frozen=True)
class Bad:
    category: str
    prepare: Prepare
    needles: tuple[str, ...]
    subprocess: bool = False


def _do(*steps: Callable[[], object]) -> None:
    for step in steps:
        step()


CASES: dict[str, Bad] = {}


def case(name: str, category: str, *needles: str, subprocess: bool = False) -> Callable:
    def register(prepare: Prepare) -> Prepare:
        assert name not in CASES, name
        CASES[name] = Bad(category, prepare, needles, subprocess)
        return prepare

    return register


# ---- data content: annotation files and what they say about the images ---------------------

DATA = "data content"


@case("malformed_json", DATA, "train.json", "malformed JSON", subprocess=True)
def _(c: Case) -> list[str]:
    raw_json(c, '{"images": [1,')
    return run(c)


@case("json_not_utf8", DATA, "train.json", "cannot read")
def _(c: Case) -> list[str]:
    raw_json(c, b'{"images": "\xff\xfe"}')
    return run(c)


@case("json_nested_too_deeply", DATA, "train.json", "nested too deeply")
def _(c: Case) -> list[str]:
    raw_json(c, "[" * 200_000 + "]" * 200_000)
    return run(c)


@case("json_integer_past_digit_limit", DATA, "train.json", "malformed JSON")
def _(c: Case) -> list[str]:
    raw_json(c, '{"images": [{"id": ' + "9" * 5000 + "}]}")
    return run(c)


@case("json_top_level_list", DATA, "train.json", "expected a COCO object")
def _(c: Case) -> list[str]:
    raw_json(c, "[]")
    return run(c)


@case("json_is_a_folder", DATA, "train.json", "cannot read")
def _(c: Case) -> list[str]:
    (c.data / "train.json").unlink()
    (c.data / "train.json").mkdir()
    return run(c)


@case("annotations_not_a_list", DATA, "train.json", "'annotations' must be a list")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d.update(annotations={"0": 1}))
    return run(c)


@case("missing_image", DATA, "train.json", "image id 3", "not found")
def _(c: Case) -> list[str]:
    image(c, "3.png").unlink()
    return run(c)


@case("image_is_a_folder", DATA, "image id 3", "a folder, not an image")
def _(c: Case) -> list[str]:
    image(c, "3.png").unlink()
    image(c, "3.png").mkdir()
    return run(c)


@case("image_symlink_loop", DATA, "image id 3", "unreadable image")
def _(c: Case) -> list[str]:
    image(c, "3.png").unlink()
    os.symlink("3.png", image(c, "3.png"))
    return run(c)


@case("size_mismatch", DATA, "train.json", "image id 1", "size in JSON is 999x")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][0].update(width=999))
    return run(c)


@case("negative_width", DATA, "image id 1", "positive integers")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][0].update(width=-4))
    return run(c)


@case("empty_file_name", DATA, "image id 1", "'file_name' must be a non-empty string")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][0].update(file_name=""))
    return run(c)


@case("file_name_with_a_newline", DATA, "image id 1", "\\n")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][0].update(file_name="1\n.png"))
    return run(c)


@case("image_id_past_64_bits", DATA, "train.json", "64 bits")
def _(c: Case) -> list[str]:
    def edit(d: dict) -> None:
        d["images"][0]["id"] = 2**70
        for a in d["annotations"]:
            if a["image_id"] == 1:
                a["image_id"] = 2**70

    ann(c, edit)
    return run(c)


@case("annotation_id_past_64_bits", DATA, "train.json", "64 bits")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["annotations"][0].update(id=-(2**64)))
    return run(c)


@case("annotation_of_no_image", DATA, "train.json", "is not an image of this file")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["annotations"][0].update(image_id=999_999))
    return run(c)


@case("box_outside", DATA, "train.json", "annotation id 1", "outside the")
def _(c: Case) -> list[str]:
    def edit(d: dict) -> None:
        first = d["annotations"][0]
        img = next(i for i in d["images"] if i["id"] == first["image_id"])
        first["bbox"] = [img["width"] - 1.0, 0.0, 9.0, 9.0]

    ann(c, edit)
    return run(c)


@case("zero_area_box", DATA, "annotation id 1", "zero or negative area")
def _(c: Case) -> list[str]:
    box(c, [2, 2, 0, 4])
    return run(c)


@case("box_zero_wide_in_float32", DATA, "annotation id 1", "float32")
def _(c: Case) -> list[str]:
    box(c, [5.0, 2.0, 1e-7, 4.0])  # 5 + 1e-7 is 5 in float32: torchvision would assert
    return run(c)


@case("box_with_nan", DATA, "annotation id 1", "bbox must be [x, y, w, h]")
def _(c: Case) -> list[str]:
    raw = (c.data / "train.json").read_text()
    first = read_json(c.data / "train.json")["annotations"][0]["bbox"]
    raw_json(c, raw.replace(json.dumps(first, separators=(",", ":")), "[NaN, 1, 2, 3]", 1))
    return run(c)


@case("box_with_infinity", DATA, "annotation id 1", "bbox must be [x, y, w, h]")
def _(c: Case) -> list[str]:
    raw = (c.data / "train.json").read_text()
    first = read_json(c.data / "train.json")["annotations"][0]["bbox"]
    raw_json(c, raw.replace(json.dumps(first, separators=(",", ":")), "[1, 1, Infinity, 3]", 1))
    return run(c)


@case("box_with_a_huge_int", DATA, "annotation id 1", "bbox must be [x, y, w, h]")
def _(c: Case) -> list[str]:
    box(c, [1, 1, 10**400, 3])
    return run(c)


@case("box_of_three_numbers", DATA, "annotation id 1", "bbox must be [x, y, w, h]")
def _(c: Case) -> list[str]:
    box(c, [1, 1, 3])
    return run(c)


@case("unknown_category", DATA, "annotation id 1", "unknown category_id 0")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["annotations"][0].update(category_id=0))
    return run(c)


@case("category_table_wrong", DATA, "categories[0]", "1..10")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d.update(categories=[{"id": 11, "name": "x"}]))
    return run(c)


@case("duplicate_image_id", DATA, "train.json", "duplicate image id 1")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][1].update(id=1))
    return run(c)


@case("duplicate_annotation_id", DATA, "train.json", "duplicate annotation id 1")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["annotations"][1].update(id=1))
    return run(c)


@case("empty_split", DATA, "valid.json", "no images")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d.update(images=[], annotations=[]), "valid")
    return run(c)


@case("validation_without_annotations", DATA, "valid.json", "no annotated boxes")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d.update(annotations=[]), "valid")  # Task-2 would read 1.0
    return run(c)


@case("training_without_boxes", DATA, "train.json", "no annotated boxes")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d.update(annotations=[]))
    return run(c)


@case("missing_validation_json", DATA, "valid.json", "not found")
def _(c: Case) -> list[str]:
    (c.data / "valid.json").unlink()
    return run(c)


@case("missing_data_root", DATA, "nowhere", "data root not found")
def _(c: Case) -> list[str]:
    return ["run", str(c.spec), "--preset", "smoke", "--data", str(c.root / "nowhere")]


@case("test_folder_without_images", DATA, "test", "no images")
def _(c: Case) -> list[str]:
    shutil.rmtree(c.data / "test")
    (c.data / "test").mkdir()
    (c.data / "test.json").unlink()
    return run(c)


@case("test_image_not_named_by_id", DATA, "abc.png", "integer ids")
def _(c: Case) -> list[str]:
    (c.data / "test.json").unlink()
    shutil.copy(image(c, "1.png"), c.data / "test" / "abc.png")
    return run(c)


@case("test_image_id_past_64_bits", DATA, "99999999999999999999", "64 bits")
def _(c: Case) -> list[str]:
    (c.data / "test.json").unlink()
    shutil.copy(image(c, "1.png"), c.data / "test" / "99999999999999999999.png")
    return run(c)


@case("data_check_of_a_broken_set", DATA, "train.json", "size in JSON is 999x")
def _(c: Case) -> list[str]:
    ann(c, lambda d: d["images"][0].update(width=999))
    return ["data", "check", str(c.data)]


# ---- image formats: what is inside the files --------------------------------------------

IMAGES = "image formats"


@case("corrupt_image", IMAGES, "train.json", "image id 4", "unreadable image")
def _(c: Case) -> list[str]:
    image(c, "4.png").write_bytes(b"\x89PNG garbage")
    return run(c)


@case("truncated_image", IMAGES, "5.png", "cannot decode image")
def _(c: Case) -> list[str]:
    truncate(image(c))  # the header reads: only a full decode sees it
    return run(c)


@case("truncated_image_in_test", IMAGES, "test", "cannot decode image")
def _(c: Case) -> list[str]:
    truncate(image(c, "2.png", "test"))
    return run(c)


@case("truncated_jpeg", IMAGES, "5.png", "cannot decode image")
def _(c: Case) -> list[str]:
    rgb = np.asarray(Image.open(image(c)).convert("RGB"))
    Image.fromarray(rgb).save(image(c), format="JPEG", quality=95)
    truncate(image(c), 0.5)
    return run(c)


@case("truncated_image_data_check", IMAGES, "5.png", "cannot decode image")
def _(c: Case) -> list[str]:
    truncate(image(c))
    return ["data", "check", str(c.data)]


@case("empty_image_file", IMAGES, "image id 5", "unreadable image")
def _(c: Case) -> list[str]:
    image(c).write_bytes(b"")
    return run(c)


@case("text_file_named_png", IMAGES, "image id 5", "unreadable image")
def _(c: Case) -> list[str]:
    image(c).write_text("digits, honestly\n")
    return run(c)


@case("int32_image", IMAGES, "image id 5", "unsupported image mode 'I'")
def _(c: Case) -> list[str]:
    replace_image(c, Image.fromarray(np.full((20, 30), 70000, np.int32), mode="I"), "TIFF")
    return run(c)


@case("float_image", IMAGES, "image id 5", "unsupported image mode 'F'")
def _(c: Case) -> list[str]:
    replace_image(c, Image.fromarray(np.full((20, 30), 0.5, np.float32), mode="F"), "TIFF")
    return run(c)


@case("lab_image", IMAGES, "image id 5", "unsupported image mode 'LAB'")
def _(c: Case) -> list[str]:
    replace_image(c, Image.new("LAB", (30, 20), (50, 0, 0)), "TIFF")
    return run(c)


@case("decompression_bomb", IMAGES, "image id 5", "oversized image")
def _(c: Case) -> list[str]:
    return declared(c, 20_000, 20_000)  # Pillow's own guard trips at open


@case("image_over_our_pixel_limit", IMAGES, "image id 5", "oversized image", "9000x9000")
def _(c: Case) -> list[str]:
    return declared(c, 9_000, 9_000)  # below Pillow's guard, above digitexp's limit


@case("unsupported_mode_in_predict_folder", IMAGES, "unsupported image mode 'F'")
def _(c: Case) -> list[str]:
    folder = c.root / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30), np.float32), mode="F").save(folder / "1.tif", "TIFF")
    (folder / "1.tif").rename(folder / "1.png")
    return ["predict", c.run_id, "--images", str(folder), "--out", str(c.root / "p")]


@case("truncated_image_in_predict_folder", IMAGES, "cannot decode image")
def _(c: Case) -> list[str]:
    folder = c.root / "images"
    shutil.copytree(c.data / "test", folder)
    truncate(folder / "3.png")
    return ["predict", c.run_id, "--images", str(folder), "--out", str(c.root / "p")]


# ---- specs: spec files are code, and code can be anything --------------------------------

SPECS = "specs"


@case("spec_syntax_error", SPECS, "spec.py", "syntax error at line")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC + "VARIANTS = {\n")
    return run(c)


@case("spec_not_utf8", SPECS, "spec.py", "not UTF-8 text")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.encode() + b"# caf\xe9\n")
    return run(c)


@case("spec_binary", SPECS, "spec.py", "not a text file")
def _(c: Case) -> list[str]:
    spec(c, bytes(range(256)) * 4)
    return run(c)


@case("spec_sys_exit", SPECS, "spec.py", "the spec exits at line 3", "SystemExit 3")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nimport sys\nsys.exit(3)\n')
    return run(c)


@case("anchors_spec_sys_exit", SPECS, "spec.py", "the spec exits at line 3", "SystemExit 3")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nimport sys\nsys.exit(3)\n')
    return ["anchors", str(c.spec), "--out", str(c.root / "anchors")]


@case("spec_bare_system_exit", SPECS, "spec.py", "the spec exits")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nraise SystemExit\n')
    return ["show", str(c.spec)]


@case("spec_raises", SPECS, "spec.py", "line 2", "ZeroDivisionError")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nx = 1 / 0\n')
    return run(c)


@case("spec_recursion", SPECS, "spec.py", "RecursionError")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nexec("f = lambda: f()\\nf()")\n')
    return run(c)


@case("spec_missing_file", SPECS, "nope.py", "spec file not found")
def _(c: Case) -> list[str]:
    return ["run", str(c.root / "nope.py"), "--preset", "smoke"]


@case("spec_is_a_folder", SPECS, "spec file not found")
def _(c: Case) -> list[str]:
    folder = c.root / "folder.py"
    folder.mkdir()
    return ["run", str(folder)]


@case("spec_missing_base", SPECS, "spec.py", "missing BASE")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nVARIANTS = {"a": {}}\n')
    return run(c)


@case("spec_base_not_a_config", SPECS, "BASE must be an ExperimentConfig")
def _(c: Case) -> list[str]:
    spec(c, '"""Q?"""\nBASE = {"train.lr": 1}\nVARIANTS = {"a": {}}\n')
    return run(c)


@case("spec_without_docstring", SPECS, "missing docstring")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.split("\n", 1)[1])
    return run(c)


@case("spec_defines_a_function", SPECS, "defines function 'helper'")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC + "def helper():\n    return 1\n")
    return run(c)


@case("spec_unknown_key", SPECS, "spec.py", "model.anchors: unknown key")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.replace("{}", "{'model.anchors': (4,)}"))
    return run(c)


@case("spec_wrong_type", SPECS, "spec.py", "train.epochs: expected int")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.replace("{}", "{'train.epochs': 'ten'}"))
    return run(c)


@case("spec_empty_variants", SPECS, "spec.py", "VARIANTS must be non-empty")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.replace('{"a": {}}', "{}"))
    return run(c)


@case("spec_variant_name_with_a_space", SPECS, "variant name 'a b'")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC.replace('"a"', '"a b"'))
    return run(c)


@case("spec_negative_seed", SPECS, "SEEDS", "-1")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC + "SEEDS = (0, -1)\n")
    return run(c)


@case("spec_seed_past_64_bits", SPECS, "SEEDS", "is not in [0, 4294967295]")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC + f"SEEDS = ({2**70},)\n")
    return run(c)


@case("spec_unknown_field", SPECS, "unknown spec field 'EPOCHS'")
def _(c: Case) -> list[str]:
    spec(c, GOOD_SPEC + "EPOCHS = 3\n")
    return ["show", str(c.spec)]


# ---- overrides: --set, --preset, --seed, --variant and friends --------------------------

OVERRIDES = "overrides"


def _set(*items: str) -> Prepare:
    return lambda c: run(c, "--set", *items)


for _name, _items, _needles in [
    ("override_unknown_key", ("train.learning_rate=0.1",), ("train.learning_rate: unknown key",)),
    ("override_wrong_type", ("train.epochs=abc",), ("train.epochs: expected int",)),
    ("override_not_key_value", ("train.epochs",), ("expected key=value",)),
    ("override_empty_key", ("=3",), ("empty key",)),
    ("override_unknown_section", ("trainer.lr=1",), ("unknown section 'trainer'",)),
    ("override_infinite_float", ("train.lr=1e999",), ("train.lr", "finite number")),
    ("override_nan_float", ("train.lr=float('nan')",), ("train.lr: expected float",)),
    ("override_int_past_64_bits", (f"train.epochs={2**70}",), ("train.epochs", "64 bits")),
    ("override_negative_batch_size", ("train.batch_size=-4",), ("train.batch_size: must be >= 1",)),
    ("override_negative_momentum", ("train.momentum=-0.5",), ("train.momentum: must be >= 0",)),
    ("override_threshold_above_one", ("model.box_nms_thresh=1.5",), ("box_nms_thresh", "[0, 1]")),
    ("override_huge_image_size", ("model.max_size=1000000",), ("model.max_size", "16384")),
    ("override_thousands_of_workers", ("train.workers=10000",), ("train.workers", "[0, 64]")),
    ("override_bad_device", ("train.device=gpu",), ("train.device", "'gpu'")),
    ("override_train_seed", ("train.seed=3",), ("--set train.seed", "--seed")),
    ("override_given_twice", ("train.lr=0.1", "train.lr=0.2"), ("train.lr", "given twice")),
    ("override_anchor_count", ("model.anchor_sizes=(4, 8)",), ("model.anchor_sizes", "2 sizes")),
    ("override_missing_roi_level", ("model.roi_levels=(7,)",), ("model.roi_levels", "no level 7")),
    ("override_missing_weights", ("model.weights=/nowhere/w.pt",), ("w.pt", "not found")),
]:
    case(_name, OVERRIDES, *_needles)(_set(*_items))


@case("override_data_disagrees_with_set", OVERRIDES, "--data", "disagree")
def _(c: Case) -> list[str]:
    return run(c, "--set", f"data.root={c.root}")


@case("unknown_preset", OVERRIDES, "unknown preset 'giant'")
def _(c: Case) -> list[str]:
    return ["run", str(c.spec), "--preset", "giant", "--data", str(c.data)]


@case("unknown_variant", OVERRIDES, "unknown variant 'zzz'")
def _(c: Case) -> list[str]:
    return run(c, "--variant", "zzz")


@case("negative_seed_flag", OVERRIDES, "--seed", "-1")
def _(c: Case) -> list[str]:
    return run(c, "--seed", "-1")


@case("seed_flag_past_64_bits", OVERRIDES, "--seed", "4294967295")
def _(c: Case) -> list[str]:
    return run(c, "--seed", str(2**65))


@case("unknown_flag", OVERRIDES, "unrecognized arguments: --epochs")
def _(c: Case) -> list[str]:
    return run(c, "--epochs", "3")


@case("unknown_command", OVERRIDES, "invalid choice: 'trian'")
def _(c: Case) -> list[str]:
    return ["trian", str(c.spec)]


@case("queue_and_resume", OVERRIDES, "--queue resumes by itself")
def _(c: Case) -> list[str]:
    return run(c, "--queue", f"sqlite:///{c.root}/q.db", "--resume")


@case("negative_heartbeat", OVERRIDES, "--heartbeat", "expected a number > 0")
def _(c: Case) -> list[str]:
    return run(c, "--heartbeat", "-1")


# ---- stores: tracking URIs and what is behind them ----------------------------------------

STORES = "stores"


@case("tracking_server_unreachable", STORES, "http://127.0.0.1:9", "unreachable", subprocess=True)
def _(c: Case) -> list[str]:
    return uri(c, "http://127.0.0.1:9", *run(c))


@case("uri_unknown_scheme", STORES, "foo://bar", "unsupported scheme", "sqlite:///")
def _(c: Case) -> list[str]:
    return uri(c, "foo://bar", *run(c))


@case("uri_bare_word", STORES, "'mystore'", "deprecated file store", "sqlite:///mystore")
def _(c: Case) -> list[str]:
    return uri(c, "mystore", "runs")


@case("uri_file_scheme", STORES, "file:", "deprecated")
def _(c: Case) -> list[str]:
    return uri(c, f"file://{c.root}/mlruns", "runs")


@case("uri_in_memory_sqlite", STORES, "in-memory")
def _(c: Case) -> list[str]:
    return uri(c, "sqlite://", "runs")


@case("uri_driver_not_installed", STORES, "mysql://", "driver is not installed")
def _(c: Case) -> list[str]:
    return uri(c, "mysql://user@127.0.0.1:1/db", *run(c))


@case("uri_postgres_driver_not_installed", STORES, "psycopg2", "postgresql+psycopg://", "***")
def _(c: Case) -> list[str]:
    return uri(c, "postgresql+psycopg2://user:secret@127.0.0.1:1/db", "runs")


@case("uri_postgres_unreachable", STORES, "database unreachable", "***")
def _(c: Case) -> list[str]:
    return uri(c, "postgresql+psycopg://user:secret@127.0.0.1:1/db", *run(c))


@case("uri_with_spaces", STORES, "padded with spaces")
def _(c: Case) -> list[str]:
    return uri(c, f" sqlite:///{c.db}", "runs")


@case("store_not_sqlite", STORES, "not an sqlite database")
def _(c: Case) -> list[str]:
    (c.root / "notes.db").write_text("these are not runs\n")
    return uri(c, f"sqlite:///{c.root}/notes.db", *run(c))


@case("store_is_a_folder", STORES, "is a folder", "mlflow.db")
def _(c: Case) -> list[str]:
    (c.root / "store.db").mkdir()
    return uri(c, f"sqlite:///{c.root}/store.db", *run(c))


@case("store_of_another_tool", STORES, "another tool", "invoices")
def _(c: Case) -> list[str]:
    return uri(c, f"sqlite:///{foreign_sqlite(c.root / 'shop.db')}", *run(c))


@case("store_damaged", STORES, "damaged sqlite database")
def _(c: Case) -> list[str]:
    (c.root / "bad.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    return uri(c, f"sqlite:///{c.root}/bad.db", "runs")


@case("store_folder_is_a_file", STORES, "file", "cannot create the store folder")
def _(c: Case) -> list[str]:
    (c.root / "file").write_text("x")
    return uri(c, f"sqlite:///{c.root}/file/mlruns/mlflow.db", *run(c))


@case("ui_on_a_tracking_server", STORES, "tracking server", "its own UI")
def _(c: Case) -> list[str]:
    return uri(c, "http://127.0.0.1:9", "ui")


@case("report_on_a_bad_uri", STORES, "unsupported scheme")
def _(c: Case) -> list[str]:
    return uri(c, "s3://bucket/runs", "report", "--out", str(c.root / "r"))


# ---- checkpoints: weights files and trained runs ------------------------------------------

CHECKPOINTS = "checkpoints"


@case("corrupt_weights_file", CHECKPOINTS, "w.pt", "not a loadable weights file")
def _(c: Case) -> list[str]:
    (c.root / "w.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    return run(c, "--set", f"model.weights={c.root / 'w.pt'}")


@case("weights_pickle_runs_code", CHECKPOINTS, "evil.pt", "not a loadable", subprocess=True)
def _(c: Case) -> list[str]:
    (c.root / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}))
    return run(c, "--set", f"model.weights={c.root / 'evil.pt'}")


@case("weights_of_another_architecture", CHECKPOINTS, "other.pt", "do not fit")
def _(c: Case) -> list[str]:
    import torch

    torch.save({"backbone.conv.weight": torch.zeros(3, 3)}, c.root / "other.pt")
    return run(c, "--set", f"model.weights={c.root / 'other.pt'}")


@case("predict_unknown_run", CHECKPOINTS, "no run with id 'deadbeef'")
def _(c: Case) -> list[str]:
    return ["predict", "deadbeef", "--images", str(c.data / "test"), "--out", str(c.root / "p")]


@case("predict_a_parent_run", CHECKPOINTS, "not a training run")
def _(c: Case) -> list[str]:
    return ["predict", c.parent_id, "--images", str(c.data / "test"), "--out", str(c.root / "p")]


@case("predict_run_without_checkpoint", CHECKPOINTS, "has no checkpoints/best.pt")
def _(c: Case) -> list[str]:
    rid = make_run_without_checkpoint(c)
    return ["predict", rid, "--images", str(c.data / "test"), "--out", str(c.root / "p")]


@case("predict_corrupt_logged_checkpoint", CHECKPOINTS, "best.pt", "not a loadable checkpoint")
def _(c: Case) -> list[str]:
    rid = make_run_with_checkpoint(c, pickle.dumps({"model": Evil(), "config": {}}))
    return ["predict", rid, "--images", str(c.data / "test"), "--out", str(c.root / "p")]


@case("predict_checkpoint_without_config", CHECKPOINTS, "not a digitexp checkpoint")
def _(c: Case) -> list[str]:
    rid = make_run_with_checkpoint(c, checkpoint_bytes({"weights": {}}))
    return ["predict", rid, "--images", str(c.data / "test"), "--out", str(c.root / "p")]


@case("predict_set_changes_the_architecture", CHECKPOINTS, "--set model.arch", "architecture")
def _(c: Case) -> list[str]:
    return [
        "predict",
        c.run_id,
        "--images",
        str(c.data / "test"),
        "--out",
        str(c.root / "p"),
        "--set",
        "model.arch=resnet18_fpn",
    ]


@case("predict_set_changes_the_head", CHECKPOINTS, "--set model.box_head_dim", "architecture")
def _(c: Case) -> list[str]:
    return [
        "predict",
        c.run_id,
        "--images",
        str(c.data / "test"),
        "--out",
        str(c.root / "p"),
        "--set",
        "model.box_head_dim=64",
    ]


@case("register_unknown_run", CHECKPOINTS, "no run with id 'deadbeef'")
def _(c: Case) -> list[str]:
    return ["register", "deadbeef", "--name", "digits"]


@case("register_run_without_checkpoint", CHECKPOINTS, "has no checkpoints/best.pt")
def _(c: Case) -> list[str]:
    return ["register", make_run_without_checkpoint(c), "--name", "digits"]


@case("register_weights_that_do_not_fit", CHECKPOINTS, "best.pt", "do not fit the model")
def _(c: Case) -> list[str]:
    import torch

    state = torch.load(c.checkpoint, map_location="cpu", weights_only=True)
    state["model"] = dict(list(state["model"].items())[:-2])  # the box predictor's weights gone
    return ["register", make_run_with_checkpoint(c, checkpoint_bytes(state)), "--name", "digits"]


@case("analyze_unknown_run", CHECKPOINTS, "no run with id 'deadbeef'")
def _(c: Case) -> list[str]:
    return ["analyze", "deadbeef", "--no-log"]


@case("analyze_a_parent_run", CHECKPOINTS, "not a training run")
def _(c: Case) -> list[str]:
    return ["analyze", c.parent_id, "--no-log"]


@case("register_an_empty_model_name", CHECKPOINTS, "--name", "give the registered model a name")
def _(c: Case) -> list[str]:
    return ["register", c.run_id, "--name", ""]


@case("register_a_model_name_the_registry_refuses", CHECKPOINTS, "--name 'a/b:c'", "'/' or ':'")
def _(c: Case) -> list[str]:
    return ["register", c.run_id, "--name", "a/b:c"]


@case("run_register_a_name_the_registry_refuses", CHECKPOINTS, "--register 'x:1'", "'/' or ':'")
def _(c: Case) -> list[str]:
    return run(c, "--register", "x:1")


@case("search_unknown_run", CHECKPOINTS, "no run with id 'deadbeef'")
def _(c: Case) -> list[str]:
    return ["search", "deadbeef", "--trials", "1"]


@case("search_a_parent_run", CHECKPOINTS, "not a training run")
def _(c: Case) -> list[str]:
    return ["search", c.parent_id, "--trials", "1"]


@case("search_bad_space", CHECKPOINTS, "--space", "LOW:HIGH")
def _(c: Case) -> list[str]:
    return ["search", c.run_id, "--space", "box_nms_thresh=0.9"]


@case("resume_unknown_run", CHECKPOINTS, "no run with id 'deadbeef'")
def _(c: Case) -> list[str]:
    return run(c, "--resume", "deadbeef")


@case("resume_a_finished_run_of_another_spec", CHECKPOINTS, "belongs to spec 'recorded'")
def _(c: Case) -> list[str]:
    return run(c, "--resume", c.run_id)


# ---- output folders ----------------------------------------------------------------------

OUTPUTS = "output folders"


@case("slurm_task_folder_without_manifest", OUTPUTS, "manifest.json", "no such manifest")
def _(c: Case) -> list[str]:
    return ["slurm-task", str(c.root), "--task", "0"]


@case("slurm_task_manifest_not_an_object", OUTPUTS, "manifest.json", "malformed manifest")
def _(c: Case) -> list[str]:
    (c.root / "manifest.json").write_text("[1, 2]")
    return ["slurm-task", str(c.root), "--task", "0"]


@case("slurm_task_manifest_of_wrong_types", OUTPUTS, "manifest.json", "malformed manifest")
def _(c: Case) -> list[str]:
    from digitexp.launch.slurm.manifest import VERSION

    manifest = {"version": VERSION, "options": 3, "tasks": "x"}
    (c.root / "manifest.json").write_text(json.dumps(manifest))
    return ["slurm-task", str(c.root), "--task", "0"]


@case("report_out_under_a_file", OUTPUTS, "file", "Not a directory")
def _(c: Case) -> list[str]:
    (c.root / "file").write_text("x")
    (c.root / "specs").mkdir()
    shutil.copy(c.spec, c.root / "specs" / "one.py")
    out = str(c.root / "file" / "reports")
    return ["report", "--out", out, "--ablations", str(c.root / "specs")]


@case("report_without_spec_folder", OUTPUTS, "no such folder of spec files")
def _(c: Case) -> list[str]:
    return ["report", "--out", str(c.root / "r"), "--ablations", str(c.root / "nowhere")]


@case("report_spec_folder_empty", OUTPUTS, "no spec files")
def _(c: Case) -> list[str]:
    (c.root / "empty").mkdir()
    return ["report", "--out", str(c.root / "r"), "--ablations", str(c.root / "empty")]


@case("report_unknown_spec", OUTPUTS, "no spec named 'zzz'")
def _(c: Case) -> list[str]:
    folder = c.root / "specs"
    folder.mkdir()
    shutil.copy(c.spec, folder / "one.py")
    return ["report", "--out", str(c.root / "r"), "--ablations", str(folder), "--spec", "zzz"]


@case("report_unknown_preset", OUTPUTS, "unknown preset 'giant'")
def _(c: Case) -> list[str]:
    return ["report", "--out", str(c.root / "r"), "--preset", "giant"]


@case("synth_out_under_a_file", OUTPUTS, "file", "cannot prepare the output folder")
def _(c: Case) -> list[str]:
    (c.root / "file").write_text("x")
    return ["data", "synth", "--out", str(c.root / "file" / "d"), "--train", "2", "--valid", "1"]


@case("predict_out_is_a_file", OUTPUTS, "--out", "not a folder")
def _(c: Case) -> list[str]:
    (c.root / "out.txt").write_text("x")
    return ["predict", c.run_id, "--images", str(c.data / "test"), "--out", str(c.root / "out.txt")]


@case("predict_images_folder_missing", OUTPUTS, "image folder not found")
def _(c: Case) -> list[str]:
    return ["predict", c.run_id, "--images", str(c.root / "none"), "--out", str(c.root / "p")]


@case("predict_images_folder_empty", OUTPUTS, "no images")
def _(c: Case) -> list[str]:
    (c.root / "empty").mkdir()
    return ["predict", c.run_id, "--images", str(c.root / "empty"), "--out", str(c.root / "p")]


@case("svhn_mat_missing", OUTPUTS, "nowhere.mat")
def _(c: Case) -> list[str]:
    return [
        "data",
        "svhn",
        "--mat",
        str(c.root / "nowhere.mat"),
        "--images",
        str(c.data / "train"),
        "--out",
        str(c.root / "out.json"),
    ]


# ---- counts and sizes --------------------------------------------------------------------

COUNTS = "counts and sizes"


def _synth(*extra: str) -> Prepare:
    return lambda c: ["data", "synth", "--out", str(c.root / "s"), *extra]


for _name, _argv, _needles in [
    ("synth_zero_images", ("--train", "0"), ("--train", "from 1")),
    ("synth_negative_images", ("--valid", "-3"), ("--valid", "from 1")),
    ("synth_not_a_number", ("--test", "many"), ("--test", "'many'")),
    ("synth_millions_of_images", ("--train", "2000000"), ("at most 1,000,000",)),
    (
        "synth_heights_in_the_wrong_order",
        ("--min-height", "100", "--max-height", "50"),
        ("min_height (100) > max_height (50)",),
    ),
    ("synth_huge_images", ("--max-height", "100000"), ("max_height must be <= 4096",)),
    ("synth_negative_seed", ("--seed", "-1"), ("--seed", "-1")),
    ("synth_zero_workers", ("--workers", "0"), ("--workers",)),
]:
    case(_name, COUNTS, *_needles)(_synth(*_argv))


for _name, _argv, _needles in [
    ("search_zero_trials", ("--trials", "0"), ("--trials", "from 1")),
    ("search_zero_cap", ("--cap", "0"), ("--cap",)),
    ("search_negative_batch_size", ("--batch-size", "-1"), ("--batch-size",)),
    ("search_seed_past_32_bits", ("--seed", str(2**64)), ("--seed",)),
]:
    case(_name, COUNTS, *_needles)(lambda c, a=_argv: ["search", c.run_id, *a])


@case("predict_zero_batch_size", COUNTS, "--batch-size")
def _(c: Case) -> list[str]:
    return [
        "predict",
        c.run_id,
        "--images",
        str(c.data / "test"),
        "--out",
        str(c.root / "p"),
        "--batch-size",
        "0",
    ]


@case("ui_port_out_of_range", COUNTS, "--port", "65535")
def _(c: Case) -> list[str]:
    return ["ui", "--port", "70000"]


@case("ui_port_in_use", COUNTS, "--port", "cannot listen there")
def _(c: Case) -> list[str]:
    sock, port = busy_port()
    KEEP.append(sock)
    return ["ui", "--port", str(port)]


@case("data_check_unknown_split", COUNTS, "image folder of split 'nope' not found")
def _(c: Case) -> list[str]:
    return ["data", "check", str(c.data), "--splits", "nope"]


KEEP: list[socket.socket] = []  # sockets a case holds open while its command runs

CATEGORIES = (DATA, IMAGES, SPECS, OVERRIDES, STORES, CHECKPOINTS, OUTPUTS, COUNTS)


# --------------------------------------------------------------------------- the tests


def test_the_corpus_has_at_least_eighty_cases_in_every_category() -> None:
    assert len(CASES) >= 80
    counts = {cat: sum(1 for b in CASES.values() if b.category == cat) for cat in CATEGORIES}
    assert all(n >= 3 for n in counts.values()), counts
    assert set(counts) == {b.category for b in CASES.values()}


@pytest.fixture
def bad_case(
    recorded_store: Recorded,
    data_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Case:
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(recorded_store.db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    spec_path = tmp_path / "spec.py"
    spec_path.write_text(GOOD_SPEC)
    return Case(
        data=data_copy,
        spec=spec_path,
        root=tmp_path,
        db=db,
        run_id=recorded_store.run_id,
        parent_id=recorded_store.parent_id,
        checkpoint=recorded_store.checkpoint,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(
    name: str, bad_case: Case, recorded_store: Recorded, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = CASES[name]
    checkpoint_before = recorded_store.checkpoint.read_bytes()
    argv = bad.prepare(bad_case)
    before = store_state(bad_case.db)
    for key, value in bad_case.env.items():
        if not key.startswith("_"):
            monkeypatch.setenv(key, value)
    try:
        if bad.subprocess:
            env = {k: v for k, v in bad_case.env.items() if not k.startswith("_")}
            env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{bad_case.db}")
            result = run_subprocess(*argv, env=env, cwd=bad_case.root)
        else:
            result = cli(*argv)
    finally:
        while KEEP:
            KEEP.pop().close()
    assert_one_error_line(result, *bad.needles)
    assert_nothing_lost(before, store_state(bad_case.db))
    assert recorded_store.checkpoint.read_bytes() == checkpoint_before


def test_a_foreign_database_is_left_as_it_was(bad_case: Case, cli, monkeypatch) -> None:
    """MLflow would add its tables to another tool's database: digitexp refuses first."""
    db = foreign_sqlite(bad_case.root / "shop.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    assert_one_error_line(cli("runs"), "another tool")
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"invoices"}
        assert conn.execute("SELECT total FROM invoices").fetchall() == [(12.5,)]


def test_unforeseen_errors_are_one_line_and_debug_shows_the_traceback(
    bad_case: Case, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception nobody foresaw: one line naming it and pointing at --debug (exit 1);
    with --debug the traceback is printed too."""
    import digitexp.cli.runs as runs_command

    def broken(args: object) -> int:
        raise ZeroDivisionError("an internal slip")

    monkeypatch.setattr(runs_command, "cmd_runs", broken)  # registered when main() runs
    result = cli("runs")
    assert result.code == 1
    assert "Traceback" not in result.err
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert "ZeroDivisionError: an internal slip" in line and "--debug" in line
    debug = cli("--debug", "runs")
    assert debug.code == 1 and "Traceback" in debug.err and "an internal slip" in debug.err


def test_a_data_path_with_a_quote_is_searched(
    bad_case: Case, synth_root: Path, cli, tmp_path: Path
) -> None:
    """A data root with a quote in its name: the search finds its runs and caches as usual
    (no MLflow filter string is built from it)."""
    data = tmp_path / "it's data"
    shutil.copytree(synth_root, data)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    argv = ["search", bad_case.run_id, "--trials", "2", "--data", data, "--storage", storage]
    first = cli(*argv)
    assert first.code == 0, first.err
    again = cli(*argv)
    assert again.code == 0, again.err
    assert "reused from search run" in again.out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_folder(bad_case: Case, cli, monkeypatch) -> None:
    folder = bad_case.root / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
        assert_one_error_line(cli("runs"), "ro", "not writable")
    finally:
        folder.chmod(0o755)
