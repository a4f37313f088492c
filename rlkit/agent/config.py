"""The settings every agent has (`AgentConfig`: the env, seeding, device, periodic evaluation),
which each agent's config extends, and an agent's config built from what its constructor got."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import envs
from envs.atari import AtariConfig
from rlkit.agent.evaluation import overlapping_seed_sets
from rlkit.base.config import (
    Config,
    check_choice,
    config_from_dict,
    require,
)
from rlkit.base.errors import ConfigError
from rlkit.base.precision import MATMUL_PRECISIONS


@dataclasses.dataclass
class AgentConfig(Config):
    """Settings every agent has: the environment, seeding, device, and the periodic evaluation
    that the shared run loop (`Agent.learn`) does. Each agent's config adds its own."""

    env: str = "CartPole-v1"
    """Gymnasium environment id; "module:Name-v0" imports module first (your own env)."""
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keyword arguments of the env's constructor, as gym.make takes them (SB3's env_kwargs),
    e.g. {continuous: true} for LunarLander-v3; for training, evaluation and videos alike."""
    atari: AtariConfig = dataclasses.field(default_factory=AtariConfig)
    """Atari games only (ALE/<Game>-v5, <Game>NoFrameskip-v4): the preprocessing, each step a
    setting (envs.atari; the defaults are SB3's AtariWrapper with a 4-frame stack)."""
    observation_mask: list[int] = dataclasses.field(default_factory=list)
    """Entries of a flat Box observation that the agent reads as 0, in training, evaluation and
    videos alike: a partially observable version of any task (as CartPoleNoVel-v1 is of
    CartPole-v1: observation_mask [1, 3]). Empty: the observation as it is."""
    n_envs: int = 1
    """Copies of the environment stepped together (a gymnasium vector env)."""
    seed: int = 0
    """Seeds network init, the agent's random draws and the training environments."""
    device: str = "auto"
    """auto (CUDA when available, else CPU), cpu, cuda or cuda:N."""
    eval_interval: int = 0
    """Environment steps between two evaluations on the validation seeds during training, each
    logged as eval/* and the best agent kept as best_agent.safetensors (0: none)."""
    eval_episodes: int = 20
    """Episodes per evaluation (periodic ones and the one after `rlkit train`; 0: none)."""
    eval_seed: int | None = None
    """First seed of the validation episodes (null: seed + 20,000; never the training seeds nor
    the test seeds of `rlkit eval`, seed + 10,000)."""
    eval_deterministic: bool = True
    """Evaluate the greedy policy (false: the exploring or sampling one)."""
    stop_at_return: float | None = None
    """Stop training once `stop_patience` evaluations in a row reach this mean return (null:
    train for the whole budget)."""
    stop_patience: int = 1
    """Evaluations in a row at or above `stop_at_return` that stop training."""
    action_bounds: list[float] | None = None
    """Continuous actions: [low, high] for the action dimensions the env's Box leaves unbounded
    (the agent's actions are scaled and clipped to them); null: the Box must be bounded."""
    matmul_precision: str = "highest"
    """torch.set_float32_matmul_precision while `learn` runs (restored after): highest, high,
    medium or onednn. medium hands float32 products on the CPU to oneDNN, which computes in
    bfloat16 where it has a fast kernel for it (AMX): faster, and the agent learns something
    else; an opt-in. onednn is medium only where a check on this CPU shows the products keep
    float32's error (oneDNN's float32 kernel, ~2x faster on AVX-512 without AMX), else highest.
    On CUDA, high and medium allow TF32 (onednn: highest). `rlkit train` with this key left out
    measures whether onednn trains the config faster here and records the choice."""

    def validate(self) -> None:
        envs.check_env_id(self.env)
        for key in self.env_kwargs:
            require(isinstance(key, str), f"env_kwargs: keys must be strings, got {key!r}")
        for index in self.observation_mask:
            require(
                type(index) is int and index >= 0,
                f"observation_mask: entries are indices >= 0, got {index!r}",
            )
        limit = self.env_kwargs.get("max_episode_steps")
        require(
            limit is None or (type(limit) is int and limit >= 1),
            f"env_kwargs.max_episode_steps must be an integer >= 1 or null, got {limit!r}",
        )
        require(self.n_envs >= 1, f"n_envs must be >= 1, got {self.n_envs}")
        require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        require(self.eval_interval >= 0, f"eval_interval must be >= 0, got {self.eval_interval}")
        require(self.eval_episodes >= 0, f"eval_episodes must be >= 0, got {self.eval_episodes}")
        require(
            self.eval_interval == 0 or self.eval_episodes >= 1,
            f"eval_interval {self.eval_interval} needs eval_episodes >= 1, got "
            f"{self.eval_episodes}",
        )
        if self.eval_seed is not None:
            require(self.eval_seed >= 0, f"eval_seed must be >= 0 or null, got {self.eval_seed}")
            overlap = overlapping_seed_sets(
                self.seed, self.n_envs, self.eval_seed, self.eval_episodes
            )
            require(
                overlap is None,
                f"eval_seed {self.eval_seed} overlaps the {overlap}; validation episodes must "
                "be ones the agent neither trains nor is tested on (null picks seed + 20,000)",
            )
        if self.stop_at_return is not None:
            require(
                math.isfinite(self.stop_at_return),
                f"stop_at_return must be a finite number or null, got {self.stop_at_return}",
            )
            require(
                self.eval_interval > 0,
                "stop_at_return needs periodic evaluation: set eval_interval > 0",
            )
        require(self.stop_patience >= 1, f"stop_patience must be >= 1, got {self.stop_patience}")
        check_choice("matmul_precision", self.matmul_precision, MATMUL_PRECISIONS)
        if self.action_bounds is not None:
            bounds = self.action_bounds
            require(
                isinstance(bounds, list | tuple)
                and len(bounds) == 2
                and all(isinstance(b, int | float) and math.isfinite(b) for b in bounds)
                and bounds[0] < bounds[1],
                f"action_bounds must be [low, high] with finite low < high, got {bounds}",
            )


def build_config(cls: type, config: Any, env: str | None, overrides: dict[str, Any]):
    """An agent's config from a config object or mapping, `env`, and keyword overrides."""
    if isinstance(config, cls):
        data = config.to_dict()
    elif config is None:
        data = {}
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ConfigError(
            f"config must be a {cls.__name__} or a mapping, got {type(config).__name__}"
        )
    if env is not None:
        data["env"] = env
    data.update(overrides)
    return config_from_dict(cls, data)
