"""Observation normalization and reward scaling for the policy-gradient agents (reference 004:
"zero center and scale inputs/targets"), as SB3's VecNormalize does them.

- Observations: x -> clip((x - mean) / sqrt(var + eps), -clip, clip), with the mean and
  variance running over every observation the training env copies produced.
- Rewards: r -> clip(r / sqrt(var(G) + eps), -clip, clip), where G is each copy's running
  discounted return (G <- gamma G + r, reset at an episode end). Dividing by the return's
  scale, not the reward's, keeps the value targets near unit size whatever the env's reward
  units; the mean is not subtracted, so the sign of a reward (and so the task) is unchanged.

The statistics are buffers of a torch module (`Normalizer`), so they are saved in the agent
file and in checkpoints with the networks (safetensors, no pickle) and restored on load and
resume. `NormalizeVector` wraps the training env only: evaluation envs give raw observations
and the agent normalizes them with the frozen statistics when it acts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper

EPSILON = 1e-8


def update_moments(
    mean: np.ndarray, var: np.ndarray, count: float, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and (population) variance over everything seen so far plus `batch` (rows), from
    the old moments alone (Chan, Golub and LeVeque's pairwise update)."""
    batch = np.asarray(batch, dtype=np.float64)
    n = batch.shape[0]
    batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
    total = count + n
    delta = batch_mean - mean
    new_mean = mean + delta * n / total
    m2 = var * count + batch_var * n + delta**2 * count * n / total
    return new_mean, m2 / total, total


class Normalizer(torch.nn.Module):
    """Running statistics of observations and of the discounted return, as float64 buffers.
    SB3's start: mean 0, variance 1, a count of 1e-4 (the first batch all but replaces it)."""

    def __init__(
        self,
        obs_dim: int,
        n_envs: int,
        gamma: float,
        normalize_obs: bool,
        normalize_reward: bool,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
    ) -> None:
        super().__init__()
        self.normalize_obs, self.normalize_reward = normalize_obs, normalize_reward
        self.gamma, self.clip_obs, self.clip_reward = gamma, clip_obs, clip_reward
        f64 = torch.float64
        self.register_buffer("obs_mean", torch.zeros(obs_dim, dtype=f64))
        self.register_buffer("obs_var", torch.ones(obs_dim, dtype=f64))
        self.register_buffer("obs_count", torch.tensor(1e-4, dtype=f64))
        self.register_buffer("return_var", torch.ones((), dtype=f64))
        self.register_buffer("return_mean", torch.zeros((), dtype=f64))
        self.register_buffer("return_count", torch.tensor(1e-4, dtype=f64))
        self.register_buffer("returns", torch.zeros(n_envs, dtype=f64))  # each copy's G

    def observe(self, obs: np.ndarray) -> None:
        """Add a batch of raw observations to the running statistics."""
        mean, var, count = update_moments(
            self.obs_mean.numpy(), self.obs_var.numpy(), float(self.obs_count), obs
        )
        self._set(self.obs_mean, mean), self._set(self.obs_var, var)
        self.obs_count.fill_(count)

    def obs(self, obs: np.ndarray) -> np.ndarray:
        """Raw observations -> what the networks see (unchanged if observations are not
        normalized)."""
        if not self.normalize_obs:
            return obs
        std = np.sqrt(self.obs_var.numpy() + EPSILON)
        scaled = (np.asarray(obs, dtype=np.float64) - self.obs_mean.numpy()) / std
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale one step's rewards of every copy, updating the return statistics first; a
        copy whose episode ended starts its return again at 0."""
        returns = self.returns.numpy() * self.gamma + rewards
        mean, var, count = update_moments(
            self.return_mean.numpy(), self.return_var.numpy(), float(self.return_count),
            returns[:, None],
        )  # fmt: skip
        self.return_mean.fill_(float(mean[0])), self.return_var.fill_(float(var[0]))
        self.return_count.fill_(count)
        returns[np.asarray(dones, dtype=bool)] = 0.0
        self._set(self.returns, returns)
        scaled = np.asarray(rewards, dtype=np.float64) / np.sqrt(var[0] + EPSILON)
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)

    @staticmethod
    def _set(buffer: torch.Tensor, values: np.ndarray) -> None:
        buffer.copy_(torch.from_numpy(np.asarray(values, dtype=np.float64)))


class NormalizeVector(VectorWrapper):
    """The training env as the networks see it: observations (also info["final_obs"])
    normalized and rewards scaled by `normalizer`, whose statistics every step updates.
    Outside RecordEpisodeStatistics, so the logged episode returns stay the env's own."""

    def __init__(self, env: VectorEnv, normalizer: Normalizer) -> None:
        super().__init__(env)
        self.normalizer = normalizer

    def reset(self, **kwargs: Any):
        obs, infos = self.env.reset(**kwargs)
        return self._observe(obs), infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        norm = self.normalizer
        if norm.normalize_reward:
            rewards = norm.rewards(rewards, terminated | truncated)
        if norm.normalize_obs and "final_obs" in infos:
            final_obs = infos["final_obs"].copy()  # one entry per copy, set where it ended
            for i in np.flatnonzero(infos["_final_obs"]):
                final_obs[i] = norm.obs(final_obs[i][None])[0]
            infos["final_obs"] = final_obs
        return self._observe(obs), rewards, terminated, truncated, infos

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.normalizer.normalize_obs:
            return obs
        self.normalizer.observe(obs)
        return self.normalizer.obs(obs)
