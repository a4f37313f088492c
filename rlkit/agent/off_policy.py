"""What the continuous-action replay agents (SAC, TD3) share around their update step: the
settings of the replay loop, the replay buffer of float action vectors, the interaction loop's
turn (act, step the env copies with actions in [-1, 1] scaled to the bounds, store, take the
gradient steps due), and the running means of the training scalars.

Functions over the agent rather than a base class: each agent file holds its networks,
its acting and its `_update` (the algorithm), and calls these for the rest.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

import envs
from rlkit.agent.config import AgentConfig
from rlkit.agent.core import Agent
from rlkit.agent.files import generator_state, restore_generator
from rlkit.agent.guard import DivergenceConfig
from rlkit.agent.replay import (
    ReplayObservations,
    ReplayTrainFreq,
    check_replay_settings,
    off_policy_planned_updates,
    replay_gradient_steps,
)
from rlkit.base.config import require
from rlkit.data.buffers import ReplayBuffer
from rlkit.math.schedules import crossed
from rlkit.nn.encoders import DetachedEncoder, make_encoder
from rlkit.optim import LRScheduleConfig


@dataclasses.dataclass
class OffPolicyConfig(ReplayTrainFreq, AgentConfig):
    """The replay-loop settings SAC and TD3 share, after the ones every agent has (env,
    n_envs, seed, device, eval_*); each agent's config adds its own. Defaults are SB3's."""

    gamma: float = 0.99
    """Discount factor."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    batch_size: int = 256
    """Transitions per gradient step."""
    learning_starts: int = 100
    """Environment steps of uniformly random actions before the first gradient step."""
    train_freq: int = 1
    """Environment steps (summed over copies) between two training calls, or finished
    episodes with train_freq_unit episode (SB3's `train_freq: [1, "episode"]` reads as both)."""
    train_freq_unit: str = "step"
    """step or episode (one env copy): what train_freq counts."""
    gradient_steps: int = 1
    """Gradient steps per training call; -1: one per env step since the last call (SB3's)."""
    tau: float = 0.005
    """Polyak factor of the target networks: target <- target + tau (online - target)."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm to this value (null: no clipping, as SB3)."""
    lr_schedule: LRScheduleConfig = dataclasses.field(default_factory=LRScheduleConfig)
    """Learning-rate schedule over the gradient updates of one `learn` call."""
    log_interval: int = 1_000
    """Environment steps between two writes of the training scalars."""
    store_frames_once: bool = True
    """Observations that stack the last k frames (gymnasium's FrameStackObservation) are kept
    in replay one frame at a time and rebuilt at sample time (rlkit.data.frames), as DQN's.
    false: each transition keeps its obs and next_obs whole."""
    divergence: DivergenceConfig = dataclasses.field(default_factory=DivergenceConfig)
    """Divergence guard: skip non-finite updates, roll back, stop (see rlkit.agent.guard)."""

    def validate(self) -> None:
        super().validate()
        check_replay_settings(self)
        require(0.0 < self.tau <= 1.0, f"tau must be in (0, 1], got {self.tau}")
        if self.max_grad_norm is not None:
            require(
                math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0,
                f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}",
            )
        require(self.log_interval >= 1, f"log_interval must be >= 1, got {self.log_interval}")


def actor_critic_encoders(agent: Agent, n_pairs: int) -> list[tuple[Any, Any]]:
    """(actor encoder, critic encoder) for each of `n_pairs` actor-critic pairs (online, then
    target), or (None, None) each where observations are vectors for the MLP. On frames (or a
    Dict with frames) the critic gets a CNN; the actor reads it detached with
    `network.share_encoder` (the default: rlkit.nn.encoders.DetachedEncoder, as DrQ), or gets
    a CNN of its own (SB3's SAC and TD3 default)."""
    encoded = agent.encoded_space()
    if encoded is None:
        return [(None, None)] * n_pairs
    net = agent.config.network
    pairs = []
    for _ in range(n_pairs):
        critic = make_encoder(encoded, net.encoder)
        actor = DetachedEncoder(critic) if net.share_encoder else make_encoder(encoded, net.encoder)
        pairs.append((actor, critic))
    return pairs


def plan_replay(agent: Agent) -> ReplayObservations:
    """How the agent's replay will keep observations (whole, or frame stacks as single frames),
    refused before anything runs where the buffer does not fit in memory."""
    layout = ReplayObservations.of(agent, agent.config.store_frames_once)
    layout.check_fits(agent.device, action_shape=(agent.n_actions,))
    return layout


def describe_replay(agent: Agent) -> str:
    return agent.replay_obs.describe(agent.device, action_shape=(agent.n_actions,))


def allocate_replay(agent: Agent) -> ReplayBuffer:
    """The agent's replay buffer (float action vectors), made on first use: an agent loaded only
    to act needs none."""
    if agent.buffer is None:
        layout = agent.replay_obs
        agent.buffer = ReplayBuffer(
            agent.config.buffer_size, agent.obs_shape, agent.device, obs_dtype=layout.dtype,
            action_shape=(agent.n_actions,), frames=layout.frame_store(agent.device),
        )  # fmt: skip
    return agent.buffer


def prepare_run(agent: Agent, start_step: int, end_step: int) -> None:
    """Before a `learn` call: the buffer, and the learning-rate schedule over its updates."""
    allocate_replay(agent)
    agent._make_lr_scheduler(off_policy_planned_updates(agent.config, start_step, end_step))


def train_step(agent: Agent, monitor: Any) -> dict[str, float] | None:
    """The interaction loop's turn: act (uniformly at random until learning_starts, then the
    agent's exploring policy, `agent._policy_actions(obs, deterministic=False)`, actions in
    [-1, 1]), step and store, take the gradient steps that are due (`agent._update()`, its
    scalars or None when skipped); the scalars' means when a log write is due."""
    cfg = agent.config
    if agent.global_step < cfg.learning_starts:
        actions = uniform_actions(agent)
    else:
        obs = agent._obs_tensor(agent._obs)[0]
        actions = agent.guard.finite_outputs(
            lambda: agent._policy_actions(obs, deterministic=False)
        )
    previous_episodes = agent.n_episodes
    previous_step = step_and_store(agent, monitor, actions)
    for _ in range(replay_gradient_steps(agent, previous_step, previous_episodes)):
        agent.train_stats.add(agent._update())
    if not (monitor.recording and crossed(previous_step, agent.global_step, cfg.log_interval)):
        return None
    scalars = agent.train_stats.mean_and_reset()
    scalars["train/learning_rate"] = agent.optimizer.param_groups[0]["lr"]
    return scalars


def uniform_actions(agent: Agent) -> np.ndarray:
    """Uniformly random actions in [-1, 1] for every env copy (before learning_starts)."""
    shape = (agent.config.n_envs, agent.n_actions)
    return agent.rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def step_and_store(agent: Agent, monitor: Any, actions: np.ndarray) -> int:
    """Step the env copies with `actions` (in [-1, 1], scaled to the bounds for the env; the
    buffer and the critics keep the [-1, 1] ones), store the transitions, count the steps and
    episodes. Returns the step counter before this step."""
    cfg = agent.config
    next_obs, rewards, terminated, truncated, infos = agent.env.step(agent._env_actions(actions))
    # At an episode end next_obs is already the next episode's first observation (SAME_STEP
    # autoreset); the buffer needs the real last one, from info["final_obs"].
    real_next_obs = envs.real_next_obs(next_obs, infos)
    obs = agent._obs
    if (frames := agent.buffer.frames) is not None:  # references to frames stored once
        obs, real_next_obs = frames.add(obs), frames.add(real_next_obs)
    agent.buffer.add(obs, actions, rewards, real_next_obs, terminated, truncated, cfg.gamma)
    agent._obs = next_obs
    previous_step, agent.global_step = agent.global_step, agent.global_step + cfg.n_envs
    agent.n_episodes += monitor.record_episodes(infos, agent.global_step)
    return previous_step


class TrainScalars:
    """Running sums of the update scalars between two log writes, each with its own count (an
    actor loss that only every second update has is the mean over those)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float] | None) -> None:
        if values is None:  # an update the divergence guard skipped
            return
        for tag, value in values.items():
            self.sums[tag] = self.sums.get(tag, 0.0) + value
            self.counts[tag] = self.counts.get(tag, 0) + 1

    def mean_and_reset(self) -> dict[str, float]:
        means = {tag: total / self.counts[tag] for tag, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {tag: float(v) for tag, v in state["sums"].items()}
        self.counts = {tag: int(v) for tag, v in state["counts"].items()}


def replay_state(agent: Agent, scalars: TrainScalars) -> dict[str, Any]:
    """The training state a checkpoint holds beyond the networks: buffer, scalar sums, the
    sampling generator."""
    return {
        "buffer": agent.buffer.state_dict() if agent.buffer is not None else None,
        "train_stats": scalars.state_dict(),
        "sample_generator": generator_state(agent.sample_generator),
    }


def restore_replay_state(agent: Agent, scalars: TrainScalars, state: dict[str, Any]) -> None:
    restore_generator(agent.sample_generator, state["sample_generator"])
    scalars.load_state_dict(state["train_stats"])
    if state["buffer"] is not None:
        allocate_replay(agent).load_state_dict(state["buffer"])
