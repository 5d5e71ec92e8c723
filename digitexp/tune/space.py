"""The search space of a study: which config keys each trial samples, and how.

One ``--space KEY=SPACE`` per key; ``KEY`` is any config key (as ``--set`` takes it):

==============================  =============================================================
``train.lr=log:1e-5:1e-2``      a float on a log scale (an int key: ints on a log scale)
``train.gamma=float:0.05:0.5``  a float, uniform; ``float:LOW:HIGH:STEP`` on a grid
``train.batch_size=int:2:8``    an int; ``int:LOW:HIGH:STEP`` in steps
``train.scheduler=choice:step|cosine``          one of these values, each written as for
``model.anchor_sizes=choice:(4,8,16)|(4,8,12)``  ``--set`` (tuples in parentheses)
==============================  =============================================================

Every space is checked against the config before anything starts: the key exists, the kind
fits its type (``float:`` for float keys, ``int:`` for int keys, ``log:`` for either,
``choice:`` for any), both ends of a range and every choice make a valid config (the config's
own checks, and the model's for ``model.*`` keys). A float drawn from a range is rounded to 4
significant digits (or to its step) before it is used, so the value trained is the value
shown everywhere (MLflow params, ``trials.csv``, the ``--set`` line).
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from digitexp.config import ExperimentConfig, apply_overrides, field_type, type_name
from digitexp.errors import ConfigError, DigitexpError
from digitexp.model import check_model

Kind = Literal["float", "log", "int", "choice"]
KINDS: tuple[Kind, ...] = ("float", "log", "int", "choice")
SYNTAX = "KEY=float:LOW:HIGH[:STEP], log:LOW:HIGH, int:LOW:HIGH[:STEP] or choice:A|B|..."
_ITEM = re.compile(r"\s*([A-Za-z_][\w]*\.[A-Za-z_]\w*)\s*=\s*([a-z]+):(.*)", re.DOTALL)
SIGNIFICANT_DIGITS = 4


def value_text(value: Any) -> str:
    """A config value as ``--set`` reads it back: ``0.001``, ``(4,8,16)``, ``cosine``."""
    if isinstance(value, tuple):
        inner = ",".join(value_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, str):
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        return value if literal == value else repr(value)
    return repr(value)


def python_text(value: Any) -> str:
    """A config value as a spec file writes it: ``0.001``, ``(4, 8, 16)``, ``"cosine"``."""
    if isinstance(value, tuple):
        inner = ", ".join(python_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def set_line(values: Mapping[str, Any]) -> str:
    """``--set train.lr=0.001234 'model.anchor_sizes=(4,8,16)'``: ready for the shell."""
    return "--set " + " ".join(shlex.quote(f"{k}={value_text(v)}") for k, v in values.items())


def variant_line(name: str, values: Mapping[str, Any]) -> str:
    """``Variant("name", {"train.lr": 0.001234})``: a line for a spec's ``VARIANTS``."""
    overrides = ", ".join(f"{json.dumps(k)}: {python_text(v)}" for k, v in values.items())
    return f"Variant({json.dumps(name)}, {{{overrides}}})"


def rounded(value: float, step: float | None) -> float:
    """A float sample as it is used: on its step's grid, else to 4 significant digits."""
    if step is not None:
        return float(f"{value:.12g}")
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


@dataclass(frozen=True)
class Dimension:
    """One key of the space. Ranges have ``low``/``high`` (and ``step``); a choice has its
    values, as the config holds them."""

    key: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    integer: bool = False  # an int key (``log:`` draws ints)
    choices: tuple[Any, ...] = ()

    def text(self) -> str:
        """The space as ``--space`` writes it (canonical): ``log:1e-05:0.01``."""
        if self.kind == "choice":
            return "choice:" + "|".join(value_text(c) for c in self.choices)
        parts = [self.kind, _number(self.low), _number(self.high)]
        if self.step is not None:
            parts.append(_number(self.step))
        return ":".join(parts)

    def labels(self) -> list[Any]:
        """The choices as Optuna stores them (tuples as their text; Optuna takes scalars)."""
        return [value_text(c) if isinstance(c, tuple) else c for c in self.choices]

    def value_of(self, param: Any) -> Any:
        """The config value of an Optuna param of this dimension."""
        if self.kind == "choice":
            return self.choices[self.labels().index(param)]
        if self.integer:
            return int(param)
        return min(max(rounded(float(param), self.step), float(self.low)), float(self.high))

    def suggest(self, trial: Any) -> Any:
        """Draw this key's value for ``trial`` (an Optuna trial); the config value."""
        match self.kind:
            case "choice":
                param = trial.suggest_categorical(self.key, self.labels())
            case "int":
                param = trial.suggest_int(self.key, self.low, self.high, step=self.step or 1)
            case "log" if self.integer:
                param = trial.suggest_int(self.key, self.low, self.high, log=True)
            case "log":
                param = trial.suggest_float(self.key, self.low, self.high, log=True)
            case _:
                param = trial.suggest_float(self.key, self.low, self.high, step=self.step)
        return self.value_of(param)

    def grid(self) -> list[Any] | None:
        """Every value, for the grid sampler; None when the dimension is continuous."""
        if self.kind == "choice":
            return self.labels()
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.kind == "float" and self.step is not None:
            n = round((self.high - self.low) / self.step)
            return [rounded(self.low + i * self.step, self.step) for i in range(n + 1)]
        return None


@dataclass(frozen=True)
class Space:
    """The dimensions of a study, in ``--space`` order."""

    dimensions: tuple[Dimension, ...]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def text(self) -> str:
        return " ".join(f"{d.key}={d.text()}" for d in self.dimensions)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's values (config keys -> config values)."""
        return {d.key: d.suggest(trial) for d in self.dimensions}

    def values_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's Optuna params as config values (keys of this space only)."""
        return {d.key: d.value_of(params[d.key]) for d in self.dimensions if d.key in params}

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space; ConfigError when a dimension is continuous."""
        out: dict[str, list[Any]] = {}
        for d in self.dimensions:
            values = d.grid()
            if values is None:
                raise ConfigError(
                    f"--sampler grid: --space {d.key}={d.text()} is continuous; give it a "
                    "STEP (float:LOW:HIGH:STEP) or choices (log ranges cannot be gridded)"
                )
            out[d.key] = values
        return out


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def _bad(item: str, message: str) -> ConfigError:
    return ConfigError(f"--space {item.strip()!r}: {message}")


def _split_choices(text: str) -> list[str]:
    """``(4,8)|(4,12)`` -> ``["(4,8)", "(4,12)"]``: split on ``|`` outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _literal(text: str) -> Any:
    """A choice's text as ``--set`` reads a value: a Python literal, else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _checked(base: ExperimentConfig, key: str, value: Any, item: str) -> Any:
    """``value`` as the config holds it, after the config's (and the model's) own checks."""
    try:
        cfg = apply_overrides(base, {key: value})
        if key.startswith("model."):
            check_model(cfg.model)
    except DigitexpError as exc:
        raise _bad(item, str(exc)) from None
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _parse_number(text: str, integer: bool, item: str, what: str) -> float | int:
    text = text.strip()
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise _bad(item, f"{what} must be {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise _bad(item, f"{what} must be finite, got {text!r}")
    return value


def _number_type(hint: Any) -> Any:
    """``int`` or ``float`` for a numeric key (``int | None`` counts as int), else ``hint``."""
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (int, float) else hint


def _range(item: str, key: str, kind: Kind, body: str, hint: Any) -> Dimension:
    hint = _number_type(hint)
    integer = hint is int
    if kind == "float" and integer:
        raise _bad(item, f"{key} is an int: use int:LOW:HIGH[:STEP] or log:LOW:HIGH")
    if kind == "int" and not integer:
        raise _bad(item, f"{key} is {type_name(hint)}: int: is for int keys")
    if not integer and hint is not float:
        raise _bad(item, f"{key} is {type_name(hint)}: use choice:A|B|... for it")
    parts = body.split(":")
    if len(parts) not in (2, 3) or (kind == "log" and len(parts) != 2):
        form = "log:LOW:HIGH" if kind == "log" else f"{kind}:LOW:HIGH[:STEP]"
        raise _bad(item, f"expected {key}={form}")
    low = _parse_number(parts[0], integer, item, "LOW")
    high = _parse_number(parts[1], integer, item, "HIGH")
    step = _parse_number(parts[2], integer, item, "STEP") if len(parts) == 3 else None
    if not low < high:
        raise _bad(item, f"LOW must be < HIGH, got {parts[0]} and {parts[1]}")
    if kind == "log" and low <= 0:
        raise _bad(item, f"a log range needs LOW > 0, got {parts[0]}")
    if step is not None:
        if step <= 0:
            raise _bad(item, f"STEP must be > 0, got {parts[2]}")
        span = (high - low) / step
        if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)):
            raise _bad(item, "HIGH - LOW must be a multiple of STEP")
    return Dimension(key, kind, low, high, step, integer)


def _dimension(item: str, base: ExperimentConfig) -> Dimension:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _bad(item, f"expected {SYNTAX}")
    key, kind, body = match.groups()
    if kind not in KINDS:
        raise _bad(item, f"unknown kind {kind!r} (float, log, int, choice)")
    try:
        hint = field_type(key)
    except ConfigError as exc:
        raise _bad(item, str(exc)) from None
    if kind == "choice":
        texts = _split_choices(body)
        if not any(texts) or not all(texts):
            raise _bad(item, "give one or more values: choice:A|B|...")
        values = tuple(_checked(base, key, _literal(t), item) for t in texts)
        if len(set(values)) != len(values):
            raise _bad(item, "a value is given twice")
        return Dimension(key, "choice", integer=hint is int, choices=values)
    dimension = _range(item, key, kind, body, hint)
    for end in (dimension.low, dimension.high):
        _checked(base, key, end, item)
    return dimension


def parse_space(
    items: Sequence[str], base: ExperimentConfig, sets: Mapping[str, Any] | None = None
) -> Space:
    """``--space`` items -> a :class:`Space`, checked against ``base`` (the config trials
    start from); ConfigError naming the item on the first problem. A key also given with
    ``--set`` is refused (the space would silently win over it)."""
    if not items:
        raise ConfigError(f"--space: give at least one {SYNTAX}")
    dimensions: dict[str, Dimension] = {}
    for item in items:
        dimension = _dimension(item, base)
        if dimension.key in dimensions:
            raise _bad(item, f"{dimension.key} is in --space twice")
        if sets and dimension.key in sets:
            raise _bad(item, f"{dimension.key} is also given with --set: drop one of them")
        dimensions[dimension.key] = dimension
    return Space(tuple(dimensions.values()))
