"""The math of policy-gradient targets, as pure functions of (T, N) tensors (tested directly).

Layout: row t is step t of the rollout, column i is env copy i. `dones[t, i]` is True when copy
i's episode ended at step t (terminated or truncated). A truncated step has already had
gamma * V(final observation) added to its reward by the collector, so here every episode end
simply stops the bootstrap: the next row of a finished copy belongs to a new episode.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016); returns (advantages, returns).

    delta_t = r_t + gamma (1 - done_t) V(s_{t+1}) - V(s_t)
    A_t = delta_t + gamma lam (1 - done_t) A_{t+1},   returns_t = A_t + V(s_t).
    lam = 1 gives the bootstrapped n-step return minus V (A2C); lam = 0 the one-step TD error.
    `last_values` is V of the observation after the rollout's last step.
    """
    not_done = (~dones).to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    next_values = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_values - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
        next_values = values[t]
    return advantages, advantages + values


def discounted_returns(
    rewards: torch.Tensor, dones: torch.Tensor, gamma: float, last_values: torch.Tensor
) -> torch.Tensor:
    """G_t = r_t + gamma (1 - done_t) G_{t+1}, with G after the last row = `last_values`."""
    _, returns = gae(rewards, torch.zeros_like(rewards), dones, last_values, gamma, 1.0)
    return returns


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 is perfect, 0 no better than a constant."""
    variance = target.var()
    if variance == 0:
        return float("nan")
    return float(1 - (target - predicted).var() / variance)


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + eps)
