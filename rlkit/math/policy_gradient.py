"""The math of policy-gradient agents, as pure functions of tensors (tested directly).

Advantages and returns take (T, N) tensors:

Layout: row t is step t of the rollout, column i is env copy i. `dones[t, i]` is True when copy
i's episode ended at step t (terminated or truncated). A truncated step has already had
gamma * V(final observation) added to its reward by the collector, so here every episode end
simply stops the bootstrap: the next row of a finished copy belongs to a new episode.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rlkit.math.gaussian import diagonal_entropy, diagonal_log_prob


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
    on_graph = any(t.requires_grad for t in (rewards, values, last_values))
    if rewards.device.type == "cpu" and not on_graph:
        # The same loop in numpy on the tensors' memory: the same float32 operations in the
        # same order (so the same numbers), at ~1 us an operation instead of torch's ~5 (a
        # 32-step rollout: ~0.2 ms instead of ~1.3 ms, once per PPO update).
        advantages = torch.empty_like(rewards)
        _gae_loop(
            rewards.numpy(), values.numpy(), (~dones).to(rewards.dtype).numpy(),
            last_values.numpy(), gamma, lam, advantages.numpy(), np.zeros_like,
        )  # fmt: skip
        return advantages, advantages + values
    advantages = torch.empty_like(rewards)
    _gae_loop(
        rewards,
        values,
        (~dones).to(rewards.dtype),
        last_values,
        gamma,
        lam,
        advantages,
        torch.zeros_like,
    )
    return advantages, advantages + values


def _gae_loop(rewards, values, not_done, last_values, gamma, lam, advantages, zeros_like) -> None:
    """GAE's backward recursion into `advantages`, on numpy arrays or torch tensors alike."""
    running = zeros_like(last_values)
    next_values = last_values
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_values - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
        next_values = values[t]


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


def clipped_surrogate_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> torch.Tensor:
    """PPO's policy loss (Schulman et al. 2017): -E[min(rho A, clip(rho, 1-eps, 1+eps) A)],
    with rho = pi_new(a|s) / pi_old(a|s). The clip removes the incentive to move the policy
    further than eps away from the one that collected the data."""
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """0.5 E[(V - R)^2]; with `clip_range`, PPO's clipped variant: the new value may move at most
    clip_range from the old one before the error stops decreasing the loss (pessimistic max)."""
    squared = (values - returns).square()
    if clip_range is None or old_values is None:
        return 0.5 * squared.mean()
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    return 0.5 * torch.max(squared, (clipped - returns).square()).mean()


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi_new) estimated from samples of pi_old as E[(rho - 1) - log rho]
    (unbiased and never negative; http://joschu.net/blog/kl-approx.html)."""
    return ((log_ratio.exp() - 1) - log_ratio).mean()


def ratio_statistics(log_ratios: list[torch.Tensor], clip_range: float) -> tuple[float, float]:
    """The means over minibatches of `approx_kl` and of the clip fraction (the share of rows
    whose ratio rho left [1 - clip_range, 1 + clip_range]), from each minibatch's log rho.
    Minibatches of one size are reduced together: one pass per update for what would be eight
    operations per gradient step."""
    if not log_ratios:
        return 0.0, 0.0
    by_size: dict[int, list[torch.Tensor]] = {}
    for log_ratio in log_ratios:
        by_size.setdefault(len(log_ratio), []).append(log_ratio)
    kl_sum = clip_sum = 0.0
    with torch.no_grad():
        for group in by_size.values():
            log_ratio = torch.stack(group)  # (minibatches, rows)
            ratio_minus_one = log_ratio.exp() - 1.0
            kl = (ratio_minus_one - log_ratio).mean(1).sum()
            clipped = (ratio_minus_one.abs() > clip_range).float().mean(1).sum()
            kl_group, clip_group = torch.stack((kl, clipped)).tolist()
            kl_sum, clip_sum = kl_sum + kl_group, clip_sum + clip_group
    return kl_sum / len(log_ratios), clip_sum / len(log_ratios)


class PPOLoss(NamedTuple):
    """PPO's loss terms (detached) and the loss's gradient on the networks' outputs."""

    loss: torch.Tensor  # policy_loss - ent_coef * entropy + vf_coef * value_loss
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor  # mean entropy of the policy
    log_ratio: torch.Tensor  # (B,) log pi_new(a|s) - log pi_old(a|s)
    grad_logits: torch.Tensor  # (B, n_actions): d loss / d logits
    grad_values: torch.Tensor  # (B,): d loss / d values


def ppo_loss_gradients(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip_range: float,
    ent_coef: float,
    vf_coef: float,
) -> PPOLoss:
    """PPO's loss, clipped_surrogate_loss - ent_coef * entropy + vf_coef * value_loss (no
    value clipping), and its gradient with respect to the logits and the values, written out
    so that no autograd graph is needed (tests check both against autograd).

    With p = softmax(logits), u_i = rho_i A_i and c_i = clip(rho_i) A_i::

      d policy_loss / d log pi(a_i|s_i) = -u_i / B where u_i <= c_i (the unclipped term is the
        smaller one, or they are equal inside the clip range), else 0 (the clip holds it);
      d log pi(a_i|s_i) / d logits_ij = [j = a_i] - p_ij;
      d entropy_i / d logits_ij = -p_ij (log p_ij + entropy_i);
      d value_loss / d V_i = (V_i - R_i) / B.
    """
    batch = len(actions)
    with torch.no_grad():
        log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
        probs = log_probs.exp()
        index = actions.long().unsqueeze(1)
        log_ratio = log_probs.gather(1, index).squeeze(1) - old_log_probs
        ratio = log_ratio.exp()
        unclipped = ratio * advantages
        clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
        policy_loss = -torch.min(unclipped, clipped).mean()
        grad_log_pi = torch.where(unclipped <= clipped, unclipped, 0.0).mul_(-1.0 / batch)
        grad_logits = probs * -grad_log_pi.unsqueeze(1)
        grad_logits.scatter_add_(1, index, grad_log_pi.unsqueeze(1))
        safe_log_probs = log_probs.clamp(min=torch.finfo(log_probs.dtype).min)
        entropy_per_sample = -(probs * safe_log_probs).sum(-1)
        entropy = entropy_per_sample.mean()
        if ent_coef != 0.0:
            spread = safe_log_probs + entropy_per_sample.unsqueeze(1)
            grad_logits.addcmul_(probs, spread, value=ent_coef / batch)
        error = values - returns
        value_loss = 0.5 * error.square().mean()
        grad_values = error.mul_(vf_coef / batch)
        loss = policy_loss - ent_coef * entropy + vf_coef * value_loss
    return PPOLoss(loss, policy_loss, value_loss, entropy, log_ratio, grad_logits, grad_values)


class CategoricalLogits:
    """torch.distributions.Categorical's arithmetic, without its argument checks and object
    machinery: on the acting and update paths those cost more than the math (about 0.2 ms a
    call here). Same formulas, so the same numbers and samples (tested against Categorical)."""

    __slots__ = ("_probs", "log_probs")

    def __init__(self, logits: torch.Tensor) -> None:
        self.log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)  # normalized logits
        self._probs: torch.Tensor | None = None

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = torch.softmax(self.log_probs, dim=-1)
        return self._probs

    def sample(self) -> torch.Tensor:
        return torch.multinomial(self.probs, 1, True).squeeze(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        log_probs = self.log_probs.clamp(min=torch.finfo(self.log_probs.dtype).min)
        return -(log_probs * self.probs).sum(-1)


class DiagonalGaussian:
    """The policy over Box actions: u ~ N(mean, diag(exp(log_std))^2), with a state-independent
    log std (one learned parameter per action dimension, as PPO's paper and SB3). The same
    calls as CategoricalLogits, so the agents' updates read the same for both; the math is
    rlkit.math.gaussian's (tested against torch.distributions)."""

    __slots__ = ("log_std", "mean")

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor) -> None:
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    def sample(self) -> torch.Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return diagonal_log_prob(actions, self.mean, self.log_std)

    def entropy(self) -> torch.Tensor:
        return diagonal_entropy(self.log_std)
