"""n-step returns for replay: turn the one-step transitions of N env copies into n-step ones.

The stored transition from s_t is (s_t, a_t, R, s_{t+k}, terminated, truncated, discount) with
R = r_t + gamma r_{t+1} + ... + gamma^(k-1) r_{t+k-1} and discount = gamma^k, where k = n, or
less when the episode ended first. The target is then R + discount * max_a Q(s_{t+k}, a) unless
the episode terminated. A window never crosses an episode end: a terminated episode adds no
bootstrap, a truncated one bootstraps from its real last observation with gamma^k.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


def discounted_sum(rewards: Sequence[float], gamma: float) -> float:
    """r_0 + gamma r_1 + gamma^2 r_2 + ... (the reference the collector is tested against)."""
    total = 0.0
    for reward in reversed(rewards):
        total = reward + gamma * total
    return total


class NStepCollector:
    """Holds the last n steps of each env copy and releases n-step transitions when complete.

    `add` takes one vector step and returns the transitions that became complete, as a tuple of
    arrays (obs, actions, returns, next_obs, terminated, truncated, discounts), possibly empty.
    """

    def __init__(self, n_steps: int, gamma: float, n_envs: int) -> None:
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        self.n_steps = n_steps
        self.gamma = gamma
        self.pending: list[deque] = [deque() for _ in range(n_envs)]

    def add(self, obs, actions, rewards, next_obs, terminated, truncated):
        out: list[tuple] = []
        for i, window in enumerate(self.pending):
            window.append((obs[i], actions[i], float(rewards[i])))
            if terminated[i] or truncated[i]:
                # The episode ended: every pending start gets its (shorter) window now.
                while window:
                    out.append(self._transition(window, next_obs[i], terminated[i], truncated[i]))
                    window.popleft()
            elif len(window) == self.n_steps:
                out.append(self._transition(window, next_obs[i], False, False))
                window.popleft()
        if not out:
            return None
        obs, actions, returns, next_obs, terminated, truncated, discounts = zip(*out, strict=True)
        return (
            np.stack(obs),
            np.asarray(actions),
            np.asarray(returns, dtype=np.float32),
            np.stack(next_obs),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            np.asarray(discounts, dtype=np.float32),
        )

    def state_dict(self) -> dict:
        """The pending steps of each copy (arrays and numbers, for checkpoints)."""
        return {"pending": [[list(step) for step in window] for window in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        self.pending = [deque(tuple(step) for step in window) for window in state["pending"]]

    def _transition(self, window: deque, next_obs, terminated: bool, truncated: bool) -> tuple:
        first_obs, first_action, _ = window[0]
        rewards = [reward for _, _, reward in window]
        discount = self.gamma ** len(rewards)
        return (
            first_obs,
            first_action,
            discounted_sum(rewards, self.gamma),
            next_obs,
            bool(terminated),
            bool(truncated) and not terminated,
            discount,
        )


def discounted_returns(rewards: Sequence[float], gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} for every t of an episode (G after the last step is 0)."""
    returns = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


class EpisodeCollector:
    """Holds each copy's steps until its episode ends, then releases all of that episode's
    transitions at once, each with its Monte Carlo return (notes 003, "Deep Q-learning with
    terminal rewards"): G_t, the discounted sum of the episode's rewards from t to its end.

    The return is only known, and only marked valid, when the episode terminated; a truncated
    episode was cut short, its true return is unknown, and its transitions carry mc_valid=False
    so that their targets stay pure TD. The transitions themselves are n-step ones as in
    `NStepCollector` (n = 1 for plain one-step TD).
    """

    def __init__(self, n_steps: int, gamma: float, n_envs: int) -> None:
        self.n_steps = n_steps
        self.gamma = gamma
        self.episodes: list[list[tuple]] = [[] for _ in range(n_envs)]

    def add(self, obs, actions, rewards, next_obs, terminated, truncated):
        released: list[tuple] = []
        for i, episode in enumerate(self.episodes):
            episode.append((obs[i], actions[i], float(rewards[i]), next_obs[i]))
            if terminated[i] or truncated[i]:
                released.append(self._release(episode, bool(terminated[i]), bool(truncated[i])))
                self.episodes[i] = []
        if not released:
            return None
        return tuple(np.concatenate(parts) for parts in zip(*released, strict=True))

    def state_dict(self) -> dict:
        """The steps of each copy's episode in progress (for checkpoints)."""
        return {"episodes": [[list(step) for step in episode] for episode in self.episodes]}

    def load_state_dict(self, state: dict) -> None:
        self.episodes = [[tuple(step) for step in episode] for episode in state["episodes"]]

    def _release(self, episode: list[tuple], terminated: bool, truncated: bool) -> tuple:
        steps = NStepCollector(self.n_steps, self.gamma, n_envs=1)
        rows = []
        for t, (obs, action, reward, next_obs) in enumerate(episode):
            last = t == len(episode) - 1
            ready = steps.add(
                obs[None], [action], [reward], next_obs[None],
                [terminated and last], [truncated and last],
            )  # fmt: skip
            if ready is not None:
                rows.append(ready)
        # NStepCollector releases windows in order of their first step: row t starts at step t.
        obs, actions, returns, next_obs, term, trunc, discounts = (
            np.concatenate(parts) for parts in zip(*rows, strict=True)
        )
        mc_returns = discounted_returns([step[2] for step in episode], self.gamma)
        mc_valid = np.full(len(episode), terminated)
        return (
            obs, actions, returns, next_obs, term, trunc, discounts,
            mc_returns.astype(np.float32), mc_valid,
        )  # fmt: skip
