"""What every rlkit agent shares: config, device, seeding, environments, acting, evaluation,
saving and loading. Each agent subclasses `Agent` once (no deeper towers) and adds its networks,
its `learn` loop and its update step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

import envs
from rlkit.config import Config, config_from_dict
from rlkit.device import resolve_device
from rlkit.errors import ConfigError, EnvError
from rlkit.evaluation import EvalResult, evaluate
from rlkit.recorder import Recorder, RunMonitor
from rlkit.serialization import load_tensors, save_tensors

AGENT_FILE_FORMAT = "rlkit.agent"


def check_spaces(agent: str, env_id: str, observation_space: gym.Space, action_space: gym.Space):
    """rlkit's agents take a flat vector observation and choose among a finite set of actions;
    say so in user terms before anything runs."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise EnvError(
            f"{agent} needs a Discrete action space, but {env_id} has {action_space}; "
            "use an agent for continuous actions or discretise the actions with a wrapper"
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise EnvError(
            f"{agent}'s MLP needs flat vector observations (a Box of shape (n,)), but {env_id} "
            f"has {observation_space}; wrap the env (e.g. gymnasium.wrappers.FlattenObservation)"
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


class Agent:
    """Base of rlkit's agents. Subclasses set `Config`, `name` and `metric_tags`, build their
    networks after `super().__init__`, and implement `_act`, `learn` and `_state_tensors`."""

    Config: ClassVar[type[Config]]
    name: ClassVar[str]
    metric_tags: ClassVar[tuple[str, ...]] = ("rollout/episodic_return", "eval/mean_return")

    def __init__(self, env: str | None = None, config: Any = None, **overrides: Any) -> None:
        self.config = build_config(type(self).Config, config, env, overrides)
        cfg = self.config
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # network initialisation
        self.rng = np.random.default_rng(cfg.seed)  # the agent's own draws (exploration)
        self.env = envs.make(
            cfg.env, n_envs=cfg.n_envs, vectorization=getattr(cfg, "vectorization", "sync")
        )
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        check_spaces(type(self).__name__, cfg.env, self.observation_space, self.action_space)
        self.obs_shape = tuple(self.observation_space.shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        self.n_actions = int(self.action_space.n)
        self.global_step = 0  # environment steps taken, summed over copies
        self.n_updates = 0  # gradient steps taken
        self.n_episodes = 0
        self._obs: np.ndarray | None = None  # the vector env's current observations

    # ------------------------------------------------------------------ acting

    def _obs_tensor(self, obs: Any) -> tuple[torch.Tensor, bool]:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.shape == self.obs_shape
        if not single and obs.shape[1:] != self.obs_shape:
            raise ValueError(
                f"observation shape {obs.shape} does not match the agent's "
                f"{self.obs_shape} (or a batch of them)"
            )
        tensor = torch.as_tensor(obs, device=self.device)
        return (tensor.reshape(1, -1) if single else tensor.reshape(obs.shape[0], -1)), single

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (a scalar) or a batch (an array); `deterministic` picks
        the greedy action, otherwise the agent's exploring or sampling policy acts."""
        obs_tensor, single = self._obs_tensor(obs)
        actions = self._act(obs_tensor, deterministic)
        return actions[0] if single else actions

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ training runs

    def _check_total_steps(self, total_steps: Any) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")

    def _start_run(
        self,
        total_steps: int,
        run_dir: str | Path | None,
        progress: bool,
        checkpoint_interval: int,
        extra_config: Mapping[str, Any] | None,
    ) -> RunMonitor:
        """The run's monitor; with `run_dir`, also its config.yaml and TensorBoard config."""
        run_config = {
            "agent": self.name,
            "total_steps": total_steps,
            **(extra_config or {}),
            "checkpoint_interval": checkpoint_interval,
            **self.config.to_dict(),
        }
        end_step = self.global_step + total_steps
        return RunMonitor(
            run_dir, end_step, progress, run_config, self.metric_tags, self.global_step
        )

    def _checkpoint(self, run_dir: str | Path | None, interval: int, previous_step: int) -> None:
        """Every `interval` steps, an agent file in run_dir/checkpoints/."""
        if (
            run_dir is not None
            and interval > 0
            and crossed(previous_step, self.global_step, interval)
        ):
            self.save(Path(run_dir) / "checkpoints" / f"step_{self.global_step:09d}.safetensors")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, n_episodes: int = 20, seed: int = 0) -> EvalResult:
        """Greedy episodes on fresh copies of the training env."""
        return evaluate(
            lambda obs: self.act(obs, deterministic=True), self.config.env, n_episodes, seed
        )

    def record_eval(self, run_dir: str | Path, result: EvalResult) -> None:
        recorder = Recorder(run_dir)
        recorder.scalar("eval/mean_return", result.mean_return, self.global_step)
        recorder.scalar("eval/std_return", result.std_return, self.global_step)
        recorder.close()

    # ------------------------------------------------------------------ saving

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that make up the agent (network weights)."""
        raise NotImplementedError

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the agent (networks + config) to one safetensors file; no pickle involved."""
        path = Path(path)
        metadata = {
            "format": AGENT_FILE_FORMAT,
            "format_version": 1,
            "agent": type(self).__name__,
            "config": self.config.to_dict(),
            "global_step": self.global_step,
            "n_updates": self.n_updates,
            "obs_shape": list(self.obs_shape),
            "n_actions": self.n_actions,
        }
        save_tensors(path, self._state_tensors(), metadata)
        return path

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], device: str):
        config = dict(metadata["config"])
        config["device"] = device
        agent = cls(config=config)
        if (
            list(agent.obs_shape) != metadata["obs_shape"]
            or agent.n_actions != metadata["n_actions"]
        ):
            raise EnvError("the saved agent's observation or action space does not match its env")
        agent._load_state_tensors({k: v.to(agent.device) for k, v in tensors.items()})
        agent.global_step = int(metadata["global_step"])
        agent.n_updates = int(metadata["n_updates"])
        return agent

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        tensors, metadata = load_tensors(path)
        return cls.from_saved(tensors, metadata, device)

    def close(self) -> None:
        self.env.close()


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `tensors` under `prefix`, with the prefix removed (a module's state)."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def multiples_between(previous: int, current: int, interval: int) -> int:
    """How many multiples of `interval` lie in (previous, current]."""
    return max(current // interval - previous // interval, 0)


def crossed(previous: int, current: int, interval: int) -> bool:
    """True when a multiple of `interval` lies in (previous, current]: with N env copies the step
    counter moves by N, so `step % interval == 0` would skip intervals N does not divide."""
    return multiples_between(previous, current, interval) > 0
