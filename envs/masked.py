"""Partially observable versions of classic control tasks: the velocities hidden.

A policy that sees only positions has to remember where things were to know how they move:
the tasks a recurrent policy is for (issue 35). The ids and the hidden entries are the RL
Baselines3 Zoo's (rl_zoo3/import_envs.py, with sb3-contrib's MaskVelocityWrapper): the
observation keeps its shape and the hidden entries read 0.

| id | hidden entries |
| --- | --- |
| CartPoleNoVel-v1 | cart velocity, pole angular velocity (1, 3) |
| PendulumNoVel-v1 | angular velocity (2) |
| MountainCarNoVel-v0 | velocity (1) |
| MountainCarContinuousNoVel-v0 | velocity (1) |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

# id: (the task it masks, the observation entries hidden)
NO_VELOCITY = {
    "CartPoleNoVel-v1": ("CartPole-v1", (1, 3)),
    "PendulumNoVel-v1": ("Pendulum-v1", (2,)),
    "MountainCarNoVel-v0": ("MountainCar-v0", (1,)),
    "MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", (1,)),
}


class MaskObservation(gym.ObservationWrapper):
    """Observation entries `indices` (of a flat Box) set to 0; the space keeps its shape, its
    bounds at those entries become [0, 0]."""

    def __init__(self, env: gym.Env, indices: Sequence[int]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"observation masks need a flat Box observation, got {space}")
        size = space.shape[0]
        bad = [i for i in indices if not 0 <= i < size]
        if bad:
            raise ValueError(
                f"observation mask indices {bad} are outside the observation's {size} entries"
            )
        self.keep = np.ones(size, dtype=space.dtype)
        self.keep[list(indices)] = 0
        low = np.where(self.keep == 1, space.low, 0).astype(space.dtype)  # (inf * 0 is NaN)
        high = np.where(self.keep == 1, space.high, 0).astype(space.dtype)
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.keep


def make_masked(base: str, indices: Sequence[int], **kwargs: Any) -> gym.Env:
    """The `base` task's env with `indices` hidden. Its registration carries the time limit,
    so the base env is taken without its own wrappers."""
    return MaskObservation(gym.make(base, **kwargs).unwrapped, indices)


def register() -> None:
    for env_id, (base, indices) in NO_VELOCITY.items():
        if env_id not in gym.registry:
            spec = gym.spec(base)
            gym.register(
                env_id, entry_point="envs.masked:make_masked",
                kwargs={"base": base, "indices": indices},
                max_episode_steps=spec.max_episode_steps,
                reward_threshold=spec.reward_threshold,
            )  # fmt: skip
