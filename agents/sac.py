"""Soft Actor-Critic (Haarnoja et al. 2018, with the automatic temperature of the 2018 "SAC
Algorithms and Applications" paper) for continuous actions.

A tanh-squashed Gaussian actor (rlkit.math.gaussian), twin Q(s, a) MLP regressors with
Polyak-averaged targets, and the entropy temperature alpha tuned to keep the policy's entropy
near `target_entropy` (default: minus the number of action dimensions). Read top to bottom:
the config, the set-up, acting, `_train_step` (the interaction loop's turn) and `_update` (one
gradient step, the algorithm).
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
from rlkit.math.gaussian import LOG_STD_MAX, LOG_STD_MIN, squashed_sample
from rlkit.math.targets import td_target
from rlkit.nn.mlp_grad import NumpyLayers
from rlkit.nn.networks import NetworkConfig, SquashedGaussianPolicy, TwinQNetwork
from rlkit.nn.sac_grad import SACGradients
from rlkit.optim import OptimizerConfig, build_optimizer
from rlkit.optim.clipping import clip_gradients


def _sac_network() -> NetworkConfig:
    return NetworkConfig(hidden_sizes=[256, 256], activation="relu", init="torch_default")


@dataclasses.dataclass
class SACConfig(OffPolicyConfig):
    """SAC's settings after the replay loop's (rlkit.agent.off_policy.OffPolicyConfig: gamma,
    buffer_size, batch_size, learning_starts, train_freq, gradient_steps, tau, max_grad_norm,
    lr_schedule, log_interval, divergence). Defaults are Stable-Baselines3's."""

    ent_coef: float | None = None
    """Entropy temperature alpha; null: tuned automatically towards target_entropy (SB3's
    `auto` and `auto_0.1` are read as null, the latter with initial_ent_coef 0.1)."""
    initial_ent_coef: float = 1.0
    """alpha at the start when it is tuned."""
    target_entropy: float | None = None
    """Entropy the tuned alpha aims at (null, or SB3's auto: -(number of action dimensions))."""
    network: NetworkConfig = dataclasses.field(default_factory=_sac_network)
    """Actor and critic shape (each its own MLP; on frames the critics' CNN, which the actor
    reads unless share_encoder is false): hidden_sizes, activation, init, encoder."""
    optimizer: OptimizerConfig = dataclasses.field(default_factory=lambda: OptimizerConfig(lr=3e-4))
    """One optimizer over the actor, the critics and alpha (same learning rate, as SB3)."""
    fast_mlp: bool = True
    """Relu or tanh networks: the losses' gradients written out (rlkit.nn.sac_grad) instead of
    autograd: the same gradients, about a quarter less time per update on CPU. false: autograd."""

    @staticmethod
    def translate_input(data: dict[str, Any]) -> dict[str, Any]:
        """Stable-Baselines3's (and the RL Zoo's) spellings of a tuned alpha: `ent_coef: auto`
        (tuned from initial_ent_coef) and `ent_coef: auto_0.1` (tuned from 0.1), as
        `ent_coef: null` and `initial_ent_coef`; `target_entropy: auto` (minus the number of
        action dimensions) as null; and the replay loop's (train_freq's tuple)."""
        data = OffPolicyConfig.translate_input(data)
        if data.get("target_entropy") == "auto":
            data = dict(data, target_entropy=None)
        value = data.get("ent_coef")
        if not isinstance(value, str) or not value.startswith("auto"):
            return data
        data = dict(data, ent_coef=None)
        if value == "auto":
            return data
        start = value.removeprefix("auto_")
        try:
            initial = float(start) if start != value else None
        except ValueError:
            initial = None
        require(
            initial is not None,
            f"ent_coef: expected a number, null or auto (tuned), or auto_<alpha to start from>, "
            f"got {value!r}",
        )
        given = data.get("initial_ent_coef", initial)
        require(
            given == initial,
            f"ent_coef {value} starts alpha at {initial} but initial_ent_coef says {given}; "
            "give one of them",
        )
        data["initial_ent_coef"] = initial
        return data

    def __post_init__(self) -> None:
        if self.target_entropy == "auto":  # SACConfig(target_entropy="auto")
            self.target_entropy = None
        if isinstance(self.ent_coef, str):  # SACConfig(ent_coef="auto"), not from a mapping
            data = {"ent_coef": self.ent_coef}
            default = type(self).__dataclass_fields__["initial_ent_coef"].default
            if self.initial_ent_coef != default:  # (a given value; the default yields)
                data["initial_ent_coef"] = self.initial_ent_coef
            data = self.translate_input(data)
            self.ent_coef = data["ent_coef"]
            self.initial_ent_coef = data.get("initial_ent_coef", self.initial_ent_coef)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.ent_coef is not None:
            check_non_negative("ent_coef", self.ent_coef)
        require(
            math.isfinite(self.initial_ent_coef) and self.initial_ent_coef > 0,
            f"initial_ent_coef must be > 0, got {self.initial_ent_coef}",
        )


class EntropyTemperature(torch.nn.Module):
    """log alpha as a parameter (a module, so that it is saved and restored with the rest)."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(initial)))


class SAC(Agent):
    """`agents.SAC(env="Pendulum-v1", seed=0, ...)`; keyword arguments are SACConfig fields."""

    Config = SACConfig
    name = "sac"
    action_kinds = frozenset({"continuous"})

    def __init__(
        self, env: str | None = None, config: SACConfig | Mapping | None = None, **overrides: Any
    ):
        super().__init__(env, config, **overrides)
        cfg = self.config
        # Frames (or a Dict with frames) go through the critics' CNN first, which the actor
        # reads without training it (network.share_encoder; false: a CNN of its own).
        (actor_cnn, critic_cnn), (_, target_cnn) = actor_critic_encoders(self, 2)
        features = critic_cnn.features if critic_cnn is not None else self.obs_dim
        shape = (features, self.n_actions, cfg.network)
        self.actor = SquashedGaussianPolicy(*shape, actor_cnn).to(self.device)
        self.critic = TwinQNetwork(*shape, critic_cnn).to(self.device)
        self.critic_target = TwinQNetwork(*shape, target_cnn).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.temperature = EntropyTemperature(cfg.initial_ent_coef).to(self.device)
        self.tune_alpha = cfg.ent_coef is None
        self.temperature.requires_grad_(self.tune_alpha)
        self.target_entropy = (
            -float(self.n_actions) if cfg.target_entropy is None else cfg.target_entropy
        )
        self.optimizer = build_optimizer(
            [*self.actor.parameters(), *self.critic.parameters(), self.temperature.log_alpha],
            cfg.optimizer,
        )
        self.networks = {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }
        self._make_guard()
        # The written-out gradient step (rlkit.nn.sac_grad) where the networks allow it.
        fast = cfg.fast_mlp and SACGradients.supports(self.actor, self.critic)
        self._fast = (
            SACGradients(
                self.actor, self.critic, self.critic_target, self.temperature.log_alpha,
                self.tune_alpha,
            )
            if fast
            else None
        )  # fmt: skip
        # Acting one env step at a time in numpy on the CPU (rlkit.nn.mlp_grad.NumpyLayers).
        linears = [*self.actor.trunk[0::2], self.actor.mean, self.actor.log_std]
        numpy_actor = (
            self.device.type == "cpu" and cfg.network.activation in ("relu", "tanh")
            and self.actor.encoder is None
        )  # fmt: skip
        self._numpy_actor = NumpyLayers(linears, cfg.network.activation) if numpy_actor else None
        self._parameters = list(self.optimizer.param_groups[0]["params"])
        self._critic_parameters = list(self.critic.parameters())
        self._target_parameters = list(self.critic_target.parameters())
        self.sample_generator = torch.Generator(device=self.device)
        self.sample_generator.manual_seed(cfg.seed)  # replay sampling and the actor's noise
        self.train_stats = TrainScalars()
        self.buffer: ReplayBuffer | None = None  # allocated when training starts
        self.replay_obs = plan_replay(self)

    def describe_memory(self) -> str:
        return describe_replay(self)

    def alpha(self) -> torch.Tensor:
        if self.tune_alpha:
            return self.temperature.log_alpha.detach().exp()
        return torch.tensor(self.config.ent_coef, device=self.device)

    # ------------------------------------------------------------------ acting

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Env actions (scaled to the bounds): tanh(mean) if deterministic, else a sample."""
        actions = self._policy_actions(obs, deterministic)
        return self._env_actions(actions)

    def _policy_actions(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """Actions in [-1, 1], as the critics and the buffer see them."""
        if self._numpy_actor is not None:
            return self._numpy_policy_actions(obs.numpy(), deterministic)
        with torch.inference_mode():
            mean, log_std = self.actor(obs)
            if deterministic:
                return torch.tanh(mean).cpu().numpy()
            noise = torch.randn(mean.shape, generator=self.sample_generator, device=self.device)
            return squashed_sample(mean, log_std, noise)[0].cpu().numpy()

    def _numpy_policy_actions(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """`_policy_actions` in numpy, the same noise drawn from the same generator."""
        layers = self._numpy_actor
        features = layers.hidden(obs, len(layers.views()) - 2)  # the trunk, then the heads
        (mean_weight, mean_bias), (std_weight, std_bias) = layers.views()[-2:]
        mean = features @ mean_weight.T + mean_bias
        if deterministic:
            return np.tanh(mean)
        log_std = np.clip(features @ std_weight.T + std_bias, LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=self.sample_generator).numpy()
        return np.tanh(mean + np.exp(log_std) * noise)

    def _greedy_policy(self):
        if self._numpy_actor is None:
            return None
        return lambda obs: self._env_actions(self._numpy_policy_actions(obs, deterministic=True))

    # ------------------------------------------------------------------ training

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        prepare_run(self, start_step, end_step)

    def _train_step(self, monitor, start_step: int, end_step: int) -> dict | None:
        """One step of the env copies with the actor's samples (uniformly random actions until
        learning_starts), then the gradient steps that are due (rlkit.agent.off_policy)."""
        return train_step(self, monitor)

    @update_step
    def _update(self) -> dict[str, float] | None:
        """One gradient step of the critics, the actor and alpha on one replay batch (their
        three losses summed: each reaches only its own parameters); None if the guard skipped
        it."""
        cfg = self.config
        batch = self.buffer.sample(cfg.batch_size, self.sample_generator, _FIELDS)
        alpha = self.alpha()
        if self._fast is not None:  # the same gradients, written out (rlkit.nn.sac_grad)
            noise = (self._noise(batch.actions), self._noise(batch.actions))  # as drawn below
            values = self._fast.step(batch, *noise, alpha, self.target_entropy).tolist()
            grads = [self._fast.flat_grad]
        else:
            values, grads = self._autograd_gradients(batch, alpha)
        clip_gradients(grads, values[3], cfg.max_grad_norm)
        log_alpha = self.temperature.log_alpha
        if not self.tune_alpha and log_alpha.grad is None:
            # A fixed alpha's log alpha sits in the optimizer too (one layout for checkpoints);
            # a zero gradient keeps all its parameters stepping together in its one fused step,
            # not one step per parameter (about 0.9 ms more per update at the Zoo's sizes).
            # (The written-out path's buffer already holds one for it.)
            log_alpha.grad = torch.zeros_like(log_alpha)
        applied = self.guard.step(values[0], values[3])
        self.lr_scheduler.step()
        if not applied:
            return None
        self.n_updates += 1
        with torch.no_grad():
            torch._foreach_lerp_(self._target_parameters, self._critic_parameters, cfg.tau)
        stats = dict(zip(_STAT_TAGS, [*values[1:], float(alpha)], strict=True))
        if not self.tune_alpha:
            del stats["train/alpha_loss"]
        return stats

    def _autograd_gradients(self, batch, alpha: torch.Tensor) -> tuple[list[float], list]:
        """param.grad <- the gradient of the three losses (not yet clipped); returns (loss,
        critic loss, actor loss, grad norm, mean Q, entropy, action std, alpha loss) and the
        gradients."""
        with torch.no_grad():  # the soft target: min of the target critics minus alpha log pi
            next_mean, next_log_std = self.actor(batch.next_obs)
            next_actions, next_log_prob = squashed_sample(
                next_mean, next_log_std, self._noise(next_mean)
            )
            next_q = torch.min(*self.critic_target(batch.next_obs, next_actions))
            target = td_target(
                batch.rewards, next_q - alpha * next_log_prob, batch.terminated, batch.discounts
            )
        q1, q2 = self.critic(batch.obs, batch.actions)
        critic_loss = 0.5 * ((q1 - target).pow(2).mean() + (q2 - target).pow(2).mean())
        # The actor climbs min Q(s, a~pi) - alpha log pi through the action; the critics' own
        # weights are held fixed in that term (detached), so only the critic loss moves them.
        mean, log_std = self.actor(batch.obs)
        actions, log_prob = squashed_sample(mean, log_std, self._noise(mean))
        q_pi = torch.min(*self.critic.frozen(batch.obs, actions))
        actor_loss = (alpha * log_prob - q_pi).mean()
        # alpha rises when the entropy (-log pi) is below the target (0 when alpha is fixed)
        log_alpha = self.temperature.log_alpha
        alpha_loss = -(log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        loss = critic_loss + actor_loss + (alpha_loss if self.tune_alpha else 0.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self._parameters if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        values = torch.stack((
            loss.detach(), critic_loss.detach(), actor_loss.detach(), grad_norm,
            torch.min(q1, q2).mean().detach(), -log_prob.mean().detach(), log_std.exp().mean(),
            alpha_loss.detach(),
        )).tolist()  # fmt: skip
        return values, grads

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.sample_generator, device=self.device)

    # ------------------------------------------------------------------ saving

    def _extra_state(self) -> dict[str, Any]:
        return replay_state(self, self.train_stats)

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        restore_replay_state(self, self.train_stats, state)


_FIELDS = {"obs", "actions", "rewards", "next_obs", "terminated", "discounts"}
_STAT_TAGS = (
    "train/critic_loss", "train/actor_loss", "train/grad_norm", "train/mean_q",
    "train/entropy", "train/action_std", "train/alpha_loss", "train/alpha",
)  # fmt: skip
