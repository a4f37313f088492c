"""Greedy evaluation: run whole episodes with a fixed policy and report the return statistics.

Three disjoint sets of environment seeds, as training, validation and test sets are in the
notes (004, "Training and monitoring progress"):

- training: the training env's copies are seeded `seed + i` (i < n_envs);
- validation: the periodic evaluations during training (`eval_interval`), on the seeds
  `eval_seed + i`, by default `seed + VALIDATION_SEED_OFFSET`; the same episodes every time,
  so that two evaluations differ only by the agent, and the best agent is picked on them;
- test: `rlkit eval` and the evaluation after `rlkit train`, by default on
  `seed + TEST_SEED_OFFSET + i`: episodes neither training nor model selection has seen.

The evaluation env has at most EVAL_ENVS copies, so each set spans at most that many seeds.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import envs

EVAL_ENVS = 8
TEST_SEED_OFFSET = 10_000
VALIDATION_SEED_OFFSET = 20_000


def seed_range(first: int, copies: int) -> range:
    return range(first, first + copies)


def seed_for_testing(training_seed: int) -> int:
    """The default seed of `rlkit eval` and of the evaluation after `rlkit train`."""
    return training_seed + TEST_SEED_OFFSET


def seed_for_validation(training_seed: int, eval_seed: int | None) -> int:
    """The periodic evaluations' seed: `eval_seed`, or by default training seed + 20,000."""
    return training_seed + VALIDATION_SEED_OFFSET if eval_seed is None else eval_seed


def overlapping_seed_sets(
    training_seed: int, n_envs: int, eval_seed: int | None, eval_episodes: int
) -> str | None:
    """Which default seed set the validation seeds overlap ('training' or 'test'), or None."""
    validation = seed_range(
        seed_for_validation(training_seed, eval_seed), min(EVAL_ENVS, max(eval_episodes, 1))
    )
    others = {
        "training": seed_range(training_seed, n_envs),
        "test": seed_range(seed_for_testing(training_seed), EVAL_ENVS),
    }
    for name, seeds in others.items():
        if validation.start < seeds.stop and seeds.start < validation.stop:
            return f"{name} env seeds {seeds.start}-{seeds.stop - 1}"
    return None


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

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))

    def summary(self) -> dict[str, float | int]:
        return {
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "episodes": len(self.returns),
            "mean_length": self.mean_length,
        }

    def to_dict(self) -> dict[str, float | int | list]:
        return {**self.summary(), "returns": self.returns}


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    n_episodes: int,
    seed: int = 0,
    n_envs: int = EVAL_ENVS,
    env_kwargs: Mapping[str, Any] | None = None,
    keep_images: bool = False,
    atari: Any = None,
    observation_mask: Sequence[int] = (),
) -> EvalResult:
    """Run `n_episodes` full episodes of `policy` (batched obs -> batched actions).

    Episodes are split evenly over up to `n_envs` copies fixed in advance, and each copy stops
    counting once it has done its share: taking the first N episodes to finish would favour
    short ones and bias the mean down. An env without a time limit has its episodes cut at
    envs.UNLIMITED_EPISODE_CAP steps. `keep_images`: frames as they are, for a CNN (envs.make).
    An Atari game (`atari`: its preprocessing) is played whole, all lives, for its real score.
    `observation_mask`: the entries of the observation the policy reads as 0 (envs.masked).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    n_envs = max(1, min(n_envs, n_episodes))
    quota = np.full(n_envs, n_episodes // n_envs)
    quota[: n_episodes % n_envs] += 1
    kwargs = envs.capped_kwargs(env_id, env_kwargs)
    capped = not envs.has_time_limit(env_id, env_kwargs)
    vector_env = envs.make(
        env_id, n_envs=n_envs, env_kwargs=kwargs, keep_images=keep_images, atari=atari,
        training=False, observation_mask=observation_mask,
    )  # fmt: skip
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
    if capped and max(lengths) >= envs.UNLIMITED_EPISODE_CAP:
        warnings.warn(
            f"{env_id} has no time limit: evaluation episodes are cut at "
            f"{envs.UNLIMITED_EPISODE_CAP:,} steps (set env_kwargs.max_episode_steps)",
            stacklevel=2,
        )
    return EvalResult(returns, lengths)


@dataclasses.dataclass
class ValidationRecord:
    """Where the periodic evaluations of a run stand; saved in checkpoints, so a resumed run
    keeps the same best agent and the same count towards `stop_at_return`."""

    best_mean: float | None = None
    """Highest validation mean return so far (None: no evaluation yet)."""
    best_step: int | None = None
    """The step at which the best agent was evaluated (and saved)."""
    last_step: int | None = None
    """The step of the latest evaluation."""
    streak: int = 0
    """Evaluations in a row at or above `stop_at_return`."""

    def update(self, mean_return: float, step: int, stop_at_return: float | None) -> bool:
        """Count an evaluation in; True if it is the best so far. A tie goes to the newer
        agent: returns often saturate (CartPole's 500), and of two agents at the cap the one
        that has trained longer is the one whose score has lasted."""
        improved = self.best_mean is None or mean_return >= self.best_mean
        if improved:
            self.best_mean, self.best_step = mean_return, step
        reached = stop_at_return is not None and mean_return >= stop_at_return
        self.streak = self.streak + 1 if reached else 0
        self.last_step = step
        return improved

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, state.get(field.name, field.default))
