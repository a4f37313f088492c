"""What every replay agent (DQN, SAC, TD3) shares around its update: the checks of its replay
settings, and when training calls happen and how many gradient steps each takes, as
Stable-Baselines3 counts them (`train_freq` in env steps or finished episodes, its tuple form,
`gradient_steps: -1`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

import envs
from rlkit.base.config import check_choice, check_non_negative, check_unit_interval, require
from rlkit.data.buffers import ReplayBuffer, describe_capacity
from rlkit.data.frames import FrameStore, frames_per_copy
from rlkit.math.schedules import multiples_between


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


@dataclasses.dataclass(frozen=True)
class ReplayObservations:
    """How a replay agent's buffer keeps observations: whole, in the shape and dtype the agent
    stores them (Agent.stored_observations: uint8 frames one byte a pixel), or, for frame
    stacks with `store_frames_once`, as int64 references to single frames kept once in a
    FrameStore (rlkit.data.frames). The memory check and the start-up line count the frames."""

    obs_shape: tuple[int, ...]
    dtype: torch.dtype
    stack_axis: int | None  # where the k frames lie; None: observations are stored whole
    capacity: int
    n_envs: int

    @classmethod
    def of(cls, agent: Any, store_frames_once: bool) -> ReplayObservations:
        shape, dtype = agent.stored_observations()
        stacked = store_frames_once and agent.frames() is not None
        axis = envs.frame_stack_axis(agent.env) if stacked else None
        return cls(shape, dtype, axis, agent.config.buffer_size, agent.config.n_envs)

    def row(self) -> tuple[tuple[int, ...], torch.dtype]:
        """Shape and dtype of one replay row's observation."""
        if self.stack_axis is not None:
            return (), torch.int64
        return self.obs_shape, self.dtype

    def frame_bytes(self) -> int:
        if self.stack_axis is None:
            return 0
        return FrameStore.bytes_needed(
            self.obs_shape, self.stack_axis, self.n_envs, self._ring_length(), self.dtype
        )

    def frame_store(self, device: torch.device) -> FrameStore | None:
        if self.stack_axis is None:
            return None
        return FrameStore(
            self.obs_shape, self.stack_axis, self.n_envs, self._ring_length(), self.dtype, device
        )

    def check_fits(self, device: torch.device, action_shape: tuple[int, ...] = ()) -> None:
        """Refuse, before anything is allocated, a buffer that does not fit (naming the GB)."""
        shape, dtype = self.row()
        ReplayBuffer.check_fits(
            self.capacity, shape, device, dtype, action_shape=action_shape,
            frame_bytes=self.frame_bytes(),
        )  # fmt: skip

    def describe(self, device: torch.device, action_shape: tuple[int, ...] = ()) -> str:
        shape, dtype = self.row()
        return describe_capacity(
            self.capacity, shape, device, dtype, action_shape=action_shape,
            frame_bytes=self.frame_bytes(),
        )  # fmt: skip

    def _ring_length(self) -> int:
        return frames_per_copy(self.capacity, self.n_envs, self.obs_shape[self.stack_axis])
