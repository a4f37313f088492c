"""What every rlkit agent shares: config, device, seeding, environments, acting, evaluation,
saving and loading. Each agent subclasses `Agent` once (no deeper towers) and adds its networks,
its `learn` loop and its update step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.state import get_state as get_env_state
from envs.state import set_state as set_env_state
from rlkit.agent.evaluation import (
    EvalResult,
    ValidationRecord,
    evaluate,
    overlapping_seed_sets,
    seed_for_testing,
    seed_for_validation,
)
from rlkit.agent.guard import DivergenceError, DivergenceGuard
from rlkit.base.config import (
    Config,
    check_choice,
    check_non_negative,
    check_unit_interval,
    config_from_dict,
    require,
)
from rlkit.base.device import resolve_device
from rlkit.base.errors import AgentFileError, ConfigError, EnvError
from rlkit.base.malloc import keep_freed_memory
from rlkit.base.threads import single_threaded_numpy_blas
from rlkit.io.checkpoint import (
    CHECKPOINT_FORMAT,
    all_finite,
    flatten_state,
    unflatten_state,
    write_checkpoint,
)
from rlkit.io.recorder import Recorder, RunMonitor
from rlkit.io.serialization import load_tensors, save_tensors
from rlkit.math.gaussian import to_bounds
from rlkit.nn.normalization import Normalizer, NormalizeVector

AGENT_FILE_FORMAT = "rlkit.agent"
FINAL_AGENT_FILE = "agent.safetensors"
BEST_AGENT_FILE = "best_agent.safetensors"
MATMUL_PRECISIONS = ("highest", "high", "medium")


def describe_state_mismatch(
    expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]
) -> str:
    """'' when `saved` has exactly the tensors (names and shapes) of `expected`, else what
    differs, in a few words."""
    parts = []
    for label, keys in (
        ("missing", sorted(expected.keys() - saved.keys())),
        ("unexpected", sorted(saved.keys() - expected.keys())),
        ("other shape", sorted(k for k in expected.keys() & saved.keys()
                                if tuple(expected[k].shape) != tuple(saved[k].shape))),
    ):  # fmt: skip
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


@dataclasses.dataclass
class AgentConfig(Config):
    """Settings every agent has: the environment, seeding, device, and the periodic evaluation
    that the shared run loop (`Agent.learn`) does. Each agent's config adds its own."""

    env: str = "CartPole-v1"
    """Gymnasium environment id; "module:Name-v0" imports module first (your own env)."""
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keyword arguments of the env's constructor, as gym.make takes them (SB3's env_kwargs),
    e.g. {continuous: true} for LunarLander-v3; for training, evaluation and videos alike."""
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
    """torch.set_float32_matmul_precision while `learn` runs (restored after): highest, high or
    medium. On CPU, medium hands float32 products to oneDNN, allowed to compute in bfloat16
    where it has a fast kernel for it; on the AVX-512 CPU measured it runs a float32 kernel
    instead, float32 results 2x faster at SAC's sizes (README, "SAC Pendulum-v1"). On CUDA,
    high and medium allow TF32."""

    def validate(self) -> None:
        envs.check_env_id(self.env)
        for key in self.env_kwargs:
            require(isinstance(key, str), f"env_kwargs: keys must be strings, got {key!r}")
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


class CheckpointWarning(RuntimeWarning):
    """A periodic checkpoint could not be written; training went on."""


class DeviceChangeWarning(RuntimeWarning):
    """A checkpoint written on one device type resumes on another."""


def seed_from_state(state: torch.Tensor) -> int:
    """A 63-bit seed derived from a generator's saved state: re-seeding a generator of another
    device type from it keeps a resumed run deterministic."""
    digest = hashlib.sha256(state.detach().cpu().contiguous().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """A device generator's state, under its device type (a CUDA generator's state does not
    fit a CPU generator, nor the other way round)."""
    return {"device_type": generator.device.type, "state": generator.get_state()}


def restore_generator(generator: torch.Generator, saved: Any) -> None:
    """Put a state from `generator_state` back; one saved on another device type re-seeds the
    generator from it instead (deterministic, see DeviceChangeWarning)."""
    if isinstance(saved, torch.Tensor):  # older checkpoints: the bare state
        # A CPU (Mersenne Twister) state is 5,056 bytes, a CUDA (Philox) one a few dozen.
        saved = {"device_type": "cpu" if saved.numel() > 256 else "cuda", "state": saved}
    if saved["device_type"] == generator.device.type:
        generator.set_state(saved["state"])
    else:
        generator.manual_seed(seed_from_state(saved["state"]))


def check_spaces(
    agent: str,
    env_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    continuous: bool = False,
    bounds_given: bool = False,
):
    """rlkit's agents take a flat vector observation and choose among a finite set of actions
    or, if `continuous`, a vector in a Box bounded by the env or, with `bounds_given`, by the
    config's action_bounds; say so in user terms before anything runs."""
    if continuous:
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise EnvError(
                f"{agent} needs a continuous action space (a Box of shape (n,)), but {env_id} "
                f"has {action_space}; use dqn, reinforce, a2c or ppo for Discrete actions"
            )
        bounded = np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
        if not (bounded or bounds_given):
            raise EnvError(
                f"{agent} scales its actions to the action space's bounds, but {env_id}'s "
                f"{action_space} is unbounded; set action_bounds: [low, high] (actions are "
                "clipped to them) or wrap the env with gymnasium.wrappers.RescaleAction"
            )
    elif not isinstance(action_space, gym.spaces.Discrete):
        raise EnvError(
            f"{agent} needs a Discrete action space, but {env_id} has {action_space}; "
            "use an agent for continuous actions (sac, td3, ppo, a2c, reinforce) or discretise "
            "the actions with a wrapper"
        )
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise EnvError(
            f"{agent}'s MLP needs observations it can flatten into a vector (Box, Discrete, "
            f"MultiDiscrete, MultiBinary, Tuple or Dict of them), but {env_id} has "
            f"{observation_space}"
        )


# Stable-Baselines3's first argument, the policy class or its name (`SAC("MlpPolicy", env)`).
SB3_POLICIES = frozenset({"MlpPolicy", "CnnPolicy", "MultiInputPolicy"})
# Stable-Baselines3's keyword arguments of `learn`, with rlkit's way to say the same.
SB3_LEARN_ARGUMENTS = {
    "total_timesteps": "rlkit's: total_steps (or the first argument)",
    "progress_bar": "rlkit's: progress",
    "tb_log_name": "rlkit's: run_dir (the run folder holds its TensorBoard files)",
    "log_interval": "rlkit's log_interval is a config key (agents.SAC(env=..., log_interval=...))",
    "reset_num_timesteps": "rlkit's steps always go on from the agent's global_step; "
    "resume=True continues a restored checkpoint's run to its end",
}
# What gym.make / gym.make_vec record in an env's spec beside the env's own keyword arguments.
_MAKE_ONLY_KWARGS = frozenset(
    {"render_mode", "num_envs", "vectorization_mode", "vector_kwargs", "wrappers"}
)


def check_agent_arguments(agent: str, env: Any, config: Any) -> None:
    """One-line errors for Stable-Baselines3's way of making an agent, `SAC("MlpPolicy", env)`
    with an env id or a gymnasium Env: rlkit takes the env's id first and makes its own seeded
    copies of the env (training, validation, test), so it needs the id, not an env object."""
    if isinstance(env, str) and env in SB3_POLICIES:
        given = config if isinstance(config, str | gym.Env | gym.vector.VectorEnv) else None
        raise ConfigError(
            f"agents.{agent} takes the env first, as agents.{agent}("
            f"{_env_arguments(given) if given is not None else 'env=...'}): {env!r} is "
            "Stable-Baselines3's policy argument (rlkit's agents build their own MLPs: "
            "network.hidden_sizes, network.activation)"
        )
    if isinstance(env, gym.Env | gym.vector.VectorEnv):
        raise ConfigError(
            f"agents.{agent} takes an env id, not a {type(env).__name__} object (rlkit makes "
            f"its own seeded copies of the env for training and evaluation): "
            f"{_env_arguments(env)}"
        )


def _env_arguments(env: str | gym.Env | gym.vector.VectorEnv) -> str:
    """rlkit's arguments for an env id or the env made from one: env=, n_envs=, env_kwargs=
    (read off the spec that gym.make / gym.make_vec record)."""
    if isinstance(env, str):
        return f"env={env!r}"
    spec = env.spec
    if spec is None:
        return "an env id (register the env with gymnasium: README, Environments)"
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in _MAKE_ONLY_KWARGS}
    registered = gym.registry.get(spec.id)
    limit = kwargs.pop("max_episode_steps", spec.max_episode_steps)  # (make_vec's place)
    if registered is None or limit != registered.max_episode_steps:
        kwargs["max_episode_steps"] = limit
    copies = spec.kwargs.get("num_envs")
    return (
        f"env={spec.id!r}"
        + (f", n_envs={copies}" if copies else "")
        + (f", env_kwargs={kwargs!r}" if kwargs else "")
    )


def check_callback(callback: Any) -> None:
    """Before `learn` steps the env: a callback that is a function of the agent. (Found only
    at its first call, a wrong one cost the run up to there.)"""
    if callback is None or callable(callback):
        return
    kind = type(callback)
    if kind.__module__.startswith("stable_baselines3"):
        raise ConfigError(
            f"callback: {kind.__name__} is a Stable-Baselines3 callback object; rlkit's is a "
            "function of the agent, callback(agent) -> False to stop, every callback_interval "
            "steps (evaluation, the best agent, checkpoints and stop_at_return are built in)"
        )
    raise ConfigError(
        f"callback must be a function of the agent (callback(agent) -> False to stop), got "
        f"{kind.__name__} {callback!r}"
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
    """Base of rlkit's agents. Subclasses set `Config` and `name`, build their networks (named
    in `self.networks`) and optimizer after `super().__init__`, and implement `_act`,
    `_prepare_run` and `_train_step`; `learn`, the run loop around them, is shared."""

    Config: ClassVar[type[Config]]
    name: ClassVar[str]
    # The action spaces the agent takes: "discrete" (Discrete) and/or "continuous" (a bounded
    # Box of shape (n,)).
    action_kinds: ClassVar[frozenset[str]] = frozenset({"discrete"})
    metric_tags: ClassVar[tuple[str, ...]] = (
        "rollout/episodic_return",
        "eval/mean_return",
        "test/mean_return",
    )

    def __init__(self, env: str | None = None, config: Any = None, **overrides: Any) -> None:
        check_agent_arguments(type(self).__name__, env, config)
        self.config = build_config(type(self).Config, config, env, overrides)
        cfg = self.config
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # network initialisation
        self.rng = np.random.default_rng(cfg.seed)  # the agent's own draws (exploration)
        self.env = envs.make(
            cfg.env, n_envs=cfg.n_envs, vectorization=getattr(cfg, "vectorization", "sync"),
            env_kwargs=cfg.env_kwargs,
        )  # fmt: skip
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        kinds = type(self).action_kinds
        box = isinstance(self.action_space, gym.spaces.Box)
        check_spaces(
            type(self).__name__, cfg.env, self.observation_space, self.action_space,
            "continuous" in kinds and (box or "discrete" not in kinds),
            cfg.action_bounds is not None,
        )  # fmt: skip
        self.obs_shape = tuple(self.observation_space.shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        # Discrete: how many actions there are; Box: how many action dimensions.
        self.continuous = box
        if box:
            self.n_actions = int(self.action_space.shape[0])
            # The policies act in [-1, 1] per dimension; the env gets that scaled to its bounds
            # (the config's action_bounds where the Box has none).
            low, high = self.action_space.low, self.action_space.high
            if cfg.action_bounds is not None:
                low = np.where(np.isfinite(low), low, cfg.action_bounds[0])
                high = np.where(np.isfinite(high), high, cfg.action_bounds[1])
            self.action_low, self.action_high = low.astype(np.float32), high.astype(np.float32)
        else:
            self.n_actions = int(self.action_space.n)
        # Observation normalization and reward scaling (the policy-gradient agents' options):
        # statistics saved with the agent; the training env gives what the networks see.
        self.normalizer: Normalizer | None = None
        if getattr(cfg, "normalize_obs", False) or getattr(cfg, "normalize_reward", False):
            self.normalizer = Normalizer(
                self.obs_dim, cfg.n_envs, cfg.gamma, cfg.normalize_obs, cfg.normalize_reward
            )
            self.env = NormalizeVector(self.env, self.normalizer)
        self.global_step = 0  # environment steps taken, summed over copies
        self.n_updates = 0  # gradient steps taken
        self.n_episodes = 0
        # A replay agent's last training call with train_freq in episodes: the env step there
        # (its gradient_steps -1 counts the steps since).
        self.train_call_step = 0
        self._obs: np.ndarray | None = None  # the vector env's current observations
        # The current `learn` call: where it started and how far it goes. Schedules (epsilon,
        # learning rate, clip range) are positions within it, so a resumed run needs it.
        self._run: dict[str, int] | None = None
        self.lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._scheduler_state: dict[str, Any] | None = None  # restored, applied in learn
        self.stop_requested = False  # set (e.g. by a SIGINT handler) to end `learn` cleanly
        self.guard: DivergenceGuard | None = None  # built by the subclass with its optimizer
        self.networks: dict[str, torch.nn.Module] = {}  # what is saved, named; set by subclass
        self.validation = ValidationRecord()  # the periodic evaluations so far: best, streak
        self.stopped_early = False  # True when stop_at_return ended the last `learn`
        self.saved_evaluation: dict[str, Any] | None = None  # a loaded best agent's score

    # ------------------------------------------------------------------ acting

    def _obs_tensor(self, obs: Any) -> tuple[torch.Tensor, bool]:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.shape == self.obs_shape
        if not single and obs.shape[1:] != self.obs_shape:
            raise ValueError(
                f"observation shape {obs.shape} does not match the agent's "
                f"{self.obs_shape} (or a batch of them)"
            )
        if self.normalizer is not None:
            obs = self.normalizer.obs(obs)
        tensor = torch.as_tensor(obs, device=self.device)
        return (tensor.reshape(1, -1) if single else tensor.reshape(obs.shape[0], -1)), single

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        """The env's actions for the policy's: continuous ones clipped to [-1, 1] and scaled
        to the Box's bounds (float32); discrete ones as they are."""
        if not self.continuous:
            return actions
        clipped = np.clip(actions, -1.0, 1.0)
        return to_bounds(clipped, self.action_low, self.action_high).astype(np.float32)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for one observation (a scalar) or a batch (an array); `deterministic` picks
        the greedy action, otherwise the agent's exploring or sampling policy acts."""
        obs_tensor, single = self._obs_tensor(obs)
        actions = self._act(obs_tensor, deterministic)
        return actions[0] if single else actions

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's `model.predict`: (actions, None), `act` under SB3's signature and
        default (sampling, not greedy), so code written for SB3 models runs on rlkit's agents
        (SB3's `evaluate_policy`, a user's own loop). rlkit's agents have no recurrent state:
        `state` and `episode_start` are taken and ignored."""
        return self.act(observation, deterministic=deterministic), None

    # ------------------------------------------------------------------ training runs

    def _make_guard(self) -> DivergenceGuard:
        """The divergence guard over `self.networks` and `self.optimizer` (rlkit.agent.guard)."""
        self.guard = DivergenceGuard(self.config.divergence, self.networks, self.optimizer)
        return self.guard

    def learn(
        self,
        total_steps: int | None = None,
        run_dir: str | Path | None = None,
        progress: bool | str = False,
        checkpoint_interval: int = 0,
        extra_config: Mapping[str, Any] | None = None,
        callback: Callable[[Agent], bool | None] | None = None,
        callback_interval: int = 1_000,
        keep_checkpoints: int = 3,
        resume: bool = False,
        **unknown: Any,
    ) -> Agent:
        """Train for `total_steps` environment steps (summed over copies; on-policy agents
        round up to whole rollouts).

        The one run loop of every agent: each turn, the agent's `_train_step` (one env step
        and its updates for DQN and REINFORCE, one rollout and its update for A2C and PPO),
        then what every agent does: log the training scalars, evaluate on the validation
        seeds every `eval_interval` steps (keeping the best agent, stopping at
        `stop_at_return`), checkpoint, progress, callback.

        With `run_dir`, the run folder gets the resolved config (config.yaml, plus `extra_config`
        such as the CLI's run settings), TensorBoard event files, `best_agent.safetensors` and,
        every `checkpoint_interval` steps, a training checkpoint in run_dir/checkpoints/ (the
        newest `keep_checkpoints` kept). `resume=True` continues the run of a restored
        checkpoint (`agents.from_checkpoint`) to its original end. `callback(agent)` runs every
        `callback_interval` steps; returning False stops training, as does `stop_requested`.
        """
        if unknown:  # Stable-Baselines3's names get rlkit's
            name = next(iter(unknown))
            instead = SB3_LEARN_ARGUMENTS.get(name)
            if instead is None:
                raise TypeError(f"learn() got an unexpected keyword argument {name!r}")
            raise TypeError(f"learn() has no {name!r} (Stable-Baselines3's name); {instead}")
        check_callback(callback)
        start_step, end_step = self._begin_run(
            total_steps, resume, checkpoint_interval, keep_checkpoints, callback_interval
        )
        self._prepare_run(start_step, end_step)
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=self.config.seed)
        monitor = self._start_run(
            end_step - start_step, run_dir, progress, checkpoint_interval, extra_config, resume
        )
        eval_interval = self.config.eval_interval
        self.stopped_early = False
        # torch's matmul precision is process-wide: the config's for the run, the caller's after.
        caller_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(self.config.matmul_precision)
        if self.device.type == "cpu":  # no page faults on each update's temporaries
            keep_freed_memory()
        numpy_blas = contextlib.ExitStack()
        numpy_blas.enter_context(single_threaded_numpy_blas())  # (rlkit.base.threads: why)
        try:
            while self.global_step < end_step and not self.stop_requested:
                previous_step = self.global_step
                scalars = self._train_step(monitor, start_step, end_step)
                if scalars is not None and monitor.recording:
                    monitor.record_scalars({**scalars, **self.guard.scalars()}, self.global_step)
                # Evaluate before checkpointing, so the checkpoint holds this evaluation's
                # outcome (best score, streak) and a resumed run picks the same best agent.
                evaluating = eval_interval and crossed(
                    previous_step, self.global_step, eval_interval
                )
                if evaluating and self._validate(run_dir, monitor):
                    end_step = self._stop_early(run_dir, keep_checkpoints, checkpoint_interval)
                    continue
                self._checkpoint(run_dir, checkpoint_interval, previous_step, keep_checkpoints)
                monitor.progress(self.global_step)
                calling = callback is not None and crossed(
                    previous_step, self.global_step, callback_interval
                )
                if calling and callback(self) is False:
                    break
            # The end of the run is evaluated too, so the best agent is never worse on the
            # validation episodes than the final one.
            finished = self.global_step >= end_step and not self.stop_requested
            if eval_interval and finished and self.validation.last_step != self.global_step:
                self._validate(run_dir, monitor)
        except DivergenceError:
            self._save_diverged(run_dir, keep_checkpoints, monitor)
            raise
        finally:
            numpy_blas.close()
            torch.set_float32_matmul_precision(caller_precision)
            monitor.close(self.global_step)
        return self

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        """Before the loop: buffers, the learning-rate schedule over the run's updates."""
        raise NotImplementedError

    def _train_step(self, monitor: RunMonitor, start_step: int, end_step: int) -> dict | None:
        """One turn of the run loop: act, store, update; advances `global_step`. Returns the
        training scalars when they are due for logging, else None."""
        raise NotImplementedError

    def _validate(self, run_dir: str | Path | None, monitor: RunMonitor) -> bool:
        """A periodic evaluation on the validation seeds: log it, keep the best agent so far in
        run_dir/best_agent.safetensors. True once `stop_at_return` has been reached
        `stop_patience` times in a row."""
        cfg = self.config
        started = time.perf_counter()
        seed = seed_for_validation(cfg.seed, cfg.eval_seed)
        result = self.evaluate(cfg.eval_episodes, seed=seed, deterministic=cfg.eval_deterministic)
        improved = self.validation.update(result.mean_return, self.global_step, cfg.stop_at_return)
        if improved and run_dir is not None:
            evaluation = {**result.summary(), "seed": seed, "step": self.global_step}
            self.save(Path(run_dir) / BEST_AGENT_FILE, evaluation=evaluation)
        scalars = {
            "eval/mean_return": result.mean_return,
            "eval/std_return": result.std_return,
            "eval/mean_length": result.mean_length,
            "eval/best_mean_return": self.validation.best_mean,
        }
        monitor.record_evaluation(scalars, self.global_step, time.perf_counter() - started)
        return cfg.stop_at_return is not None and self.validation.streak >= cfg.stop_patience

    def _stop_early(
        self, run_dir: str | Path | None, keep_checkpoints: int, checkpoint_interval: int
    ) -> int:
        """stop_at_return was reached: the run ends here, and its checkpoint says so (a
        resumed run does not train on). Returns the new end step."""
        self.stopped_early = True
        self._run["total_steps"] = self.global_step - self._run["start_step"]
        if run_dir is not None and checkpoint_interval > 0:
            self.save_checkpoint(run_dir, keep_checkpoints)
        return self.global_step

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
        callback_interval: int = 1_000,
    ) -> tuple[int, int]:
        """(start step, end step) of this `learn` call; a resumed run keeps its original ones."""
        for name, value, least in (
            ("checkpoint_interval", checkpoint_interval, 0),
            ("keep_checkpoints", keep_checkpoints, 1),
            ("callback_interval", callback_interval, 1),
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
        progress: bool | str,
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
            "device_type": self.device.type,  # what the device-specific random states are for
            "config": self.config.to_dict(),
            "counters": {
                "global_step": self.global_step,
                "n_updates": self.n_updates,
                "n_episodes": self.n_episodes,
                "train_call_step": self.train_call_step,
            },
            "run": self._run,
            "env": env_state,
            "obs": flatten_state(self._obs, "obs", tensors),
            "optimizer": flatten_state(self.optimizer.state_dict(), "optimizer", tensors),
            "lr_scheduler": flatten_state(scheduler, "lr_scheduler", tensors),
            "rng": flatten_state(rng, "rng", tensors),
            "extra": flatten_state(self._extra_state(), "extra", tensors),
            "guard": self.guard.state_dict() if self.guard is not None else None,
            "validation": self.validation.state_dict(),
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
        self.train_call_step = counters.get("train_call_step", 0)  # (older checkpoints: unused)
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
        written_on = state.get("device_type", self.device.type)
        if written_on != self.device.type:
            warnings.warn(
                f"the checkpoint was written on {written_on} and resumes on "
                f"{self.device.type}: random draws made on the device (replay sampling, "
                "minibatch order) are re-seeded from their saved state, so the run goes on "
                "deterministically but exactly as the uninterrupted one only on the same device "
                "type",
                DeviceChangeWarning,
                stacklevel=2,
            )
        if torch.cuda.is_available():
            if "cuda" in rng:
                for index, cuda_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                    torch.cuda.set_rng_state(cuda_state, index)
            else:  # written without CUDA: derive CUDA's generators from the saved CPU state
                torch.cuda.manual_seed_all(seed_from_state(rng["torch"]))
        self._restore_extra_state(unflatten_state(state["extra"], tensors))
        if self.guard is not None and state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])
        self.validation.load_state_dict(state.get("validation") or {})

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

    def evaluate(
        self, n_episodes: int = 20, seed: int | None = None, deterministic: bool = True
    ) -> EvalResult:
        """Whole episodes on fresh copies of the training env, greedy unless `deterministic`
        is False; on the test seeds (training seed + 10,000) unless `seed` is given. The
        agent's random states are left as they were: evaluating during training does not
        change the training run."""
        if seed is None:
            seed = seed_for_testing(self.config.seed)
        greedy = self._greedy_policy() if deterministic else None
        if greedy is not None and self.normalizer is not None:
            fast, normalize = greedy, self.normalizer.obs
            greedy = lambda obs: fast(normalize(obs))  # noqa: E731
        with self._random_state_kept(), single_threaded_numpy_blas():
            return evaluate(
                greedy or (lambda obs: self.act(obs, deterministic=deterministic)),
                self.config.env,
                n_episodes,
                seed,
                env_kwargs=self.config.env_kwargs,
            )

    def _greedy_policy(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A faster greedy policy over batches of env observations, where the agent has one
        (numpy on the CPU); None: `act`."""
        return None

    @contextlib.contextmanager
    def _random_state_kept(self) -> Iterator[None]:
        numpy_state, python_state = self.rng.bit_generator.state, random.getstate()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            try:
                yield
            finally:
                self.rng.bit_generator.state = numpy_state
                random.setstate(python_state)

    def record_test(self, run_dir: str | Path, results: Mapping[str, EvalResult]) -> None:
        """The evaluations after training (test seeds) in the run's TensorBoard, by tag prefix
        (`test` for the final agent, `test_best` for the best one)."""
        recorder = Recorder(run_dir)
        for prefix, result in results.items():
            recorder.scalar(f"{prefix}/mean_return", result.mean_return, self.global_step)
            recorder.scalar(f"{prefix}/std_return", result.std_return, self.global_step)
        recorder.close()

    # ------------------------------------------------------------------ saving

    def _saved_modules(self) -> dict[str, torch.nn.Module]:
        """`self.networks`, and the normalization statistics where the agent has them."""
        if self.normalizer is None:
            return self.networks
        return {**self.networks, "normalizer": self.normalizer}

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that make up the agent: the weights of `self.networks` (and the
        normalization statistics)."""
        return {
            f"{name}.{key}": value
            for name, network in self._saved_modules().items()
            for key, value in network.state_dict().items()
        }

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, network in self._saved_modules().items():
            state = prefixed(tensors, f"{name}.")
            mismatch = describe_state_mismatch(network.state_dict(), state)
            if mismatch:
                raise AgentFileError(
                    f"the file's {name} does not fit this rlkit's {type(self).__name__} "
                    f"({mismatch}); was it saved by another version of rlkit?"
                )
            network.load_state_dict(state)

    def save(self, path: str | Path, evaluation: Mapping[str, Any] | None = None) -> Path:
        """Write the agent (networks + config) to one safetensors file; no pickle involved.
        `evaluation`: the validation result it was saved for (the best agent)."""
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
        if evaluation is not None:
            metadata["evaluation"] = dict(evaluation)
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
        agent.saved_evaluation = metadata.get("evaluation")
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


def check_replay_settings(cfg: Any) -> None:
    """The checks every replay agent's config needs (DQN, SAC, TD3): gamma, buffer and batch sizes,
    learning_starts, train_freq, gradient_steps."""
    check_unit_interval("gamma", cfg.gamma)
    require(cfg.buffer_size >= 1, f"buffer_size must be >= 1, got {cfg.buffer_size}")
    require(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}")
    require(
        cfg.batch_size <= cfg.buffer_size,
        f"batch_size ({cfg.batch_size}) is larger than buffer_size ({cfg.buffer_size})",
    )
    check_non_negative("learning_starts", cfg.learning_starts)
    require(cfg.train_freq >= 1, f"train_freq must be >= 1, got {cfg.train_freq}")
    check_choice("train_freq_unit", cfg.train_freq_unit, TRAIN_FREQ_UNITS)
    require(
        cfg.gradient_steps >= 1 or cfg.gradient_steps == -1,
        "gradient_steps must be >= 1, or -1 (one per env step since the last training call), "
        f"got {cfg.gradient_steps}",
    )
    if cfg.train_freq_unit == "episode":
        require(
            cfg.n_envs == 1,
            f"train_freq in episodes needs n_envs: 1 (as Stable-Baselines3), got {cfg.n_envs}; "
            "with several env copies give train_freq in steps",
        )
        require(
            cfg.lr_schedule.name != "linear",
            "lr_schedule linear spans the run's gradient steps, which train_freq in episodes "
            "does not fix ahead; give train_freq in steps, or a constant or step schedule",
        )


# Stable-Baselines3's units of train_freq: `train_freq: 4` is 4 env steps, and its tuple form
# `[1, "episode"]` one finished episode (SB3 takes both).
TRAIN_FREQ_UNITS = ("step", "episode")


def split_train_freq(data: dict[str, Any]) -> dict[str, Any]:
    """A replay config's `train_freq: [n, "step" | "episode"]` (SB3's tuple) as train_freq n
    and train_freq_unit; other values pass through to the usual type check."""
    value = data.get("train_freq")
    if isinstance(value, str) or not isinstance(value, Sequence):
        return data
    ok = len(value) == 2 and value[1] in TRAIN_FREQ_UNITS
    require(
        ok,
        "train_freq: expected an integer (env steps) or [n, step] / [n, episode], "
        f"got {list(value)!r}",
    )
    unit = data.get("train_freq_unit", value[1])
    require(
        unit == value[1],
        f"train_freq {list(value)!r} is in {value[1]}s but train_freq_unit says {unit}; "
        "give one of them",
    )
    return dict(data, train_freq=value[0], train_freq_unit=value[1])


class ReplayTrainFreq:
    """Mixin of the replay configs (DQNConfig, OffPolicyConfig): SB3's `train_freq` tuple read
    as train_freq and train_freq_unit, from a mapping (`translate_input`, which
    `config_from_dict` calls) and in a config built directly (`train_freq=(1, "episode")`)."""

    @staticmethod
    def translate_input(data: dict[str, Any]) -> dict[str, Any]:
        return split_train_freq(data)

    def __post_init__(self) -> None:
        if isinstance(self.train_freq, list | tuple):
            data = {"train_freq": self.train_freq}
            if self.train_freq_unit != "step":  # (given: it must agree)
                data["train_freq_unit"] = self.train_freq_unit
            split = split_train_freq(data)
            self.train_freq, self.train_freq_unit = split["train_freq"], split["train_freq_unit"]
        super().__post_init__()


def gradient_steps_per_call(cfg: Any) -> int:
    """With train_freq in steps: gradient_steps, or with -1 one per env step of the call."""
    return cfg.train_freq if cfg.gradient_steps == -1 else cfg.gradient_steps


def replay_gradient_steps(agent: Any, previous_step: int, previous_episodes: int) -> int:
    """The gradient steps due after one vector step of a replay agent (DQN, SAC, TD3), as
    Stable-Baselines3 counts them: after learning_starts, a training call per train_freq env
    steps (summed over copies) or per train_freq finished episodes, each of gradient_steps, or
    with -1 one per env step since the previous call. With train_freq in episodes it records
    the call's step in `agent.train_call_step` (saved in checkpoints)."""
    cfg = agent.config
    if cfg.train_freq_unit == "step":
        calls = off_policy_train_calls(
            previous_step, agent.global_step, cfg.learning_starts, cfg.train_freq
        )
        return calls * gradient_steps_per_call(cfg)
    # Episodes (one env copy, so at most one ends per step). A call's steps are those since
    # the previous one, which happened whether or not it trained (before learning_starts).
    if multiples_between(previous_episodes, agent.n_episodes, cfg.train_freq) == 0:
        return 0
    collected = agent.global_step - agent.train_call_step
    agent.train_call_step = agent.global_step
    if agent.global_step <= cfg.learning_starts:
        return 0
    return collected if cfg.gradient_steps == -1 else cfg.gradient_steps


def off_policy_train_calls(previous: int, step: int, learning_starts: int, train_freq: int):
    """Training calls due when the step counter moves from `previous` to `step`: one per
    multiple of train_freq passed after learning_starts. With N env copies the counter moves by
    N, so several can be due at once; counting them keeps the number of gradient steps per
    environment step the same whatever N is (DQN, SAC)."""
    return multiples_between(max(previous, learning_starts), step, train_freq)


def off_policy_planned_updates(cfg: Any, start: int, end: int) -> int:
    """Gradient steps a replay agent takes between env steps `start` and `end` (what the
    learning-rate schedule spans)."""
    if cfg.train_freq_unit == "episode":  # not known ahead (no linear schedule then)
        return 0
    n = cfg.n_envs
    steps = range(start + n, end + 1, n)
    calls = sum(
        off_policy_train_calls(s - n, s, cfg.learning_starts, cfg.train_freq) for s in steps
    )
    return calls * gradient_steps_per_call(cfg)


def crossed(previous: int, current: int, interval: int) -> bool:
    """True when a multiple of `interval` lies in (previous, current]: with N env copies the step
    counter moves by N, so `step % interval == 0` would skip intervals N does not divide."""
    return multiples_between(previous, current, interval) > 0


def _as_tuple(value: Any) -> Any:
    """Python's random state is nested tuples; JSON gives lists back."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
