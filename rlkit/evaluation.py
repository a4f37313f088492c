"""Greedy evaluation: run whole episodes with a fixed policy and report the return statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

import envs


@dataclasses.dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_dict(self) -> dict[str, float | int | list]:
        return {
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "episodes": len(self.returns),
            "mean_length": float(np.mean(self.lengths)),
            "returns": self.returns,
        }


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    n_episodes: int,
    seed: int = 0,
    n_envs: int = 8,
) -> EvalResult:
    """Run `n_episodes` full episodes of `policy` (batched obs -> batched actions).

    Episodes are split evenly over up to `n_envs` copies fixed in advance, and each copy stops
    counting once it has done its share: taking the first N episodes to finish would favour
    short ones and bias the mean down.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    n_envs = max(1, min(n_envs, n_episodes))
    quota = np.full(n_envs, n_episodes // n_envs)
    quota[: n_episodes % n_envs] += 1
    vector_env = envs.make(env_id, n_envs=n_envs)
    returns: list[float] = []
    lengths: list[int] = []
    done_count = np.zeros(n_envs, dtype=np.int64)
    try:
        obs, _ = vector_env.reset(seed=seed)
        while np.any(done_count < quota):
            actions = policy(obs)
            obs, _rewards, _terminated, _truncated, infos = vector_env.step(actions)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    if done_count[i] < quota[i]:
                        returns.append(float(infos["episode"]["r"][i]))
                        lengths.append(int(infos["episode"]["l"][i]))
                        done_count[i] += 1
    finally:
        vector_env.close()
    return EvalResult(returns, lengths)
