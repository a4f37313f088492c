"""What every rlkit agent shares: config, device, seeding, environments, acting, evaluation,
saving and loading. Each agent subclasses `Agent` once (no deeper towers) and adds its networks,
its `learn` loop and its update step.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.state import get_state as get_env_state
from envs.state import set_state as set_env_state
from rlkit.checkpoint import (
    CHECKPOINT_FORMAT,
    all_finite,
    flatten_state,
    unflatten_state,
    write_checkpoint,
)
from rlkit.config import Config, config_from_dict
from rlkit.device import resolve_device
from rlkit.errors import AgentFileError, ConfigError, EnvError
from rlkit.evaluation import EvalResult, evaluate
from rlkit.guard import DivergenceGuard
from rlkit.recorder import Recorder, RunMonitor
from rlkit.serialization import load_tensors, save_tensors

AGENT_FILE_FORMAT = "rlkit.agent"


class CheckpointWarning(RuntimeWarning):
    """A periodic checkpoint could not be written; training went on."""


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
        # The current `learn` call: where it started and how far it goes. Schedules (epsilon,
        # learning rate, clip range) are positions within it, so a resumed run needs it.
        self._run: dict[str, int] | None = None
        self.lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scheduler_state: dict[str, Any] | None = None  # restored, applied in learn
        self.stop_requested = False  # set (e.g. by a SIGINT handler) to end `learn` cleanly
        self.guard: DivergenceGuard | None = None  # built by the subclass with its optimizer

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

    def _make_guard(self, modules: Mapping[str, torch.nn.Module]) -> DivergenceGuard:
        """The divergence guard over `modules` and `self.optimizer` (see rlkit.guard)."""
        self.guard = DivergenceGuard(self.config.divergence, modules, self.optimizer)
        return self.guard

    def _save_diverged(
        self, run_dir: str | Path | None, keep_last: int, monitor: RunMonitor
    ) -> None:
        """The guard gave up and put the last good state back: log its final counts and keep
        that state as a checkpoint."""
        if monitor.recording:
            monitor.record_scalars(self.guard.scalars(), self.global_step)
        if run_dir is not None:
            self.save_checkpoint(run_dir, keep_last)

    def _check_total_steps(self, total_steps: Any) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")

    def _begin_run(
        self,
        total_steps: int | None,
        resume: bool,
        checkpoint_interval: int = 0,
        keep_checkpoints: int = 3,
    ) -> tuple[int, int]:
        """(start step, end step) of this `learn` call; a resumed run keeps its original ones."""
        for name, value, least in (
            ("checkpoint_interval", checkpoint_interval, 0),
            ("keep_checkpoints", keep_checkpoints, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
        if resume:
            if self._run is None:
                raise ConfigError("nothing to resume: load a checkpoint first")
            return self._run["start_step"], self._run["start_step"] + self._run["total_steps"]
        self._check_total_steps(total_steps)
        self._run = {"start_step": self.global_step, "total_steps": total_steps}
        self._scheduler_state = None
        return self.global_step, self.global_step + total_steps

    def _make_lr_scheduler(self, total_updates: int) -> torch.optim.lr_scheduler.LRScheduler:
        from rlkit.optim import build_lr_scheduler

        scheduler = build_lr_scheduler(self.optimizer, self.config.lr_schedule, total_updates)
        if self._scheduler_state is not None:  # resuming: continue where the schedule was
            scheduler.load_state_dict(self._scheduler_state)
            self._scheduler_state = None
        self.lr_scheduler = scheduler
        return scheduler

    def _start_run(
        self,
        total_steps: int,
        run_dir: str | Path | None,
        progress: bool,
        checkpoint_interval: int,
        extra_config: Mapping[str, Any] | None,
        resume: bool = False,
    ) -> RunMonitor:
        """The run's monitor; with `run_dir`, also its config.yaml and TensorBoard config (a
        resumed run appends to the TensorBoard run from the checkpoint's step on)."""
        run_config = {
            "agent": self.name,
            "total_steps": total_steps,
            **(extra_config or {}),
            "checkpoint_interval": checkpoint_interval,
            **self.config.to_dict(),
        }
        end_step = self._run["start_step"] + self._run["total_steps"]
        return RunMonitor(
            run_dir, end_step, progress, run_config, self.metric_tags, self.global_step,
            # The interrupted run logged everything up to the checkpoint's step; what it logged
            # after that is superseded by this run.
            resume_step=self.global_step + 1 if resume else None,
        )  # fmt: skip

    def _checkpoint(
        self, run_dir: str | Path | None, interval: int, previous_step: int, keep_last: int = 3
    ) -> None:
        """Every `interval` steps, a full training checkpoint in run_dir/checkpoints/.

        A write that fails (disk full, quota, permissions) does not end the run: the previous
        checkpoints are intact (atomic writes), the failure is reported as a warning, and the
        next interval tries again."""
        due = run_dir is not None and interval > 0
        if due and crossed(previous_step, self.global_step, interval):
            try:
                self.save_checkpoint(run_dir, keep_last)
            except OSError as error:
                warnings.warn(
                    f"checkpoint at step {self.global_step} not written ({error}); the previous "
                    "checkpoints are intact and training goes on",
                    CheckpointWarning,
                    stacklevel=2,
                )

    # ------------------------------------------------------------------ checkpoints

    def _extra_state(self) -> dict[str, Any]:
        """Agent-specific training state (buffers, collectors, counters) as nested dicts of
        tensors, arrays and plain values."""
        return {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue training exactly: networks, optimizer, schedule,
        buffers, counters, every random number generator and the environments' state."""
        tensors = {
            f"model.{k}": v.detach().to("cpu").clone() for k, v in self._state_tensors().items()
        }
        rng = {
            "numpy": self.rng.bit_generator.state,
            "python": random.getstate(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        env_tensors, env_state = get_env_state(self.env)
        tensors.update({f"env.{k}": v for k, v in env_tensors.items()})
        scheduler = self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None
        state = {
            "format": CHECKPOINT_FORMAT,
            "agent": type(self).__name__,
            "config": self.config.to_dict(),
            "counters": {
                "global_step": self.global_step,
                "n_updates": self.n_updates,
                "n_episodes": self.n_episodes,
            },
            "run": self._run,
            "env": env_state,
            "obs": flatten_state(self._obs, "obs", tensors),
            "optimizer": flatten_state(self.optimizer.state_dict(), "optimizer", tensors),
            "lr_scheduler": flatten_state(scheduler, "lr_scheduler", tensors),
            "rng": flatten_state(rng, "rng", tensors),
            "extra": flatten_state(self._extra_state(), "extra", tensors),
            "guard": self.guard.state_dict() if self.guard is not None else None,
        }
        return tensors, state

    def save_checkpoint(self, run_dir: str | Path, keep_last: int = 3) -> Path | None:
        """Write a checkpoint into run_dir/checkpoints/ (atomic, checksummed, newest
        `keep_last` kept). Refuses to write non-finite weights or optimizer state: a checkpoint
        is a state worth returning to. Returns the manifest path, or None if refused."""
        tensors, state = self.checkpoint_state()
        if not all_finite(tensors.values()):
            return None
        return write_checkpoint(run_dir, self.global_step, tensors, state, keep_last)

    def restore_checkpoint(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if state.get("agent") != type(self).__name__:
            raise AgentFileError(
                f"the checkpoint is of a {state.get('agent')} agent, not {type(self).__name__}"
            )
        self._load_state_tensors(
            {
                k.removeprefix("model."): v.to(self.device)
                for k, v in tensors.items()
                if k.startswith("model.")
            }
        )
        counters = state["counters"]
        self.global_step = counters["global_step"]
        self.n_updates = counters["n_updates"]
        self.n_episodes = counters["n_episodes"]
        self._run = state["run"]
        set_env_state(
            self.env,
            {k.removeprefix("env."): v for k, v in tensors.items() if k.startswith("env.")},
            state["env"],
        )
        self._obs = unflatten_state(state["obs"], tensors)
        self.optimizer.load_state_dict(unflatten_state(state["optimizer"], tensors))
        self._scheduler_state = unflatten_state(state["lr_scheduler"], tensors)
        rng = unflatten_state(state["rng"], tensors)
        self.rng.bit_generator.state = rng["numpy"]
        random.setstate(_as_tuple(rng["python"]))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._restore_extra_state(unflatten_state(state["extra"], tensors))
        if self.guard is not None and state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])

    @classmethod
    def from_checkpoint_state(
        cls, tensors: dict[str, torch.Tensor], state: dict[str, Any], device: str | None = None
    ):
        """An agent rebuilt from a checkpoint's contents (see `agents.from_checkpoint`); on the
        run's own device setting unless `device` is given."""
        config = dict(state["config"])
        if device is not None:
            config["device"] = device
        agent = cls(config=config)
        agent.restore_checkpoint(tensors, state)
        return agent

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


def clip_gradients(grads: list[torch.Tensor], grad_norm: float, max_norm: float | None) -> None:
    """torch.nn.utils.clip_grad_norm_'s scaling, max_norm / (norm + 1e-6) where that is below 1,
    with the norm already read on the host (the update's one read). A non-finite norm is left
    alone: the divergence guard drops that update."""
    if max_norm is None or not math.isfinite(grad_norm):
        return
    factor = max_norm / (grad_norm + 1e-6)
    if factor < 1.0:
        torch._foreach_mul_(grads, factor)


def crossed(previous: int, current: int, interval: int) -> bool:
    """True when a multiple of `interval` lies in (previous, current]: with N env copies the step
    counter moves by N, so `step % interval == 0` would skip intervals N does not divide."""
    return multiples_between(previous, current, interval) > 0


def _as_tuple(value: Any) -> Any:
    """Python's random state is nested tuples; JSON gives lists back."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
