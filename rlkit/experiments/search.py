"""The `search:` block of a config: which keys `rlkit tune` varies, and over what.

    search:
      optimizer.lr: {log_uniform: [1.0e-5, 1.0e-2]}
      network.hidden_sizes: {choice: [[64, 64], [256, 256]]}
      gamma: {one_minus_log_uniform: [1.0e-3, 0.05]}   # 1 - gamma log-uniform: 0.95 .. 0.999
      n_epochs: {int: [4, 20]}
      gae_lambda: {uniform: [0.8, 1.0]}

A key is a dotted path into the config, as with `--set`. The block is plain data, checked here
without Optuna (and without torch): `SearchSpace.parse` gives one `Dimension` per key, and a
dimension draws its value through any object with Optuna's `suggest_float`,
`suggest_int` and `suggest_categorical` (an Optuna trial), so the same space serves rlkit's own
trial loop and Ray Tune's OptunaSearch. `rlkit train` ignores the block.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from rlkit.base.config import ConfigError, unknown_key_message

SEARCH_KEY = "search"
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice", "one_minus_log_uniform")


@dataclass(frozen=True)
class Dimension:
    """One searched key: `kind` is one of DISTRIBUTIONS; `low`/`high` bound the numeric ones,
    `choices` lists the values of a choice."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    @property
    def param_name(self) -> str:
        """The parameter's name in the Optuna study: the key, except that a
        one_minus_log_uniform key is stored as what is drawn, `1-<key>`."""
        return f"1-{self.key}" if self.kind == "one_minus_log_uniform" else self.key

    def suggest(self, trial: Any) -> Any:
        """The config value for this trial, drawn through Optuna's suggest API."""
        if self.kind == "log_uniform":
            return trial.suggest_float(self.param_name, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.param_name, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.param_name, int(self.low), int(self.high))
        if self.kind == "one_minus_log_uniform":
            return 1.0 - trial.suggest_float(self.param_name, self.low, self.high, log=True)
        label = trial.suggest_categorical(self.param_name, [_label(c) for c in self.choices])
        return self.value_of(label)

    def value_of(self, param: Any) -> Any:
        """The config value of the parameter Optuna stored (a choice's label, or 1 - x)."""
        if self.kind == "one_minus_log_uniform":
            return 1.0 - float(param)
        if self.kind == "choice":
            for choice in self.choices:
                if _label(choice) == param:
                    return choice
            raise KeyError(f"{param!r} is not a choice of {self.key}")
        return param

    def extremes(self) -> list[Any]:
        """Config values at the ends of the range (every choice): what the agent's own checks
        see before any trial runs, so a range the agent refuses fails at once."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        if self.kind == "one_minus_log_uniform":
            return [1.0 - self.low, 1.0 - self.high]
        return [self.low, self.high]


def _label(choice: Any) -> Any:
    """Optuna stores a categorical value as None, bool, int, float or str; a list or mapping
    choice is stored as its YAML flow text, '[64, 64]'."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return yaml.safe_dump(choice, default_flow_style=True).strip()


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    @classmethod
    def parse(cls, block: Any, where: str = SEARCH_KEY) -> SearchSpace:
        """Check a `search:` block and return its space; ConfigError names what is wrong."""
        if not isinstance(block, Mapping) or not block:
            raise ConfigError(
                f"{where}: expected a mapping of dotted config keys to distributions, e.g. "
                "optimizer.lr: {log_uniform: [1.0e-5, 1.0e-2]}"
            )
        return cls(tuple(_dimension(key, spec, where) for key, spec in block.items()))

    def suggest(self, trial: Any) -> dict[str, Any]:
        """{dotted key: config value} for one trial."""
        return {d.key: d.suggest(trial) for d in self.dimensions}

    def values_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """{dotted key: config value} from the parameters an Optuna trial stored."""
        return {d.key: d.value_of(params[d.param_name]) for d in self.dimensions}


def _dimension(key: Any, spec: Any, where: str) -> Dimension:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key such as optimizer.lr")
    place = f"{where}.{key}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(
            f"{place}: expected one distribution, e.g. {{log_uniform: [1.0e-5, 1.0e-2]}}; "
            f"one of {', '.join(DISTRIBUTIONS)}"
        )
    ((kind, args),) = spec.items()
    if kind not in DISTRIBUTIONS:
        message = unknown_key_message(kind, DISTRIBUTIONS, place)
        raise ConfigError(message.replace("unknown config key", "unknown distribution"))
    if kind == "choice":
        if isinstance(args, str) or not isinstance(args, list) or not args:
            raise ConfigError(f"{place}: choice expects a non-empty list of values")
        labels = [_label(c) for c in args]
        if len(set(map(repr, labels))) != len(labels):
            raise ConfigError(f"{place}: choice lists a value twice")
        return Dimension(key, kind, choices=tuple(args))
    if not isinstance(args, list) or len(args) != 2 or not all(_is_number(a) for a in args):
        raise ConfigError(f"{place}: {kind} expects [low, high], two numbers; got {args!r}")
    low, high = (float(_number(a)) for a in args)
    if not low < high:
        raise ConfigError(f"{place}: {kind} bounds must be low < high, got [{args[0]}, {args[1]}]")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{place}: int expects integer bounds, got [{args[0]}, {args[1]}]")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{place}: log_uniform needs low > 0, got {args[0]}")
    if kind == "one_minus_log_uniform" and not (low > 0 and high <= 1):
        raise ConfigError(
            f"{place}: one_minus_log_uniform draws 1 - value log-uniformly; its bounds must be "
            f"in (0, 1], got [{args[0]}, {args[1]}]"
        )
    return Dimension(key, kind, low, high)


def _number(value: Any) -> float | None:
    # YAML 1.1 reads 1e-3 (no dot) as a string, as elsewhere in rlkit's configs.
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_number(value: Any) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)
