"""Shared test helpers: reading TensorBoard event files back with tensorboard's own reader; an
env with three action dimensions and random float64 replay batches, for checking written-out
gradients against autograd."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkit.data.buffers import ReplayBatch


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file in `run_dir`."""
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def read_accumulator(run_dir: str | Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


THREE_ACTIONS = "rlkit-test/ThreeActions-v0"


class _ThreeActions(gym.Env):
    """5 observations, 3 action dimensions (the classic-control envs have one)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), -float(np.square(action).sum()), False, False, {}


def register_three_actions() -> None:
    if THREE_ACTIONS not in gym.registry:
        gym.register(THREE_ACTIONS, entry_point=_ThreeActions, max_episode_steps=50)


def random_replay_batch(agent, b: int, generator: torch.Generator) -> ReplayBatch:
    """b float64 transitions of the agent's shapes, a third of them terminal."""
    d, k = agent.obs_dim, agent.n_actions
    return ReplayBatch(
        obs=torch.randn(b, d, generator=generator, dtype=torch.float64),
        actions=torch.rand(b, k, generator=generator, dtype=torch.float64) * 2 - 1,
        rewards=torch.randn(b, generator=generator, dtype=torch.float64),
        next_obs=torch.randn(b, d, generator=generator, dtype=torch.float64),
        terminated=torch.rand(b, generator=generator) < 0.3,
        truncated=None, discounts=torch.full((b,), 0.99, dtype=torch.float64),
        mc_returns=None, mc_valid=None,
    )  # fmt: skip
