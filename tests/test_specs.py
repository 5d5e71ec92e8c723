"""Spec files: every spec loads, every variant resolves, the report's lineage, bad specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import ABLATIONS, assert_one_clear_line, run_subprocess

from digitexp import presets
from digitexp.errors import ConfigError, SpecError
from digitexp.spec import load_spec, resolve

SPECS = sorted(ABLATIONS.glob("*.py"))
REPORT_ORDER = [
    "lr_schedule",
    "batch_size",
    "preprocessing",
    "anchors",
    "thresholds",
    "roi_levels",
    "final",
]

# The lineage table of the foundation issue: run -> (spec, variant, expected values).
B = {
    "model.anchor_sizes": (4, 8, 16, 32, 64),
    "model.aspect_ratios": (0.25, 0.5, 1.0),
    "model.box_nms_thresh": 0.3,
    "model.box_score_thresh": 0.05,
    "train.batch_size": 4,
    "train.scheduler": "step",
    "data.preprocess": "none",
    "model.roi_levels": (0, 1, 2, 3),
}
C = {**B, "model.anchor_sizes": (4, 8, 12, 24, 48)}
D = {**C, "model.box_score_thresh": 0.5}
E = {**D, "train.batch_size": 8}
F = {**E, "model.aspect_ratios": (1.0, 1.5, 2.0)}
G = {**E, "model.roi_levels": (0, 1)}
LINEAGE = [
    ("B", "lr_schedule", "step_3_0.1", B, 0.4588),
    (
        "B-cos",
        "lr_schedule",
        "cosine_tmax_20_etamin_1e-7",
        {**B, "train.scheduler": "cosine", "train.t_max": 20, "train.eta_min": 1e-7},
        0.4535,
    ),
    (
        "B-nms.5",
        "thresholds",
        "nms_0.5_score_0.05_sizes_4_8_16_32_64",
        {**B, "model.box_nms_thresh": 0.5},
        0.4611,
    ),
    ("B", "thresholds", "nms_0.3_score_0.05_sizes_4_8_16_32_64", B, 0.4588),
    ("C", "thresholds", "nms_0.3_score_0.05_sizes_4_8_12_24_48", C, 0.4619),
    ("D", "thresholds", "nms_0.3_score_0.5_sizes_4_8_12_24_48", D, 0.4643),
    ("B", "preprocessing", "none", B, 0.4588),
    (
        "B-color",
        "preprocessing",
        "color_jitter_grayscale",
        {**B, "data.preprocess": "color"},
        0.2545,
    ),
    ("B-binary", "preprocessing", "adaptive_binary", {**B, "data.preprocess": "binary"}, 0.4309),
    ("B", "anchors", "sizes_4_8_16_32_64_score_0.05_batch_4", B, 0.4588),
    ("C", "anchors", "sizes_4_8_12_24_48_score_0.05_batch_4", C, 0.4619),
    ("E", "anchors", "sizes_4_8_12_24_48_ratios_0.25_0.5_1_score_0.5_batch_8", E, 0.4653),
    ("F", "anchors", "sizes_4_8_12_24_48_ratios_1_1.5_2_score_0.5_batch_8", F, 0.4671),
    ("D", "batch_size", "batch_4", D, 0.4643),
    ("E", "batch_size", "batch_8", E, 0.4653),
    ("E", "roi_levels", "levels_0_1_2_3", E, 0.4653),
    ("G", "roi_levels", "levels_0_1", G, 0.4633),
    ("E", "final", "final", E, 0.4653),
]
COMMON = {
    "model.arch": "fasterrcnn_resnet50_fpn",
    "model.weights": "DEFAULT",
    "model.min_size": 512,
    "model.max_size": 1024,
    "model.box_positive_fraction": 0.25,
    "model.box_batch_size_per_image": 512,
    "train.epochs": 20,
    "train.optimizer": "adamw",
    "train.lr": 1e-4,
    "train.weight_decay": 1e-4,
    "train.early_stop_patience": 5,
    "data.pre_normalize": True,
}


def test_the_seven_specs_exist() -> None:
    assert sorted(p.stem for p in SPECS) == sorted(REPORT_ORDER)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_loads_and_every_variant_resolves(path: Path) -> None:
    spec = load_spec(path)
    assert spec.question.endswith(")") and "report" in spec.question
    assert set(spec.published) == set(spec.variants)
    for variant in spec.variants:
        for preset in (None, *presets.PRESETS):
            cfg = resolve(spec, variant, preset=preset, seed=spec.seeds[0])
            assert cfg.train.seed == spec.seeds[0]


@pytest.mark.parametrize(("run", "spec_name", "variant", "expected", "val_map"), LINEAGE)
def test_lineage_rows_resolve_to_the_tables_values(
    run: str, spec_name: str, variant: str, expected: dict, val_map: float
) -> None:
    from digitexp.config import flatten

    spec = load_spec(ABLATIONS / f"{spec_name}.py")
    flat = flatten(resolve(spec, variant))
    for key, value in {**COMMON, **expected}.items():
        assert flat[key] == value, (run, key)
    assert spec.published[variant]["val_map"] == val_map


def test_presets_never_erase_what_a_variant_tests() -> None:
    spec = load_spec(ABLATIONS / "anchors.py")
    for variant, overrides in spec.variants.items():
        cfg = resolve(spec, variant, preset="demo")
        from digitexp.config import flatten

        flat = flatten(cfg)
        for key, value in overrides.items():
            assert flat[key] == (tuple(value) if isinstance(value, list) else value)


def test_precedence_base_preset_variant_set() -> None:
    spec = load_spec(ABLATIONS / "batch_size.py")
    cfg = resolve(spec, "batch_4", preset="smoke", sets={"train.batch_size": 2, "train.lr": 0.5})
    assert cfg.train.batch_size == 2  # --set wins over the variant
    assert cfg.train.lr == 0.5  # --set wins over the preset
    assert cfg.model.arch == "tiny_fpn"  # the preset wins over BASE
    with pytest.raises(ConfigError, match="--seed"):
        resolve(spec, "batch_4", sets={"train.seed": 3})
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve(spec, "batch_4", preset="huge")
    with pytest.raises(SpecError, match="unknown variant"):
        resolve(spec, "batch_16")


def _write(tmp_path: Path, body: str, name: str = "bad.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD_HEAD = '''"""A question? (test)"""
from digitexp.config import seed_config
BASE = seed_config()
'''

BAD_SPECS = [
    ("syntax", GOOD_HEAD + "VARIANTS = {'a': {}\n", "syntax error at line"),
    ("no_base", '"""Q?"""\nVARIANTS = {"a": {}}\n', "missing BASE"),
    ("base_type", '"""Q?"""\nBASE = 3\nVARIANTS = {"a": {}}\n', "BASE must be an ExperimentConfig"),
    ("no_variants", GOOD_HEAD, "missing VARIANTS"),
    ("empty_variants", GOOD_HEAD + "VARIANTS = {}\n", "non-empty"),
    (
        "unknown_key",
        GOOD_HEAD + "VARIANTS = {'a': {'model.anchors': (4,)}}\n",
        "variant 'a': model.anchors: unknown key",
    ),
    (
        "wrong_type",
        GOOD_HEAD + "VARIANTS = {'a': {'train.lr': 'x'}}\n",
        "variant 'a': train.lr: expected float",
    ),
    ("bad_name", GOOD_HEAD + "VARIANTS = {'a b': {}}\n", "variant name 'a b'"),
    (
        "no_doc",
        "from digitexp.config import seed_config\nBASE = seed_config()\nVARIANTS = {'a': {}}\n",
        "missing docstring",
    ),
    (
        "function",
        GOOD_HEAD + "def pick():\n    return 1\nVARIANTS = {'a': {}}\n",
        "defines function 'pick'",
    ),
    ("class", GOOD_HEAD + "class X:\n    pass\nVARIANTS = {'a': {}}\n", "defines class 'X'"),
    ("field_typo", GOOD_HEAD + "VARIANTS = {'a': {}}\nSEED = (1,)\n", "unknown spec field 'SEED'"),
    ("seeds", GOOD_HEAD + "VARIANTS = {'a': {}}\nSEEDS = ('x',)\n", "SEEDS must be"),
    (
        "published",
        GOOD_HEAD + "VARIANTS = {'a': {}}\nPUBLISHED = {'b': {}}\n",
        "PUBLISHED names 'b'",
    ),
    ("raises", GOOD_HEAD + "VARIANTS = {'a': {}}\nx = 1 / 0\n", "ZeroDivisionError"),
    (
        "base_override",
        (
            '"""Q?"""\nfrom digitexp.config import apply_overrides, seed_config\n'
            'BASE = apply_overrides(seed_config(), {"x.y": 1})\nVARIANTS = {"a": {}}\n'
        ),
        "BASE does not build",
    ),
]


@pytest.mark.parametrize(("name", "body", "needle"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_specs_fail_at_load_time_naming_the_file(
    tmp_path: Path, name: str, body: str, needle: str
) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert needle in message
    assert "\n" not in message


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.py")


def test_show_prints_the_anchor_variants_with_the_tables_values(cli) -> None:
    result = cli("show", ABLATIONS / "anchors.py", "--resolved")
    assert result.code == 0
    out = result.out
    assert out.count("\nvariant ") == 4
    assert "model.anchor_sizes = (4, 8, 16, 32, 64)" in out
    assert "model.anchor_sizes = (4, 8, 12, 24, 48)" in out
    assert "model.aspect_ratios = (1.0, 1.5, 2.0)" in out
    assert "val_map 0.4671" in out


def test_show_with_preset_and_set(cli) -> None:
    result = cli(
        "show", ABLATIONS / "final.py", "--preset", "demo", "--set", "train.epochs=2", "--resolved"
    )
    assert result.code == 0
    assert "train.epochs = 2" in result.out
    assert "model.arch = 'tiny_fpn'" in result.out


def test_show_bad_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_HEAD + "VARIANTS = {'a': {'train.lr': 'x'}}\n")
    assert_one_clear_line(run_subprocess("show", path), str(path), "train.lr")


def test_show_bad_set_is_one_line_exit_2() -> None:
    result = run_subprocess("show", ABLATIONS / "final.py", "--set", "train.optimizer=adam")
    assert_one_clear_line(result, "train.optimizer", "'adamw' | 'sgd'")
