"""Spec files: every spec loads, every variant resolves, the report's lineage, bad specs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import ABLATIONS, assert_one_clear_line, run_subprocess

from digitexp import lineage, presets
from digitexp.config import apply_overrides, flatten, seed_config
from digitexp.errors import ConfigError, SpecError
from digitexp.spec import load_spec

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

# Settings every run of the report shares (its Table 1 and Listing 1).
COMMON = {
    "model.arch": "fasterrcnn_resnet50_fpn",
    "model.weights": "DEFAULT",
    "model.min_size": 512,
    "model.max_size": 1024,
    "model.box_positive_fraction": 0.25,
    "model.box_batch_size_per_image": 512,
    "model.roi_levels": (0, 1, 2, 3),
    "train.epochs": 20,
    "train.optimizer": "adamw",
    "train.lr": 1e-4,
    "train.weight_decay": 1e-4,
    "train.early_stop_patience": 5,
    "data.pre_normalize": True,
}


def knobs_named_by(title: str) -> dict[str, object]:
    """What a report run's name says about it: resnet50_fpn_stLR3_0.1_nms0.3_b4_e20_small_obj
    _st0.5_ver -> StepLR(3, 0.1), NMS 0.3, batch 4, 20 epochs, anchors 4-48, score 0.5, tall
    anchors (every name token read independently of digitexp.lineage)."""
    name = title.split()[0]
    return {
        "train.scheduler": "step",
        "train.step_size": 3,
        "train.gamma": 0.1,
        "model.box_nms_thresh": 0.5 if "_nms0.5_" in name else 0.3,
        "train.batch_size": 8 if "_b8_" in name else 4,
        "model.anchor_sizes": (4, 8, 12, 24, 48) if "small_obj" in name else (4, 8, 16, 32, 64),
        "model.box_score_thresh": 0.5 if "_st0.5" in name else 0.05,
        "model.aspect_ratios": (1.0, 1.5, 2.0) if name.endswith("_ver") else (0.25, 0.5, 1.0),
        "data.preprocess": "none",
    }


def _resolved(run: lineage.ReportRun) -> dict:
    return flatten(apply_overrides(seed_config(), run.knobs))


@pytest.mark.parametrize("label", ["B", "B-nms.5", "C", "D", "E", "F"])
def test_lineage_runs_set_what_their_report_names_say(label: str) -> None:
    run = lineage.RUNS[label]
    flat = _resolved(run)
    for key, value in {**COMMON, **knobs_named_by(run.title)}.items():
        assert flat[key] == value, (label, key)


def test_lineage_runs_without_a_full_name_change_one_knob_of_their_parent() -> None:
    b, e = _resolved(lineage.B), _resolved(lineage.E)
    changed = {
        "B-cos": {"train.scheduler": "cosine", "train.t_max": 20, "train.eta_min": 1e-7},
        "B-color": {"data.preprocess": "color"},
        "B-binary": {"data.preprocess": "binary"},
        "G": {"model.roi_levels": (0, 1)},
    }
    for label, knobs in changed.items():
        parent = e if label == "G" else b
        assert _resolved(lineage.RUNS[label]) == {**parent, **knobs}, label


def test_final_setup_is_run_e() -> None:
    assert lineage.E.knobs == {}
    assert seed_config().model.box_score_thresh == 0.5
    assert (lineage.E.val_map, lineage.E.public_task1, lineage.E.public_task2) == (
        0.4653,
        0.36,
        0.77,
    )


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*.py")), ids=lambda p: p.stem)
def test_every_report_variant_is_its_lineage_run(path: Path) -> None:
    spec = load_spec(path)
    for name, variant in spec.variants.items():
        label = variant.report_run.split(":")[0]
        run = lineage.RUNS[label]
        assert variant.published == run.published
        flat = flatten(spec.config(name))
        for key, value in {**COMMON, **_resolved(run)}.items():
            assert flat[key] == value, (name, key)


def test_the_seven_specs_exist_in_the_reports_order() -> None:
    from digitexp.report import load_specs

    assert [s.name for s in load_specs(ABLATIONS)] == REPORT_ORDER
    assert [s.name for s in load_specs(ABLATIONS) if s.final] == ["final"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_loads_and_every_variant_resolves(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 30  # question, base, variants, seeds
    for preset in (None, *presets.PRESETS):
        spec = load_spec(path, preset=preset)
        assert spec.question.endswith(")") and "report" in spec.question
        assert all(v.published and v.report_run for v in spec.variants.values())
        for variant in spec.variants:
            cfg = spec.config(variant, seed=spec.seeds[0])
            assert cfg.train.seed == spec.seeds[0]


def test_presets_never_erase_what_a_variant_tests() -> None:
    spec = load_spec(ABLATIONS / "anchors.py", preset="demo")
    for name, variant in spec.variants.items():
        flat = flatten(spec.config(name))
        for key, value in variant.overrides.items():
            assert flat[key] == value


def test_precedence_base_preset_variant_set() -> None:
    sets = {"train.batch_size": 2, "train.lr": 0.5}
    spec = load_spec(ABLATIONS / "batch_size.py", preset="smoke", sets=sets)
    cfg = spec.config("batch_4")
    assert cfg.train.batch_size == 2  # --set wins over the variant
    assert cfg.train.lr == 0.5  # --set wins over the preset
    assert cfg.model.arch == "tiny_fpn"  # the preset wins over BASE
    with pytest.raises(ConfigError, match="--seed"):
        load_spec(ABLATIONS / "batch_size.py", sets={"train.seed": 3})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_spec(ABLATIONS / "batch_size.py", preset="huge")
    with pytest.raises(SpecError, match="unknown variant"):
        spec.config("batch_16")


def test_a_spec_resolves_each_variant_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from digitexp import spec as spec_module
    from digitexp.launch import plan_runs

    calls: list[str] = []
    real = spec_module.apply_overrides

    def counting(cfg, overrides):
        calls.append(",".join(overrides))
        return real(cfg, overrides)

    monkeypatch.setattr(spec_module, "apply_overrides", counting)
    spec = load_spec(ABLATIONS / "anchors.py", preset="smoke")
    resolved = len(calls)
    plans = plan_runs(spec, seeds=[0, 1])
    assert len(plans) == 8 and len(calls) == resolved  # planning resolves nothing again
    # per variant and for BASE alone (where `tune` starts): the preset, then the overrides
    assert resolved == (4 + 1) * 2


def test_published_numbers_and_report_runs_belong_to_the_variants(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        GOOD_HEAD
        + "from digitexp.spec import Variant\n"
        + "VARIANTS = [Variant('a', {'train.lr': 0.1}, {'val_map': 0.5}, 'run A')]\n",
        name="cards.py",
    )
    spec = load_spec(path)
    assert spec.variants["a"].published == {"val_map": 0.5}
    assert spec.variants["a"].report_run == "run A"
    assert spec.config("a").train.lr == 0.1


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
        "PUBLISHED is no longer a spec field",
    ),
    (
        "published_key",
        GOOD_HEAD
        + "from digitexp.spec import Variant\n"
        + "VARIANTS = [Variant('a', {}, {'val_mAP': 0.5})]\n",
        "unknown published metric 'val_mAP'",
    ),
    (
        "twice",
        GOOD_HEAD + "from digitexp.spec import Variant\nVARIANTS = [Variant('a'), Variant('a')]\n",
        "variant 'a' is declared twice",
    ),
    ("not_variant", GOOD_HEAD + "VARIANTS = [('a', {})]\n", "VARIANTS holds tuple"),
    ("table", GOOD_HEAD + "VARIANTS = {'a': {}}\nREPORT_TABLE = 'five'\n", "REPORT_TABLE must"),
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
