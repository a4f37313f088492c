"""Advantage actor-critic, synchronous (A2C; Mnih et al. 2016): one gradient step per rollout.

Every `n_steps` steps of the `n_envs` copies, the n-step bootstrapped advantages (GAE with
lambda = 1 by default) weight the policy gradient, the value function regresses onto the
returns, and one step of the optimizer (RMSprop, as in the paper) updates both.
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
    OnPolicyConfig,
    actor_critic_actions,
    build_actor_critic,
    collect_rollout,
)
from rlkit.base.config import check_unit_interval
from rlkit.data.rollout import RolloutBuffer
from rlkit.math.policy_gradient import explained_variance, gae, normalize, value_loss
from rlkit.optim import OptimizerConfig, build_optimizer


@dataclasses.dataclass
class A2CConfig(OnPolicyConfig):
    n_steps: int = 5
    """Environment steps per copy in each rollout: the n of the n-step returns."""
    gae_lambda: float = 1.0
    """1.0: plain n-step bootstrapped advantages; < 1 uses GAE."""
    normalize_advantage: bool = False
    """Normalize the advantages of each rollout."""
    optimizer: OptimizerConfig = dataclasses.field(
        default_factory=lambda: OptimizerConfig(
            name="rmsprop", lr=7e-4, options={"alpha": 0.99, "eps": 1e-5}
        )
    )
    """Optimizer by name with its options (RMSprop as in the A3C paper)."""

    def validate(self) -> None:
        super().validate()
        check_unit_interval("gae_lambda", self.gae_lambda)


class A2C(Agent):
    """`agents.A2C(env="CartPole-v1", seed=0, ...)`; keyword arguments are A2CConfig fields."""

    Config = A2CConfig
    action_kinds = frozenset({"discrete", "continuous"})
    name = "a2c"

    def __init__(
        self, env: str | None = None, config: A2CConfig | Mapping | None = None, **overrides: Any
    ):
        super().__init__(env, config, **overrides)
        cfg = self.config
        model = build_actor_critic(
            cfg, self.obs_dim, self.n_actions, self.continuous, self.encoded_space()
        )
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optimizer)
        self._parameters = list(self.model.parameters())  # walking the modules costs per call
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

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        cfg = self.config
        self._make_lr_scheduler(math.ceil((end_step - start_step) / (cfg.n_steps * cfg.n_envs)))

    def _train_step(self, monitor, start_step: int, end_step: int) -> dict | None:
        """One rollout of n_steps x n_envs steps and one gradient step on it."""
        cfg = self.config
        self._obs, last_values, self.global_step, episodes = collect_rollout(
            self.env, self.model, self.buffer, self._obs, cfg.gamma, monitor, self.global_step,
            env_actions=self._env_actions, guard=self.guard,
        )  # fmt: skip
        self.n_episodes += episodes
        stats = self._update(last_values)
        stats["train/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        stats.update(self.model.policy_scalars())
        self.lr_scheduler.step()
        self.n_rollouts += 1
        if self.n_rollouts % cfg.log_interval != 0:
            return None
        return {k: float(v) for k, v in stats.items()}

    @update_step
    def _update(self, last_values: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One gradient step on the whole rollout."""
        cfg = self.config
        b = self.buffer
        advantages, returns = gae(
            b.rewards, b.values, b.dones, last_values, cfg.gamma, cfg.gae_lambda
        )
        advantages, returns = advantages.reshape(-1), returns.reshape(-1)
        if cfg.normalize_advantage:
            advantages = normalize(advantages)
        head, values = self.model(b.flat("obs"))
        distribution = self.model.distribution(head)
        log_probs = distribution.log_prob(b.flat("actions"))
        policy_loss = -(log_probs * advantages).mean()
        v_loss = value_loss(values, returns)
        entropy = distribution.entropy().mean()
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters, max_norm)
        if self.guard.step(loss, grad_norm):  # else skipped: a NaN/inf never reaches the weights
            self.n_updates += 1
        # Only a few dozen steps per rollout: keep the scalars as tensors, read them if logged.
        return {
            "train/policy_loss": policy_loss.detach(),
            "train/value_loss": v_loss.detach(),
            "train/entropy": entropy.detach(),
            "train/explained_variance": explained_variance(b.flat("values"), returns),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"n_rollouts": self.n_rollouts, "buffer": self.buffer.state_dict()}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.n_rollouts = state["n_rollouts"]
        self.buffer.load_state_dict(state["buffer"])
