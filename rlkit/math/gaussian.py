"""Gaussian policies over Box actions, as pure functions (tests/test_gaussian.py checks them
against torch.distributions and the squash correction numerically).

Two kinds, as in the agents that use them:

- a diagonal Gaussian (PPO, A2C, REINFORCE): u ~ N(mean, std^2) per action dimension, the
  log-probability and entropy summed over dimensions; the env gets u clipped to the bounds;
- a tanh-squashed Gaussian (SAC): a = tanh(u), always inside (-1, 1), with the change of
  variables log p(a) = log N(u) - sum log(1 - tanh(u)^2), written as
  log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and stable for large abs(u)
  (the naive form is log(0) = -inf once tanh(u) rounds to 1).

`to_bounds` and `from_bounds` map [-1, 1] to a Box's [low, high] and back (arrays with
arrays, tensors with tensors).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC's clamp of the predicted log std (as SB3)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def diagonal_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mean, diag(exp(log_std))^2), summed over the last dimension."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - _HALF_LOG_2PI).sum(dim=-1)


def diagonal_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, summed over the last dimension."""
    return (log_std + 0.5 + _HALF_LOG_2PI).sum(dim=-1)


def tanh_log_det(u: torch.Tensor) -> torch.Tensor:
    """sum log(1 - tanh(u)^2) over the last dimension, stably: 2 (log 2 - u - softplus(-2u))."""
    return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(dim=-1)


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a = tanh(mean + std * noise), log p(a)) for standard-normal `noise` (the
    reparameterisation: gradients flow to mean and log_std)."""
    u = mean + torch.exp(log_std) * noise
    return torch.tanh(u), diagonal_log_prob(u, mean, log_std) - tanh_log_det(u)


def squashed_sample_grads(
    grad_actions: torch.Tensor,
    grad_log_prob: torch.Tensor,
    actions: torch.Tensor,
    log_std: torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d mean, d loss / d log_std) for (actions, log p) = squashed_sample(mean,
    log_std, noise), given d loss / d actions (B, k) and d loss / d log p (B,), without
    autograd (SAC's written-out step, rlkit.nn.sac_grad). Written through the noise, log N(u) is
    -noise^2/2 - log std - log(2 pi)/2, so log p depends on u only through the squash:
    d/du -log(1 - tanh(u)^2) = 2 tanh(u)."""
    g_log_prob = grad_log_prob.unsqueeze(-1)
    grad_u = grad_actions * (1.0 - actions.square()) + 2.0 * actions * g_log_prob
    return grad_u, grad_u * torch.exp(log_std) * noise - g_log_prob


def to_bounds(action: np.ndarray | torch.Tensor, low: Any, high: Any) -> Any:
    """[-1, 1] -> [low, high], elementwise."""
    return low + (action + 1.0) * (0.5 * (high - low))


def from_bounds(action: np.ndarray | torch.Tensor, low: Any, high: Any) -> Any:
    """[low, high] -> [-1, 1], elementwise (the inverse of `to_bounds`)."""
    return 2.0 * (action - low) / (high - low) - 1.0
