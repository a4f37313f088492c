"""Typed configs: dataclasses checked on construction, loaded from YAML with a safe loader.

Every agent has one config dataclass (a field per hyperparameter, each with a one-line
comment). `Config.__post_init__` coerces and type-checks every field from its annotation and
then calls `validate()` for ranges, so a config is valid however it was built: from YAML, from
`--set` overrides on the command line, or from keyword arguments in Python.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import inspect
import itertools
import math
import numbers
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlkit.base.errors import ConfigError, ConfigTypeError


def _type_name(value: Any) -> str:
    return type(value).__name__


def _numeric_string(value: str) -> float | None:
    # PyYAML follows YAML 1.1, which reads `1e-3` (no dot) as a string; accept such literals.
    try:
        return float(value)
    except ValueError:
        return None


def coerce(annotation: Any, value: Any, where: str) -> Any:
    """Convert `value` to `annotation` where that is unambiguous, else raise ConfigTypeError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, where)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            from_mapping = getattr(annotation, "from_mapping", None)
            if from_mapping is not None:
                return from_mapping(value, where)
            return config_from_dict(annotation, value, where)
        raise ConfigTypeError(f"{where}: expected a mapping, got {_type_name(value)} {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigTypeError(f"{where}: expected true or false, got {_type_name(value)} {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigTypeError(f"{where}: expected an integer, got bool {value!r}")
        if isinstance(value, numbers.Integral):
            return int(value)
        number = _numeric_string(value) if isinstance(value, str) else value
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
        raise ConfigTypeError(f"{where}: expected an integer, got {_type_name(value)} {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigTypeError(f"{where}: expected a number, got bool {value!r}")
        number = _numeric_string(value) if isinstance(value, str) else value
        if not isinstance(number, numbers.Real):
            raise ConfigTypeError(f"{where}: expected a number, got {_type_name(value)} {value!r}")
        # No setting means anything at inf or nan (YAML's .inf, .nan): they would only turn the
        # run's numbers into nan later, far from the cause.
        if not math.isfinite(number):
            raise ConfigTypeError(f"{where}: expected a finite number, got {float(number)}")
        return float(number)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigTypeError(f"{where}: expected a string, got {_type_name(value)} {value!r}")
    if annotation in (list, tuple, dict):
        origin = annotation
    if origin in (list, tuple, Sequence):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigTypeError(f"{where}: expected a list, got {_type_name(value)} {value!r}")
        inner = args[0] if args else Any
        return [coerce(inner, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigTypeError(f"{where}: expected a mapping, got {_type_name(value)} {value!r}")
        return dict(value)
    raise TypeError(f"config annotation {annotation!r} is not supported")  # a bug, not user error


# Stable-Baselines3's and the RL Zoo's names for settings that rlkit spells otherwise (by their
# dotted place in a config): a user bringing a Zoo config gets rlkit's name, not a close match
# that means something else (`learning_rate` is one letter-run from `learning_starts`).
SB3_NAMES = {
    "learning_rate": "optimizer.lr",
    "optimizer.learning_rate": "lr",
    "net_arch": "network.hidden_sizes",
    "activation_fn": "network.activation",
    "policy_kwargs": "network (hidden_sizes, activation, init)",
    "policy": "network (hidden_sizes, activation, init): the agents build their own MLPs",
    "n_timesteps": "total_steps",
    "total_timesteps": "total_steps",
    "normalize": "normalize_obs and normalize_reward",
    "noise_std": "action_noise (the Gaussian exploration noise's std)",
    "noise_type": "action_noise (the Gaussian exploration noise's std)",
    "env_id": "env",
    "env_name": "env",
}


# Stable-Baselines3 settings with no rlkit counterpart, each with what rlkit does instead: a Zoo
# config that sets one gets that, not a list of every valid key.
SB3_ONLY = {
    "use_sde": "gSDE exploration is not built; the Gaussian policies explore by sampling",
    "sde_sample_freq": "gSDE exploration is not built",
    "use_sde_at_warmup": "gSDE exploration is not built",
    "optimize_memory_usage": "the replay buffer has no memory-optimized layout",
    "replay_buffer_class": "one replay buffer (and prioritized replay for DQN); HER is not built",
    "replay_buffer_kwargs": "one replay buffer (and prioritized replay for DQN); HER is not built",
    "target_update_interval": "SAC and TD3 move their targets at every update (TD3: with the "
    "actor, every policy_delay)",
    "tensorboard_log": "each run writes its TensorBoard files into its run folder (--run-dir)",
    "verbose": "the CLI prints a progress bar (--no-progress: none)",
    "stats_window_size": "episode returns are logged one by one (rollout/episodic_return)",
}

# The RL Zoo's keys of its hyperparameter files that rlkit has no counterpart for (its
# env_kwargs, n_timesteps, policy and policy_kwargs are read or renamed above).
ZOO_ONLY = {
    "normalize": "observation and reward normalization is built for REINFORCE, A2C and PPO "
    "(normalize_obs, normalize_reward)",
    "normalize_kwargs": "observation and reward normalization: normalize_obs and "
    "normalize_reward (REINFORCE, A2C and PPO)",
    "env_wrapper": "wrappers are not read from a config: register the wrapped env with "
    "gymnasium in a module of yours and set env: module:Name-v0 (docs/guide/environments.md)",
    "frame_stack": "frame stacking is not built: the agents are MLPs over one observation",
    "callback": "callbacks are not read from a config: the run loop logs, evaluates "
    "(eval_interval), keeps the best agent and stops at stop_at_return",
}


def unknown_key_message(key: Any, known: Sequence[str], where: str) -> str:
    place = f" in {where}" if where else ""
    ours = SB3_NAMES.get(_join(where, str(key)))
    if ours is not None and ours.split()[0].split(".")[0] in known:
        return f"unknown config key {key!r}{place} (Stable-Baselines3's name); rlkit's: {ours}"
    for table, whose in ((SB3_ONLY, "a Stable-Baselines3 setting"), (ZOO_ONLY, "an RL Zoo key")):
        instead = None if where else table.get(str(key))
        if instead is not None:
            return f"unknown config key {key!r} ({whose} rlkit does not have): {instead}"
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    if close:
        return f"unknown config key {key!r}{place}; did you mean {close[0]!r}?"
    return f"unknown config key {key!r}{place}; valid keys: {', '.join(sorted(known))}"


def config_from_dict(
    cls: type, data: Mapping[str, Any], where: str = "", also_known: Sequence[str] = ()
):
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a close-match hint."""
    if not isinstance(data, Mapping):
        raise ConfigTypeError(f"{where or 'config'}: expected a mapping, got {_type_name(data)}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    translate = getattr(cls, "translate_input", None)
    if translate is not None:  # other spellings of a setting (e.g. SAC's ent_coef: auto)
        data = translate(dict(data))
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key_message(key, [*names, *also_known], where))
    hints = typing.get_type_hints(cls)
    kwargs = {key: coerce(hints[key], value, _join(where, key)) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if where and not str(error).startswith(where):
            raise type(error)(f"{where}.{error}") from None
        raise


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class Config:
    """Mixin for config dataclasses: type-check every field, then `validate()` the ranges."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            setattr(self, field.name, coerce(hints[field.name], value, field.name))
        self.validate()

    def validate(self) -> None:
        """Range checks; raise ConfigError naming the field, the value and what is allowed."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (nested configs as dicts), as it would be written in YAML."""
        result: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            result[field.name] = (
                value.to_dict() if isinstance(value, Config) else copy.deepcopy(value)
            )
        return result


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass (its own and its bases'), read from
    the source: the one description of a setting, shown by the config reference in the docs."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_class_field_docs(klass))
    return docs


@functools.cache
def _class_field_docs(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for node, after in itertools.pairwise(body):
        is_doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = inspect.cleandoc(str(after.value.value))
    return docs


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition` holds (unlike assert, never stripped)."""
    if not condition:
        raise ConfigError(message)


def check_positive(name: str, value: float) -> None:
    require(
        isinstance(value, int | float) and math.isfinite(value) and value > 0,
        f"{name} must be a finite number > 0, got {value!r}",
    )


def check_non_negative(name: str, value: float) -> None:
    require(
        isinstance(value, int | float) and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number >= 0, got {value!r}",
    )


def check_unit_interval(name: str, value: float) -> None:
    require(
        isinstance(value, int | float) and 0.0 <= value <= 1.0,
        f"{name} must be in [0, 1], got {value!r}",
    )


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(choices)}"
        raise ConfigError(f"{name}: unknown value {value!r}{hint}")


# ----------------------------------------------------------------------------- YAML files


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config with the safe loader: plain data only, never Python objects."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"config path is a folder, not a YAML file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {_type_name(data)}")
    sections = zoo_sections(data)
    if sections:
        raise ConfigError(
            f"{path} is an RL Zoo hyperparameter file (a section per env: "
            f"{', '.join(sections[:3])}{', ...' if len(sections) > 3 else ''}); an rlkit config "
            "is one flat mapping with agent: and env: keys, as configs/dqn_cartpole_zoo.yaml "
            "writes the Zoo's CartPole-v1 DQN"
        )
    return data


_ENV_ID = re.compile(r"^[\w:./-]+-v\d+$")


def zoo_sections(data: Mapping[str, Any]) -> list[str]:
    """The env ids heading the sections of an RL Zoo hyperparameter file (`Pendulum-v1: {...}`,
    each a mapping), or [] for anything else."""
    keys = [str(key) for key in data]
    looks_like_zoo = (
        all(isinstance(value, Mapping) for value in data.values())
        and any(_ENV_ID.match(key) for key in keys)
        and not {"agent", "env"} & set(keys)
    )
    return keys if looks_like_zoo else []


def dump_yaml(data: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `dotted.key=value` overrides (values parsed as YAML: 3e-4, [64, 64], true)."""
    result = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects dotted.key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
        result = set_dotted(result, key, value, where=f"--set {key}")
    return result


def set_dotted(data: Mapping[str, Any], key: str, value: Any, where: str) -> dict[str, Any]:
    """A copy of nested config data with the dotted `key` set to `value` (sections on the way
    copied, or made); ConfigError, prefixed with `where`, if a part of the path is a value."""
    result = dict(data)
    node = result
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            raise ConfigError(f"{where}: {part!r} is not a section")
        node[part] = child = dict(child)
        node = child
    node[parts[-1]] = value
    return result
