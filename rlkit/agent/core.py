"""`Agent`: what every rlkit agent is to its user, and what it must provide to the shared
machinery. Each agent in agents/ subclasses it once (no deeper towers), builds its networks and
optimizer, and implements acting (`_act`) and its turn of the run loop (`_prepare_run`,
`_train_step`).

The rest is composed, not inherited: the run loop of `learn` is rlkit.agent.run_loop, agent
files and checkpoints are rlkit.agent.files, evaluation episodes are rlkit.agent.evaluation;
the methods here are the public API over them.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

import envs
from rlkit.agent import files
from rlkit.agent.config import build_config
from rlkit.agent.evaluation import EvalResult, ValidationRecord, evaluate, seed_for_testing
from rlkit.agent.guard import DivergenceGuard
from rlkit.agent.run_loop import RunLoop
from rlkit.agent.sb3 import check_agent_arguments, check_callback, check_learn_arguments
from rlkit.base.config import Config
from rlkit.base.device import resolve_device
from rlkit.base.errors import ConfigError, EnvError
from rlkit.base.threads import single_threaded_numpy_blas, torch_threads_for
from rlkit.io.recorder import Recorder, RunMonitor
from rlkit.math.gaussian import to_bounds
from rlkit.nn.encoders import choose_encoder, is_image_space, storage_dtype
from rlkit.nn.normalization import Normalizer, NormalizeVector


def check_spaces(
    agent: str,
    env_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    continuous: bool = False,
    bounds_given: bool = False,
    images: bool = False,
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
    frames = images and isinstance(observation_space, gym.spaces.Box)
    if frames and len(observation_space.shape) == 3:
        return  # (a CNN reads them; rlkit.nn.encoders checks their size)
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise EnvError(
            f"{agent}'s MLP needs observations it can flatten into a vector (Box, Discrete, "
            f"MultiDiscrete, MultiBinary, Tuple or Dict of them), but {env_id} has "
            f"{observation_space}"
        )


def update_step(method: Callable[..., Any]) -> Callable[..., Any]:
    """Marks an agent's gradient update (`_update`): inside `learn` it runs on the run's thread
    count, and the rest of the loop (acting, env steps, evaluation) on one thread
    (rlkit.base.threads: why)."""

    @functools.wraps(method)
    def on_update_threads(self: Agent, *args: Any, **kwargs: Any) -> Any:
        with torch_threads_for(self.update_threads or torch.get_num_threads()):
            return method(self, *args, **kwargs)

    return on_update_threads


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
        self.keep_images = self._keeps_images()
        self.env = envs.make(
            cfg.env, n_envs=cfg.n_envs, vectorization=getattr(cfg, "vectorization", "sync"),
            env_kwargs=cfg.env_kwargs, keep_images=self.keep_images, atari=cfg.atari,
            observation_mask=cfg.observation_mask,
        )  # fmt: skip
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        kinds = type(self).action_kinds
        box = isinstance(self.action_space, gym.spaces.Box)
        check_spaces(
            type(self).__name__, cfg.env, self.observation_space, self.action_space,
            "continuous" in kinds and (box or "discrete" not in kinds),
            cfg.action_bounds is not None, self.keep_images,
        )  # fmt: skip
        self.obs_shape = tuple(self.observation_space.shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        # A Dict observation with frames among its keys, flattened into one vector by the env
        # (envs.flat_observations): an encoder reads it key by key (rlkit.nn.encoders).
        self.dict_space = None
        if self.keep_images and len(self.obs_shape) == 1:
            space = envs.dict_observation_space(self.env, cfg.env, cfg.env_kwargs)
            if space is not None and any(map(is_image_space, space.spaces.values())):
                self.dict_space = space
        if self.encoded_space() is not None and getattr(cfg, "normalize_obs", False):
            raise ConfigError(
                "normalize_obs scales vector observations; frames are scaled inside the CNN "
                "(leave normalize_obs out, or set network.encoder: mlp)"
            )
        network = getattr(cfg, "network", None)
        cnn_named = network is not None and network.encoder not in ("auto", "mlp")
        if cnn_named and self.encoded_space() is None:
            # A CNN named for vector observations: say so rather than ignore it.
            choose_encoder(self.observation_space, network.encoder)
        if network is not None and not network.hidden_sizes and self.encoded_space() is None:
            raise ConfigError(
                "network.hidden_sizes [] puts the output layers straight on a CNN's features, "
                f"but {cfg.env}'s observations go to no CNN; give at least one hidden layer"
            )
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
        # torch's thread count for the updates (`update_step`) while `learn` runs; the caller's
        # count when learn starts, and None outside it.
        self.update_threads: int | None = None
        self.guard: DivergenceGuard | None = None  # built by the subclass with its optimizer
        self.networks: dict[str, torch.nn.Module] = {}  # what is saved, named; set by subclass
        self.validation = ValidationRecord()  # the periodic evaluations so far: best, streak
        self.stopped_early = False  # True when stop_at_return ended the last `learn`
        self.saved_evaluation: dict[str, Any] | None = None  # a loaded best agent's score

    # ------------------------------------------------------------------ acting

    def _obs_tensor(self, obs: Any) -> tuple[torch.Tensor, bool]:
        frames = self.frames() is not None
        # Frames keep their dtype and shape (a CNN scales them); vectors become float rows.
        obs = np.asarray(obs, dtype=self.observation_space.dtype if frames else np.float32)
        single = obs.shape == self.obs_shape
        if not single and obs.shape[1:] != self.obs_shape:
            raise ValueError(
                f"observation shape {obs.shape} does not match the agent's "
                f"{self.obs_shape} (or a batch of them)"
            )
        if self.normalizer is not None:
            obs = self.normalizer.obs(obs)
        tensor = torch.as_tensor(obs, device=self.device)
        if frames:
            return (tensor.unsqueeze(0) if single else tensor), single
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
        round up to whole rollouts), through the shared run loop (rlkit.agent.run_loop):
        the agent's own training turns, with validation every `eval_interval` steps (the best
        agent kept, an early stop at `stop_at_return`), checkpoints and the callback.

        With `run_dir`, the run folder gets the resolved config (config.yaml, plus `extra_config`
        such as the CLI's run settings), TensorBoard event files, `best_agent.safetensors` and,
        every `checkpoint_interval` steps, a training checkpoint in run_dir/checkpoints/ (the
        newest `keep_checkpoints` kept). `resume=True` continues the run of a restored
        checkpoint (`agents.from_checkpoint`) to its original end. `callback(agent)` runs every
        `callback_interval` steps; returning False stops training, as does `stop_requested`.
        """
        check_learn_arguments(unknown)  # (Stable-Baselines3's names get rlkit's)
        check_callback(callback)
        loop = RunLoop(
            self, run_dir, progress, checkpoint_interval, keep_checkpoints, extra_config,
            callback, callback_interval,
        )  # fmt: skip
        loop.run(total_steps, resume)
        return self

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        """Before the loop: buffers, the learning-rate schedule over the run's updates."""
        raise NotImplementedError

    def _train_step(self, monitor: RunMonitor, start_step: int, end_step: int) -> dict | None:
        """One turn of the run loop: act, store, update; advances `global_step`. Returns the
        training scalars when they are due for logging, else None."""
        raise NotImplementedError

    def _make_guard(self) -> DivergenceGuard:
        """The divergence guard over `self.networks` and `self.optimizer` (rlkit.agent.guard)."""
        self.guard = DivergenceGuard(self.config.divergence, self.networks, self.optimizer)
        return self.guard

    def _make_lr_scheduler(self, total_updates: int) -> torch.optim.lr_scheduler.LRScheduler:
        from rlkit.optim import build_lr_scheduler

        scheduler = build_lr_scheduler(self.optimizer, self.config.lr_schedule, total_updates)
        if self._scheduler_state is not None:  # resuming: continue where the schedule was
            scheduler.load_state_dict(self._scheduler_state)
            self._scheduler_state = None
        self.lr_scheduler = scheduler
        return scheduler

    # ------------------------------------------------------------------ evaluation

    def frames(self) -> gym.spaces.Box | None:
        """The observation space where the agent reads frames through a CNN (kept as the env
        gives them: `keep_images`), else None."""
        if self.keep_images and len(self.observation_space.shape) == 3:
            return self.observation_space
        return None

    def stored_observations(self) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype in which buffers keep one observation: frames as the env gives them
        (uint8 pixels one byte each: rlkit.nn.encoders.storage_dtype), anything else as a
        float32 vector."""
        frames = self.frames()
        if frames is not None:
            return tuple(frames.shape), storage_dtype(frames)
        return (self.obs_dim,), torch.float32

    def encoded_space(self) -> gym.spaces.Box | gym.spaces.Dict | None:
        """What the network's encoder reads, where it has a CNN: the frames (`frames`), or a
        Dict with frames among its keys (its flattened vector is what the agent stores and
        acts on); None where the observations are a vector for the MLP."""
        frames = self.frames()
        return frames if frames is not None else self.dict_space

    def _keeps_images(self) -> bool:
        """Whether the env should hand this agent its frames as they are (for a CNN): unless
        the config asks for an MLP (frames flattened)."""
        network = getattr(self.config, "network", None)
        return getattr(network, "encoder", "auto") != "mlp"

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
        with self._random_state_kept(), single_threaded_numpy_blas(), torch_threads_for(1):
            return evaluate(
                greedy or (lambda obs: self.act(obs, deterministic=deterministic)),
                self.config.env,
                n_episodes,
                seed,
                env_kwargs=self.config.env_kwargs,
                keep_images=self.keep_images,
                atari=self.config.atari,
                observation_mask=self.config.observation_mask,
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

    # ------------------------------------------------------------------ files (rlkit.agent.files)

    def _extra_state(self) -> dict[str, Any]:
        """Agent-specific training state (buffers, collectors, counters) as nested dicts of
        tensors, arrays and plain values."""
        return {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Named tensors that make up the agent: the weights of `self.networks` (and the
        normalization statistics)."""
        return files.state_tensors(self)

    def _load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        files.load_state_tensors(self, tensors)

    def save(self, path: str | Path, evaluation: Mapping[str, Any] | None = None) -> Path:
        """Write the agent (networks + config) to one safetensors file; no pickle involved.
        `evaluation`: the validation result it was saved for (the best agent)."""
        return files.save_agent(self, path, evaluation)

    @classmethod
    def from_saved(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], device: str):
        return files.agent_from_saved(cls, tensors, metadata, device)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto"):
        """The agent saved in `path` by `save` (read without unpickling)."""
        return files.load_agent(cls, path, device)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue training exactly: networks, optimizer, schedule,
        buffers, counters, every random number generator and the environments' state."""
        return files.checkpoint_state(self)

    def save_checkpoint(self, run_dir: str | Path, keep_last: int = 3) -> Path | None:
        """Write a checkpoint into run_dir/checkpoints/ (atomic, checksummed, newest
        `keep_last` kept). Refuses to write non-finite weights or optimizer state: a checkpoint
        is a state worth returning to. Returns the manifest path, or None if refused."""
        return files.save_checkpoint(self, run_dir, keep_last)

    def restore_checkpoint(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        files.restore_checkpoint(self, tensors, state)

    @classmethod
    def from_checkpoint_state(
        cls, tensors: dict[str, torch.Tensor], state: dict[str, Any], device: str | None = None
    ):
        """An agent rebuilt from a checkpoint's contents (see `agents.from_checkpoint`); on the
        run's own device setting unless `device` is given."""
        return files.agent_from_checkpoint_state(cls, tensors, state, device)

    def close(self) -> None:
        self.env.close()
