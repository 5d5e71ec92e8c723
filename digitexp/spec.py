"""Load and validate spec files.

A spec is a plain Python module (see DESIGN.md): a docstring stating the question, ``BASE``
(an :class:`ExperimentConfig`), ``VARIANTS`` (name -> dotted overrides), optional ``SEEDS``,
``PUBLISHED`` (the report's numbers per variant) and ``REPORT_RUNS`` (the report's run name
per variant). Spec files are code: loading one runs it, so only load specs you trust.
"""

from __future__ import annotations

import re
import runpy
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitexp import presets
from digitexp.config import ExperimentConfig, apply_overrides
from digitexp.errors import ConfigError, SpecError

_FIELDS = ("BASE", "VARIANTS", "SEEDS", "PUBLISHED", "REPORT_RUNS")
_PUBLISHED_KEYS = ("val_map", "public_task1", "public_task2")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RUN_PATH_MODULE = "<run_path>"


@dataclass(frozen=True)
class Spec:
    """A loaded, validated spec. Variants keep their declaration order."""

    name: str
    path: Path
    question: str
    base: ExperimentConfig
    variants: Mapping[str, Mapping[str, Any]]
    seeds: tuple[int, ...]
    published: Mapping[str, Mapping[str, float | None]]
    report_runs: Mapping[str, str]
    source: str

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.variants)


def _fail(path: Path, message: str) -> SpecError:
    return SpecError(f"{path}: {message}")


def _execute(path: Path) -> dict[str, Any]:
    try:
        return runpy.run_path(str(path), run_name=_RUN_PATH_MODULE)
    except SyntaxError as exc:
        raise _fail(path, f"syntax error at line {exc.lineno}: {exc.msg}") from None
    except ConfigError as exc:
        raise _fail(path, f"BASE does not build: {exc}") from None
    except Exception as exc:  # the spec is user code: report whatever it raised in one line
        line = _user_line(exc, path)
        where = f" at line {line}" if line else ""
        raise _fail(path, f"error while executing{where}: {type(exc).__name__}: {exc}") from None


def _user_line(exc: BaseException, path: Path) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _check_no_logic(path: Path, namespace: Mapping[str, Any]) -> None:
    for key, value in namespace.items():
        if key.startswith("__"):
            continue
        defined_here = getattr(value, "__module__", None) == _RUN_PATH_MODULE
        if defined_here and isinstance(value, type | types.FunctionType):
            kind = "class" if isinstance(value, type) else "function"
            raise _fail(path, f"defines {kind} {key!r}: specs hold data only (BASE, VARIANTS, ...)")
        if key.isupper() and key not in _FIELDS:
            raise _fail(path, f"unknown spec field {key!r} (allowed: {', '.join(_FIELDS)})")


def _variants(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        raise _fail(path, "missing VARIANTS (a dict of variant name -> overrides)")
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(path, "VARIANTS must be a non-empty dict of variant name -> overrides")
    out: dict[str, dict[str, Any]] = {}
    for name, overrides in raw.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail(
                path, f"variant name {name!r}: use letters, digits, '_', '.', '-' (no spaces)"
            )
        if not isinstance(overrides, Mapping):
            raise _fail(path, f"variant {name!r}: overrides must be a dict of 'section.key': value")
        out[name] = dict(overrides)
    return out


def _seeds(path: Path, raw: Any) -> tuple[int, ...]:
    if raw is None:
        return (0,)
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = (raw,)
    ok = isinstance(raw, list | tuple) and raw
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw):
        raise _fail(path, f"SEEDS must be a non-empty tuple of ints, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise _fail(path, f"SEEDS has duplicates: {raw!r}")
    return tuple(raw)


def _published(
    path: Path, raw: Any, variants: Mapping[str, Any]
) -> dict[str, dict[str, float | None]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(path, "PUBLISHED must be a dict of variant name -> {metric: value}")
    out: dict[str, dict[str, float | None]] = {}
    for name, numbers in raw.items():
        if name not in variants:
            raise _fail(path, f"PUBLISHED names {name!r}, which is not a variant")
        if not isinstance(numbers, Mapping):
            raise _fail(path, f"PUBLISHED[{name!r}] must be a dict of metric -> number")
        for key, value in numbers.items():
            if key not in _PUBLISHED_KEYS:
                allowed = ", ".join(_PUBLISHED_KEYS)
                raise _fail(path, f"PUBLISHED[{name!r}]: unknown metric {key!r} ({allowed})")
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and not number:
                raise _fail(path, f"PUBLISHED[{name!r}][{key!r}] must be a number or None")
        out[name] = {k: (None if v is None else float(v)) for k, v in numbers.items()}
    return out


def _report_runs(path: Path, raw: Any, variants: Mapping[str, Any]) -> dict[str, str]:
    if raw is None:
        return {}
    ok = isinstance(raw, Mapping) and all(isinstance(v, str) for v in raw.values())
    if not ok:
        raise _fail(path, "REPORT_RUNS must be a dict of variant name -> report run name")
    for name in raw:
        if name not in variants:
            raise _fail(path, f"REPORT_RUNS names {name!r}, which is not a variant")
    return dict(raw)


def load_spec(path: str | Path) -> Spec:
    """Load a spec file and resolve every variant once, so that errors surface up front."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    source = path.read_text(encoding="utf-8")
    namespace = _execute(path)
    _check_no_logic(path, namespace)
    question = (namespace.get("__doc__") or "").strip()
    if not question:
        raise _fail(path, "missing docstring: the first line states the spec's question")
    base = namespace.get("BASE")
    if base is None:
        raise _fail(path, "missing BASE (an ExperimentConfig, e.g. seed_config())")
    if not isinstance(base, ExperimentConfig):
        raise _fail(path, f"BASE must be an ExperimentConfig, got {type(base).__name__}")
    variants = _variants(path, namespace.get("VARIANTS"))
    spec = Spec(
        name=path.stem,
        path=path,
        question=question.splitlines()[0].strip(),
        base=base,
        variants=variants,
        seeds=_seeds(path, namespace.get("SEEDS")),
        published=_published(path, namespace.get("PUBLISHED"), variants),
        report_runs=_report_runs(path, namespace.get("REPORT_RUNS"), variants),
        source=source,
    )
    for name in variants:
        resolve(spec, name)
    return spec


def resolve(
    spec: Spec,
    variant: str,
    *,
    seed: int | None = None,
    preset: str | None = None,
    sets: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """A variant's full config. Precedence: BASE, preset, the variant, ``--set``, then seed."""
    if variant not in spec.variants:
        names = ", ".join(spec.variants)
        raise SpecError(f"{spec.path}: unknown variant {variant!r} (variants: {names})")
    cfg = spec.base
    if preset is not None:
        try:
            cfg = apply_overrides(cfg, presets.overrides(preset))
        except ConfigError as exc:
            raise ConfigError(f"preset {preset!r}: {exc}") from None
    try:
        cfg = apply_overrides(cfg, spec.variants[variant])
    except ConfigError as exc:
        raise SpecError(f"{spec.path}: variant {variant!r}: {exc}") from None
    if sets:
        if "train.seed" in sets:
            raise ConfigError("--set train.seed: choose seeds with --seed (or the spec's SEEDS)")
        try:
            cfg = apply_overrides(cfg, sets)
        except ConfigError as exc:
            raise ConfigError(f"--set {exc}") from None
    if seed is not None:
        cfg = apply_overrides(cfg, {"train.seed": seed})
    return cfg
