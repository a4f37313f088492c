"""Proximal Policy Optimization (Schulman et al. 2017) with a clipped surrogate and GAE.

Read top to bottom: the config (PPO's own settings on top of the shared on-policy ones), the
agent's set-up, `_train_step` (collect a rollout, compute advantages, update; the run loop
around it is `Agent.learn`, shared by every agent) and `_update` (several
epochs of minibatch gradient steps: the algorithm itself). The math lives in
rlkit.math.policy_gradient, tested on its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlkit.agent.core import Agent, update_step
from rlkit.agent.on_policy import (
    NumpyActorCritic,
    OnPolicyConfig,
    actor_critic_actions,
    build_actor_critic,
    collect_rollout,
)
from rlkit.base.config import check_choice, check_unit_interval, require
from rlkit.data.rollout import RolloutBuffer
from rlkit.math.policy_gradient import (
    PPOLoss,
    approx_kl,
    clipped_surrogate_loss,
    explained_variance,
    gae,
    normalize,
    ppo_loss_gradients,
    ratio_statistics,
    value_loss,
)
from rlkit.math.schedules import linear_schedule
from rlkit.nn.mlp_grad import PlainMLP
from rlkit.optim import build_optimizer
from rlkit.optim.clipping import clip_gradients


@dataclasses.dataclass
class PPOConfig(OnPolicyConfig):
    batch_size: int = 64
    """Minibatch size for the gradient steps (n_steps * n_envs must be a multiple of it)."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 one-step TD advantages, 1 Monte Carlo advantages."""
    clip_range: float = 0.2
    """Clip range of the probability ratio."""
    clip_range_schedule: str = "constant"
    """constant, or linear (decays to 0 over the run, like the learning rate)."""
    clip_range_vf: float | None = None
    """Clip the value update to this range around the old values (null: no clipping)."""
    normalize_advantage: bool = True
    """Normalize advantages within each minibatch."""
    target_kl: float | None = None
    """Stop a rollout's epochs early once the approximate KL exceeds this (null: never)."""
    fast_mlp: bool = True
    """Separate plain-MLP actor and critic (relu/tanh) without value clipping: the loss
    gradient and the backward written out (rlkit.nn.mlp_grad, rlkit.math.policy_gradient) instead of
    autograd, the same gradients at a fraction of the cost on small nets. false: autograd."""

    def validate(self) -> None:
        super().validate()
        require(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        rollout = self.n_steps * self.n_envs
        require(
            rollout % self.batch_size == 0,
            f"n_steps * n_envs ({rollout}) must be a multiple of batch_size ({self.batch_size})",
        )
        require(self.n_epochs >= 1, f"n_epochs must be >= 1, got {self.n_epochs}")
        check_unit_interval("gae_lambda", self.gae_lambda)
        require(0 < self.clip_range < 1, f"clip_range must be in (0, 1), got {self.clip_range}")
        check_choice("clip_range_schedule", self.clip_range_schedule, ["constant", "linear"])
        if self.clip_range_vf is not None:
            require(
                self.clip_range_vf > 0,
                f"clip_range_vf must be > 0 or null, got {self.clip_range_vf}",
            )
        if self.target_kl is not None:
            require(self.target_kl > 0, f"target_kl must be > 0 or null, got {self.target_kl}")


class PPO(Agent):
    """`agents.PPO(env="CartPole-v1", seed=0, ...)`; keyword arguments are PPOConfig fields."""

    Config = PPOConfig
    action_kinds = frozenset({"discrete", "continuous"})
    name = "ppo"

    def __init__(
        self, env: str | None = None, config: PPOConfig | Mapping | None = None, **overrides: Any
    ):
        super().__init__(env, config, **overrides)
        cfg = self.config
        model = build_actor_critic(
            cfg, self.obs_dim, self.n_actions, self.continuous, self.encoded_space()
        )
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optimizer)
        self._parameters = list(self.model.parameters())  # walking the modules costs per call
        # The hand-written path (rlkit.nn.mlp_grad): actor and critic gradients in one flat buffer,
        # in the order of model.parameters(), so the global norm is one norm.
        self._actor = self._critic = None
        model = self.model
        if (
            cfg.fast_mlp
            and not model.continuous  # the written-out loss gradient is the categorical one
            and not model.shared
            and model.encoder is None  # (a CNN goes through autograd)
            and cfg.clip_range_vf is None
            and PlainMLP.supports(model.policy.net)
            and PlainMLP.supports(model.value)
        ):
            n_actor = PlainMLP.numel(model.policy.net)
            flat_grad = torch.zeros(n_actor + PlainMLP.numel(model.value), device=self.device)
            self._flat_grad = flat_grad
            self._actor = PlainMLP(model.policy.net, flat_grad=flat_grad[:n_actor])
            self._critic = PlainMLP(model.value, flat_grad=flat_grad[n_actor:])
        self._numpy_policy = None  # acting in numpy (CPU only)
        if self._actor is not None and self.device.type == "cpu":
            self._numpy_policy = NumpyActorCritic(self._actor, self._critic, self.rng)
        obs_shape, obs_dtype = self.stored_observations()  # (frames stay uint8)
        self.buffer = RolloutBuffer(
            cfg.n_steps, cfg.n_envs, obs_shape, self.device,
            self.n_actions if self.continuous else None, obs_dtype,
        )  # fmt: skip
        self.n_rollouts = 0
        self.networks = {"model": self.model}
        self._make_guard()

    def describe_memory(self) -> str:
        return f"rollout storage: {self.buffer.nbytes / 1024:.1f} KB on {self.device}"

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        return self._env_actions(actor_critic_actions(self.model, obs, deterministic))

    def _greedy_policy(self):
        if self._numpy_policy is None:
            return None
        return lambda obs: self._actor.forward_numpy(obs).argmax(axis=1)

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        cfg = self.config
        self._planned_rollouts = math.ceil((end_step - start_step) / (cfg.n_steps * cfg.n_envs))
        self._make_lr_scheduler(self._planned_rollouts)

    def _train_step(self, monitor, start_step: int, end_step: int) -> dict | None:
        """One rollout of n_steps x n_envs steps, its advantages, and the PPO update."""
        cfg = self.config
        clip_range = cfg.clip_range
        if cfg.clip_range_schedule == "linear":
            rollout = (self.global_step - start_step) // (cfg.n_steps * cfg.n_envs)
            clip_range = linear_schedule(cfg.clip_range, 0.0, self._planned_rollouts, rollout)
        self.model.eval()
        self._obs, last_values, self.global_step, episodes = collect_rollout(
            self.env, self.model, self.buffer, self._obs, cfg.gamma, monitor, self.global_step,
            self._numpy_policy, self._env_actions, self.guard,
        )  # fmt: skip
        self.n_episodes += episodes
        advantages, returns = gae(
            self.buffer.rewards, self.buffer.values, self.buffer.dones, last_values,
            cfg.gamma, cfg.gae_lambda,
        )  # fmt: skip
        self.buffer.advantages.copy_(advantages)
        self.buffer.returns.copy_(returns)
        self.model.train()
        stats = self._update(clip_range)
        stats["train/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        stats.update(self.model.policy_scalars())
        stats["train/clip_range"] = clip_range
        self.lr_scheduler.step()
        self.n_rollouts += 1
        return stats if self.n_rollouts % cfg.log_interval == 0 else None

    @update_step
    def _update(self, clip_range: float) -> dict[str, float]:
        """n_epochs passes of minibatch steps on the rollout; returns the scalars to log."""
        cfg = self.config
        b = self.buffer
        obs, actions, old_log_probs = b.flat("obs"), b.flat("actions"), b.flat("log_probs")
        advantages, returns, old_values = b.flat("advantages"), b.flat("returns"), b.flat("values")
        size = obs.shape[0]
        sums = [0.0] * 3  # policy loss, value loss, entropy
        log_ratios = []  # each applied step's log rho, for the KL and clip fraction logged
        for _ in range(cfg.n_epochs):
            epoch_start = len(log_ratios)
            order = torch.randperm(size, device=self.device)
            for start in range(0, size, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                mb_advantages = advantages[idx]
                if cfg.normalize_advantage:
                    mb_advantages = normalize(mb_advantages)
                parts, grad_norm = self._loss_and_gradients(
                    obs[idx], actions[idx], old_log_probs[idx], mb_advantages, returns[idx],
                    old_values[idx], clip_range,
                )  # fmt: skip
                # The step's one read from the device: whether the update is finite, the norm
                # for clipping, and the scalars to log.
                loss, grad_norm, *values = torch.stack(
                    (parts.loss, grad_norm, parts.policy_loss, parts.value_loss, parts.entropy)
                ).tolist()
                self._clip_gradients(grad_norm)
                if not self.guard.step(loss, grad_norm):
                    continue  # a NaN/inf never reaches the weights
                self.n_updates += 1
                log_ratios.append(parts.log_ratio)
                sums = [total + value for total, value in zip(sums, values, strict=True)]
            moved = len(log_ratios) > epoch_start  # an update applied in this epoch
            if moved and cfg.target_kl is not None and approx_kl(log_ratios[-1]) > cfg.target_kl:
                break  # the policy moved too far from the one that collected the data
        steps = max(len(log_ratios), 1)
        policy, value, entropy = (total / steps for total in sums)
        kl, clip_fraction = ratio_statistics(log_ratios, clip_range)
        return {
            "train/policy_loss": policy,
            "train/value_loss": value,
            "train/entropy": entropy,
            "train/approx_kl": kl,
            "train/clip_fraction": clip_fraction,
            "train/explained_variance": explained_variance(old_values, returns),
        }

    def _loss_and_gradients(
        self, obs, actions, old_log_probs, advantages, returns, old_values, clip_range
    ) -> tuple[PPOLoss, torch.Tensor]:
        """param.grad <- the gradient of the PPO loss on one minibatch (not yet clipped);
        returns the loss terms and the gradient norm."""
        cfg = self.config
        if self._actor is not None:
            logits, actor_inputs = self._actor.forward_saving(obs)
            values, critic_inputs = self._critic.forward_saving(obs)
            parts = ppo_loss_gradients(
                logits, values.squeeze(1), actions, old_log_probs, advantages, returns,
                clip_range, cfg.ent_coef, cfg.vf_coef,
            )  # fmt: skip
            self._actor.backward(parts.grad_logits, actor_inputs)
            self._critic.backward(parts.grad_values.unsqueeze(1), critic_inputs)
            return parts, torch.linalg.vector_norm(self._flat_grad)
        head, values = self.model(obs)
        distribution = self.model.distribution(head)
        log_ratio = distribution.log_prob(actions) - old_log_probs
        policy_loss = clipped_surrogate_loss(log_ratio.exp(), advantages, clip_range)
        v_loss = value_loss(values, returns, old_values, cfg.clip_range_vf)
        entropy = distribution.entropy().mean()
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = self._autograd_grads()
        parts = PPOLoss(
            loss.detach(), policy_loss.detach(), v_loss.detach(), entropy.detach(),
            log_ratio.detach(), None, None,
        )  # fmt: skip
        return parts, torch.nn.utils.get_total_norm(grads, foreach=True)

    def _clip_gradients(self, grad_norm: float) -> None:
        grads = [self._flat_grad] if self._actor is not None else self._autograd_grads()
        clip_gradients(grads, grad_norm, self.config.max_grad_norm)

    def _autograd_grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self._parameters if p.grad is not None]

    def _extra_state(self) -> dict[str, Any]:
        return {"n_rollouts": self.n_rollouts, "buffer": self.buffer.state_dict()}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.n_rollouts = state["n_rollouts"]
        self.buffer.load_state_dict(state["buffer"])
