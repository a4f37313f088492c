"""The math of value learning, as pure functions of tensors (tested directly)."""

from __future__ import annotations

import torch


def td_target(
    rewards: torch.Tensor,
    next_q_values: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """Q-learning target  y = r + gamma * (1 - terminated) * max_a' Q_target(s', a').

    `next_q_values` is the bootstrap value of the next state (already maximised over actions).
    `gamma` is a float, or a per-sample tensor of discounts (gamma^k for k-step returns, whose
    `rewards` are then the discounted k-step sums).
    Only `terminated` zeroes the bootstrap: an episode cut by a time limit (truncated) did not
    reach a terminal state, so its value is still that of the real next observation.
    """
    if isinstance(gamma, torch.Tensor):
        bootstrap_discount = gamma.masked_fill(terminated, 0.0)
    else:
        bootstrap_discount = torch.full_like(rewards, gamma).masked_fill_(terminated, 0.0)
    return torch.addcmul(rewards, bootstrap_discount, next_q_values)


def bootstrap_values(
    next_q_target: torch.Tensor, next_q_online: torch.Tensor | None = None
) -> torch.Tensor:
    """Value of the next state for the TD target, from (B, n_actions) Q-values.

    DQN: max_a Q_target(s', a). Double DQN (van Hasselt et al. 2016), when `next_q_online` is
    given: the online network picks the action and the target network values it,
    Q_target(s', argmax_a Q_online(s', a)), which removes the max operator's upward bias.
    """
    if next_q_online is None:
        return next_q_target.max(dim=1).values
    next_actions = next_q_online.argmax(dim=1, keepdim=True)
    return next_q_target.gather(1, next_actions).squeeze(1)


def mix_monte_carlo(
    td_targets: torch.Tensor, mc_returns: torch.Tensor, mc_valid: torch.Tensor, beta_mc: float
) -> torch.Tensor:
    """Terminal-reward targets (notes 003): (1 - beta_mc) * TD target + beta_mc * MC return.

    In a game that pays only at the end, a TD target moves the final reward back one step per
    target refresh; the Monte Carlo return G_t hands it to every move of the episode at once.
    beta_mc = 0 is plain DQN, 1 sets Q(s_t, a_t) towards the episode's outcome r_T. Rows whose
    return is unknown (the episode was truncated, mc_valid False) keep the pure TD target.
    """
    if beta_mc == 0.0:
        return td_targets
    mixed = (1.0 - beta_mc) * td_targets + beta_mc * mc_returns
    return torch.where(mc_valid, mixed, td_targets)


def smoothed_actions(
    actions: torch.Tensor, standard_noise: torch.Tensor, std: float, clip: float
) -> torch.Tensor:
    """Target policy smoothing: the target action plus Gaussian noise of `std` clipped to
    [-clip, clip], kept in [-1, 1]; the target then averages Q over nearby actions instead of
    trusting one sharp peak of the critic."""
    return (actions + (standard_noise * std).clamp(-clip, clip)).clamp(-1.0, 1.0)
