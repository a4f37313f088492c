"""Twin Delayed DDPG (TD3, Fujimoto, van Hoof and Meger 2018) for continuous actions.

A deterministic tanh actor mu(s), twin Q(s, a) MLP regressors, and the three fixes TD3 makes
to DDPG: the target takes the smaller of the two target critics (clipped double Q), the actor
and the target networks move only every `policy_delay` critic updates, and the target action
is smoothed with clipped Gaussian noise. Exploration adds Gaussian noise to mu(s). Read top to
bottom: the config, the set-up, acting, `_train_step` (the interaction loop's turn) and
`_update` (one gradient step, the algorithm).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlkit.agent.core import Agent, update_step
from rlkit.agent.off_policy import (
    OffPolicyConfig,
    TrainScalars,
    actor_critic_encoders,
    describe_replay,
    plan_replay,
    prepare_run,
    replay_state,
    restore_replay_state,
    train_step,
)
from rlkit.base.config import check_non_negative, require
from rlkit.data.buffers import ReplayBuffer
from rlkit.math.targets import smoothed_actions, td_target
from rlkit.nn.mlp_grad import PlainMLP
from rlkit.nn.networks import DeterministicPolicy, NetworkConfig, TwinQNetwork
from rlkit.nn.td3_grad import TD3Gradients
from rlkit.optim import OptimizerConfig, build_optimizer
from rlkit.optim.clipping import clip_gradients


def _td3_network() -> NetworkConfig:
    return NetworkConfig(hidden_sizes=[256, 256], activation="relu", init="torch_default")


@dataclasses.dataclass
class TD3Config(OffPolicyConfig):
    """TD3's settings after the replay loop's (rlkit.agent.off_policy.OffPolicyConfig: gamma,
    buffer_size, batch_size, learning_starts, train_freq, gradient_steps, tau, max_grad_norm,
    lr_schedule, log_interval, divergence). Defaults are Stable-Baselines3's, with CleanRL's
    exploration noise (SB3 has none unless given one)."""

    policy_delay: int = 2
    """Critic updates per actor (and target network) update."""
    action_noise: float = 0.1
    """Std of the Gaussian exploration noise added to mu(s), in units of half the action
    range (actions live in [-1, 1] before scaling to the env's bounds)."""
    target_policy_noise: float = 0.2
    """Std of the noise smoothing the target action (same units)."""
    target_noise_clip: float = 0.5
    """The smoothing noise is clipped to [-clip, clip]."""
    network: NetworkConfig = dataclasses.field(default_factory=_td3_network)
    """Actor and critic shape (each its own MLP; on frames the critics' CNN, which the actor
    reads unless share_encoder is false): hidden_sizes, activation, init, encoder."""
    optimizer: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=1e-3))
    """One optimizer over actor and critics, in two parameter groups (same learning rate)."""
    fast_mlp: bool = True
    """Relu or tanh networks: the losses' gradients written out (rlkit.nn.td3_grad) instead of
    autograd: the same gradients in less time per update on CPU. false: autograd."""

    def validate(self) -> None:
        super().validate()
        require(self.policy_delay >= 1, f"policy_delay must be >= 1, got {self.policy_delay}")
        for name in ("action_noise", "target_policy_noise", "target_noise_clip"):
            value = getattr(self, name)
            require(math.isfinite(value), f"{name} must be a finite number, got {value}")
            check_non_negative(name, value)


class TD3(Agent):
    """`agents.TD3(env="Pendulum-v1", seed=0, ...)`; keyword arguments are TD3Config fields."""

    Config = TD3Config
    name = "td3"
    action_kinds = frozenset({"continuous"})

    def __init__(
        self, env: str | None = None, config: TD3Config | Mapping | None = None, **overrides: Any
    ):
        super().__init__(env, config, **overrides)
        cfg = self.config
        # Frames (or a Dict with frames) go through the critics' CNN first, which the actor
        # reads without training it (network.share_encoder; false: a CNN of its own); the
        # target actor reads the target critics'.
        (actor_cnn, critic_cnn), (target_actor_cnn, target_cnn) = actor_critic_encoders(self, 2)
        features = critic_cnn.features if critic_cnn is not None else self.obs_dim
        shape = (features, self.n_actions, cfg.network)
        self.actor = DeterministicPolicy(*shape, actor_cnn).to(self.device)
        self.actor_target = DeterministicPolicy(*shape, target_actor_cnn).to(self.device)
        self.critic = TwinQNetwork(*shape, critic_cnn).to(self.device)
        self.critic_target = TwinQNetwork(*shape, target_cnn).to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_target.requires_grad_(False)
        self.critic_target.requires_grad_(False)
        # Two parameter groups: on the critic-only updates the actor has no gradient, and a
        # group whose parameters all lack one is skipped whole (its Adam step count stays).
        self.optimizer = build_optimizer(
            [{"params": list(self.critic.parameters())}, {"params": list(self.actor.parameters())}],
            cfg.optimizer,
        )
        self.networks = {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
        }
        self._make_guard()
        # The written-out gradient step (rlkit.nn.td3_grad) where the networks allow it, and
        # acting one env step at a time in numpy on the CPU.
        fast = cfg.fast_mlp and TD3Gradients.supports(self.actor, self.critic)
        self._fast = (
            TD3Gradients(self.actor, self.actor_target, self.critic, self.critic_target)
            if fast
            else None
        )
        numpy_actor = (
            self.device.type == "cpu" and self.actor.encoder is None
            and PlainMLP.supports(self.actor.net)
        )  # fmt: skip
        self._numpy_actor = PlainMLP(self.actor.net, gradients=False) if numpy_actor else None
        # Online and target parameters in matching order (the Polyak update pairs them).
        self._parameters = [*self.critic.parameters(), *self.actor.parameters()]
        self._targets = [*self.critic_target.parameters(), *self.actor_target.parameters()]
        self.sample_generator = torch.Generator(device=self.device)
        self.sample_generator.manual_seed(cfg.seed)  # replay sampling, target smoothing noise
        self.train_stats = TrainScalars()
        self.buffer: ReplayBuffer | None = None  # allocated when training starts
        self.replay_obs = plan_replay(self)

    def describe_memory(self) -> str:
        return describe_replay(self)

    # ------------------------------------------------------------------ acting

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Env actions (scaled to the bounds): mu(s), plus exploration noise if not
        deterministic."""
        actions = self._policy_actions(obs, deterministic)
        return self._env_actions(actions)

    def _policy_actions(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Actions in [-1, 1], as the critics and the buffer see them."""
        if self._numpy_actor is not None:
            actions = np.tanh(self._numpy_actor.forward_numpy(obs.numpy()))
        else:
            with torch.inference_mode():
                actions = self.actor(obs).cpu().numpy()
        if deterministic:
            return actions
        noise = self.rng.normal(0.0, self.config.action_noise, actions.shape)
        return np.clip(actions + noise, -1.0, 1.0).astype(np.float32)

    def _greedy_policy(self):
        if self._numpy_actor is None:
            return None
        return lambda obs: self._env_actions(np.tanh(self._numpy_actor.forward_numpy(obs)))

    # ------------------------------------------------------------------ training

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        prepare_run(self, start_step, end_step)

    def _train_step(self, monitor, start_step: int, end_step: int) -> dict | None:
        """One step of the env copies with mu(s) plus Gaussian noise (uniformly random actions
        until learning_starts), then the gradient steps that are due (rlkit.agent.off_policy)."""
        return train_step(self, monitor)

    @update_step
    def _update(self) -> dict[str, float] | None:
        """One critic gradient step on one replay batch, and every `policy_delay`-th one also
        an actor step and the Polyak update of both targets; None if the guard skipped it."""
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, self.sample_generator, _FIELDS)
        noise = torch.randn(  # smooths the target action
            batch.actions.shape, generator=self.sample_generator, device=self.device
        )
        actor_step = (self.n_updates + 1) % cfg.policy_delay == 0
        if self._fast is not None:  # the same gradients, written out (rlkit.nn.td3_grad)
            values = self._fast.step(
                batch, noise, cfg.target_policy_noise, cfg.target_noise_clip, actor_step
            ).tolist()
            grads = [self._fast.flat_grad if actor_step else self._fast.critic_flat_grad]
        else:
            values, grads = self._autograd_gradients(batch, noise, actor_step)
        clip_gradients(grads, values[2], cfg.max_grad_norm)
        applied = self.guard.step(values[0], values[2])
        self.lr_scheduler.step()
        if not applied:
            return None
        self.n_updates += 1
        if actor_step:
            with torch.no_grad():
                torch._foreach_lerp_(self._targets, self._parameters, cfg.tau)
        return dict(zip(_STAT_TAGS, values[1:], strict=False))

    def _autograd_gradients(
        self, batch, noise: torch.Tensor, actor_step: bool
    ) -> tuple[list[float], list[torch.Tensor]]:
        """param.grad <- the gradient of the losses (not yet clipped; the actor's only on an
        actor step); returns (loss, critic loss, grad norm, mean Q[, actor loss]) and the
        gradients."""
        cfg = self.config
        with torch.no_grad():  # target policy smoothing, then clipped double Q
            next_actions = smoothed_actions(
                self.actor_target(batch.next_obs), noise, cfg.target_policy_noise,
                cfg.target_noise_clip,
            )  # fmt: skip
            next_q = torch.min(*self.critic_target(batch.next_obs, next_actions))
            target = td_target(batch.rewards, next_q, batch.terminated, batch.discounts)
        q1, q2 = self.critic(batch.obs, batch.actions)
        critic_loss = (q1 - target).pow(2).mean() + (q2 - target).pow(2).mean()
        loss = critic_loss
        if actor_step:
            # The actor climbs Q1(s, mu(s)) through the action; the critic's weights are held
            # fixed in that term (detached), so only the critic loss moves them.
            actor_loss = -self.critic.frozen_q1(batch.obs, self.actor(batch.obs)).mean()
            loss = loss + actor_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self._parameters if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        scalars = [
            loss.detach(),
            critic_loss.detach(),
            grad_norm,
            torch.min(q1, q2).mean().detach(),
        ]
        if actor_step:
            scalars.append(actor_loss.detach())
        return torch.stack(scalars).tolist(), grads

    # ------------------------------------------------------------------ saving

    def _extra_state(self) -> dict[str, Any]:
        return replay_state(self, self.train_stats)

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        restore_replay_state(self, self.train_stats, state)


_FIELDS = {"obs", "actions", "rewards", "next_obs", "terminated", "discounts"}
_STAT_TAGS = ("train/critic_loss", "train/grad_norm", "train/mean_q", "train/actor_loss")
