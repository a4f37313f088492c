"""What the continuous-action replay agents (SAC, TD3) share around their update step: the
replay buffer of float action vectors, one step of the env copies with actions in [-1, 1]
scaled to the env's bounds, and the running means of the training scalars.

Functions over the agent rather than a base class, so that each agent file still reads top to
bottom: its `_train_step` picks the actions and calls `step_and_store`, then its own `_update`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import envs
from rlkit.agent import Agent, generator_state, restore_generator
from rlkit.buffers import ReplayBuffer, describe_capacity
from rlkit.gaussian import to_bounds


def check_replay_fits(agent: Agent) -> None:
    """Refuse, before anything runs, a buffer_size that does not fit in memory."""
    cfg = agent.config
    actions = (agent.n_actions,)
    ReplayBuffer.check_fits(cfg.buffer_size, agent.obs_shape, agent.device, action_shape=actions)


def describe_replay(agent: Agent) -> str:
    cfg = agent.config
    actions = (agent.n_actions,)
    return describe_capacity(cfg.buffer_size, agent.obs_shape, agent.device, action_shape=actions)


def allocate_replay(agent: Agent) -> ReplayBuffer:
    """The agent's replay buffer (float action vectors), made on first use: an agent loaded only
    to act needs none."""
    if agent.buffer is None:
        cfg = agent.config
        agent.buffer = ReplayBuffer(
            cfg.buffer_size, agent.obs_shape, agent.device, action_shape=(agent.n_actions,)
        )
    return agent.buffer


def uniform_actions(agent: Agent) -> np.ndarray:
    """Uniformly random actions in [-1, 1] for every env copy (before learning_starts)."""
    shape = (agent.config.n_envs, agent.n_actions)
    return agent.rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def step_and_store(agent: Agent, monitor: Any, actions: np.ndarray) -> int:
    """Step the env copies with `actions` (in [-1, 1], scaled to the bounds for the env; the
    buffer and the critics keep the [-1, 1] ones), store the transitions, count the steps and
    episodes. Returns the step counter before this step."""
    cfg = agent.config
    env_actions = to_bounds(actions, agent.action_low, agent.action_high)
    next_obs, rewards, terminated, truncated, infos = agent.env.step(env_actions)
    # At an episode end next_obs is already the next episode's first observation (SAME_STEP
    # autoreset); the buffer needs the real last one, from info["final_obs"].
    real_next_obs = envs.real_next_obs(next_obs, infos)
    agent.buffer.add(agent._obs, actions, rewards, real_next_obs, terminated, truncated, cfg.gamma)
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
