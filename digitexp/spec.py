"""Spec files: one question of an ablation, as an experiment card.

A spec is a plain Python module whose docstring's first line states the question
(``Do digit-sized anchors raise val mAP? (report Table 5)``), followed by::

    from digitexp.config import seed_config
    from digitexp.lineage import B, C
    from digitexp.spec import Variant

    BASE = seed_config()                                  # an ExperimentConfig
    VARIANTS = [                                          # each variant declared once
        B.variant("sizes_4_8_16_32_64_score_0.05_batch_4"),   # a report run: its knobs,
        C.variant("sizes_4_8_12_24_48_score_0.05_batch_4"),   # numbers and name come along
        Variant("my_idea", {"model.rpn_nms_thresh": 0.6}),    # or overrides of your own
    ]
    SEEDS = (0, 1, 2)                                     # optional (default: 0)
    REPORT_TABLE = 5                                      # optional: the report's order
    FINAL = True                                          # optional: the chosen setup

``VARIANTS`` may also be a plain dict of name -> overrides. Every variant is resolved and
type-checked when the spec loads (BASE, then the preset, then the variant, then ``--set``), once.
Spec files are code: loading one runs it, so only load specs you trust.
"""

from __future__ import annotations

import ast
import re
import runpy
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from digitexp import presets
from digitexp.config import SEED_MAX, ExperimentConfig, apply_overrides
from digitexp.errors import ConfigError, SpecError, first_line

FIELDS = ("BASE", "VARIANTS", "SEEDS", "REPORT_TABLE", "FINAL")
PUBLISHED_KEYS = ("val_map", "public_task1", "public_task2")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RUN_PATH_MODULE = "<run_path>"
_MOVED = {
    "PUBLISHED": "give the published numbers with each variant: Variant(name, overrides, "
    "published={...}) or a lineage run's .variant(name)",
    "REPORT_RUNS": "give the report's run name with each variant: Variant(name, overrides, "
    "report_run='...') or a lineage run's .variant(name)",
}


@dataclass(frozen=True)
class Variant:
    """One variant of a spec: its name, its overrides of BASE, and (for the report's runs)
    the numbers the report published and the report's name for the run."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    published: Mapping[str, float | None] = field(default_factory=dict)
    report_run: str | None = None


@dataclass(frozen=True)
class Spec:
    """A loaded spec with every variant resolved (in declaration order)."""

    name: str
    path: Path
    question: str
    base: ExperimentConfig
    variants: Mapping[str, Variant]
    configs: Mapping[str, ExperimentConfig]  # per variant: BASE, preset, overrides, --set
    seeds: tuple[int, ...]
    source: str
    report_table: int | None = None
    final: bool = False
    preset: str | None = None
    base_config: ExperimentConfig | None = None  # BASE, then the preset, then --set (no variant)
    sets: Mapping[str, Any] = field(default_factory=dict)  # the --set overrides applied

    def config(self, variant: str, seed: int | None = None) -> ExperimentConfig:
        """The resolved config of ``variant`` (with ``train.seed`` set when given)."""
        if variant not in self.configs:
            names = ", ".join(self.variants)
            raise SpecError(f"{self.path}: unknown variant {variant!r} (variants: {names})")
        cfg = self.configs[variant]
        return cfg if seed is None else replace(cfg, train=replace(cfg.train, seed=seed))


def _fail(path: Path, message: str) -> SpecError:
    return SpecError(f"{path}: {message}")


def _read_source(path: Path) -> str:
    """The spec's text: UTF-8 Python source, or one SpecError saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read the spec file ({exc.strerror or exc})") from None
    if b"\x00" in data:
        raise _fail(path, "not a text file (it holds NUL bytes): a spec is a Python file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            path,
            f"not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}): save the "
            "spec as UTF-8 Python source",
        ) from None


def _execute(path: Path, source: str) -> dict[str, Any]:
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise _fail(path, f"syntax error{where}: {exc.msg}") from None
    except ValueError as exc:
        raise _fail(path, f"not valid Python source ({exc})") from None
    try:
        return runpy.run_path(str(path), run_name=_RUN_PATH_MODULE)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise _fail(path, f"syntax error{where}: {exc.msg}") from None
    except ConfigError as exc:
        raise _fail(path, f"BASE does not build: {exc}") from None
    except SystemExit as exc:  # sys.exit() / exit() in a spec: an error, not digitexp's exit
        line = _user_line(exc, path)
        where = f" at line {line}" if line else ""
        raise _fail(
            path, f"the spec exits{where} (SystemExit {exc.code!r}): a spec only declares data"
        ) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the spec is user code: report whatever it raised in one line
        line = _user_line(exc, path)
        where = f" at line {line}" if line else ""
        text = first_line(exc)[:300] if str(exc).strip() else ""
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        raise _fail(path, f"error while executing{where}: {message}") from None


def _user_line(exc: BaseException, path: Path) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _imported_names(source: str) -> set[str]:
    """The names a spec's import statements bind (``from digitexp.lineage import B``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _check_no_logic(path: Path, namespace: Mapping[str, Any], source: str) -> None:
    imported = _imported_names(source)
    for key, value in namespace.items():
        if key.startswith("__") or key in imported:
            continue
        defined_here = getattr(value, "__module__", None) == _RUN_PATH_MODULE
        if defined_here and isinstance(value, type | types.FunctionType):
            kind = "class" if isinstance(value, type) else "function"
            raise _fail(path, f"defines {kind} {key!r}: specs hold data only (BASE, VARIANTS, ...)")
        if key in _MOVED:
            raise _fail(path, f"{key} is no longer a spec field: {_MOVED[key]}")
        if key.isupper() and key not in FIELDS:
            raise _fail(path, f"unknown spec field {key!r} (allowed: {', '.join(FIELDS)})")


def _published(path: Path, name: str, raw: Any) -> dict[str, float | None]:
    if not isinstance(raw, Mapping):
        raise _fail(path, f"variant {name!r}: published must be a dict of metric -> number")
    out: dict[str, float | None] = {}
    for key, value in raw.items():
        if key not in PUBLISHED_KEYS:
            allowed = ", ".join(PUBLISHED_KEYS)
            raise _fail(path, f"variant {name!r}: unknown published metric {key!r} ({allowed})")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not number:
            raise _fail(path, f"variant {name!r}: published {key!r} must be a number or None")
        out[key] = None if value is None else float(value)
    return out


def _variant(path: Path, item: Any) -> Variant:
    if not isinstance(item, Variant):
        raise _fail(path, f"VARIANTS holds {type(item).__name__}: use Variant(name, overrides)")
    if not isinstance(item.name, str) or not _NAME_RE.match(item.name):
        raise _fail(
            path, f"variant name {item.name!r}: use letters, digits, '_', '.', '-' (no spaces)"
        )
    if not isinstance(item.overrides, Mapping):
        raise _fail(
            path, f"variant {item.name!r}: overrides must be a dict of 'section.key': value"
        )
    if item.report_run is not None and not isinstance(item.report_run, str):
        raise _fail(path, f"variant {item.name!r}: report_run must be a string")
    return Variant(
        item.name,
        dict(item.overrides),
        _published(path, item.name, item.published),
        item.report_run,
    )


def _variants(path: Path, raw: Any) -> dict[str, Variant]:
    if raw is None:
        raise _fail(path, "missing VARIANTS (a list of Variant, or a dict of name -> overrides)")
    if isinstance(raw, Mapping):
        items = [Variant(name, overrides) for name, overrides in raw.items()]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise _fail(path, "VARIANTS must be a list of Variant or a dict of name -> overrides")
    if not items:
        raise _fail(path, "VARIANTS must be non-empty")
    out: dict[str, Variant] = {}
    for item in items:
        variant = _variant(path, item)
        if variant.name in out:
            raise _fail(path, f"variant {variant.name!r} is declared twice")
        out[variant.name] = variant
    return out


def _seeds(path: Path, raw: Any) -> tuple[int, ...]:
    if raw is None:
        return (0,)
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = (raw,)
    ok = isinstance(raw, list | tuple) and raw
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise _fail(path, f"SEEDS must be a non-empty tuple of ints, got {repr(raw)[:60]}")
    if len(set(raw)) != len(raw):
        raise _fail(path, f"SEEDS has duplicates: {raw!r}")
    out_of_range = [s for s in raw if not 0 <= s <= SEED_MAX]
    if out_of_range:
        raise _fail(path, f"SEEDS: {str(out_of_range[0])[:30]} is not in [0, {SEED_MAX}]")
    return tuple(raw)


def _report_table(path: Path, raw: Any) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise _fail(path, f"REPORT_TABLE must be a positive int (the report's table), got {raw!r}")
    return raw


def _final(path: Path, raw: Any) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise _fail(path, f"FINAL must be True or False, got {raw!r}")
    return raw


def _resolve(
    path: Path,
    base: ExperimentConfig,
    variant: Variant,
    preset: str | None,
    sets: Mapping[str, Any] | None,
) -> ExperimentConfig:
    """BASE, then the preset, then the variant's overrides, then ``--set``."""
    cfg = base
    if preset is not None:
        try:
            cfg = apply_overrides(cfg, presets.overrides(preset))
        except ConfigError as exc:
            raise ConfigError(f"preset {preset!r}: {exc}") from None
    try:
        cfg = apply_overrides(cfg, variant.overrides)
    except ConfigError as exc:
        raise SpecError(f"{path}: variant {variant.name!r}: {exc}") from None
    if sets:
        try:
            cfg = apply_overrides(cfg, sets)
        except ConfigError as exc:
            raise ConfigError(f"--set {exc}") from None
    return cfg


def load_spec(
    path: str | Path, *, preset: str | None = None, sets: Mapping[str, Any] | None = None
) -> Spec:
    """Load a spec file and resolve every variant once (with ``preset`` and ``sets``), so that
    every error surfaces before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    if preset is not None:
        presets.overrides(preset)  # an unknown preset is named before the spec runs
    if sets and "train.seed" in sets:
        raise ConfigError("--set train.seed: choose seeds with --seed (or the spec's SEEDS)")
    source = _read_source(path)
    namespace = _execute(path, source)
    _check_no_logic(path, namespace, source)
    question = (namespace.get("__doc__") or "").strip()
    if not question:
        raise _fail(path, "missing docstring: the first line states the spec's question")
    base = namespace.get("BASE")
    if base is None:
        raise _fail(path, "missing BASE (an ExperimentConfig, e.g. seed_config())")
    if not isinstance(base, ExperimentConfig):
        raise _fail(path, f"BASE must be an ExperimentConfig, got {type(base).__name__}")
    variants = _variants(path, namespace.get("VARIANTS"))
    configs = {name: _resolve(path, base, v, preset, sets) for name, v in variants.items()}
    base_config = _resolve(path, base, Variant("BASE"), preset, sets)
    return Spec(
        name=path.stem,
        path=path,
        question=question.splitlines()[0].strip(),
        base=base,
        variants=variants,
        configs=configs,
        seeds=_seeds(path, namespace.get("SEEDS")),
        source=source,
        report_table=_report_table(path, namespace.get("REPORT_TABLE")),
        final=_final(path, namespace.get("FINAL")),
        preset=preset,
        base_config=base_config,
        sets=dict(sets or {}),
    )
