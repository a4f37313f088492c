"""What the policy-gradient agents (REINFORCE, A2C, PPO) share: their settings, the actor-critic
they build, and the loop that fills a rollout (rlkit.data.rollout) by acting.

Truncation: when a copy's episode is cut by a time limit, the state it reached still has a
value. The collector adds gamma * V(final observation) to that step's reward and then treats
the step as an episode end, so the advantage code never bootstraps across the reset; an episode
that terminated gets no such bonus.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

import envs
from rlkit.agent.config import AgentConfig
from rlkit.agent.guard import DivergenceConfig, DivergenceGuard
from rlkit.base.config import (
    check_choice,
    check_non_negative,
    check_unit_interval,
    require,
)
from rlkit.data.rollout import RolloutBuffer
from rlkit.io.recorder import RunMonitor
from rlkit.nn.encoders import make_encoder
from rlkit.nn.mlp_grad import PlainMLP
from rlkit.nn.networks import ActorCritic, NetworkConfig
from rlkit.optim import LRScheduleConfig, OptimizerConfig


def _tanh_network() -> NetworkConfig:
    return NetworkConfig(hidden_sizes=[64, 64], activation="tanh")


@dataclasses.dataclass
class OnPolicyConfig(AgentConfig):
    """Settings every policy-gradient agent has after the ones every agent has (env, seed,
    device, eval_*); each agent's config adds its own."""

    n_envs: int = 8
    """Copies of the environment stepped together."""
    vectorization: str = "sync"
    """sync (copies stepped in this process) or async (one subprocess per copy)."""
    gamma: float = 0.99
    """Discount factor."""
    n_steps: int = 128
    """Environment steps per copy in each rollout."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (keeps the policy exploring)."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float | None = 0.5
    """Clip the global gradient norm to this value (null: no clipping)."""
    network: NetworkConfig = dataclasses.field(default_factory=_tanh_network)
    """Actor-critic shape: hidden_sizes, activation, init, shared (one trunk, two heads)."""
    optimizer: OptimizerConfig = dataclasses.field(
        default_factory=lambda: OptimizerConfig(name="adam", lr=3e-4, options={"eps": 1e-5})
    )
    """Optimizer by name with its options."""
    lr_schedule: LRScheduleConfig = dataclasses.field(default_factory=LRScheduleConfig)
    """Learning-rate schedule, stepped once per rollout."""
    log_interval: int = 1
    """Rollouts between two writes of the training scalars."""
    log_std_init: float = 0.0
    """Continuous actions: the Gaussian policy's initial log std per action dimension, in units
    of half the action range (0: std 1, the whole range)."""
    normalize_obs: bool = False
    """Normalize observations by running mean and std (saved with the agent; SB3's
    VecNormalize)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (saved with the agent)."""
    divergence: DivergenceConfig = dataclasses.field(default_factory=DivergenceConfig)
    """Divergence guard: skip non-finite updates, roll back, stop (see rlkit.agent.guard)."""

    def validate(self) -> None:
        super().validate()
        check_choice("vectorization", self.vectorization, list(envs.VECTORIZATIONS))
        check_unit_interval("gamma", self.gamma)
        require(self.n_steps >= 1, f"n_steps must be >= 1, got {self.n_steps}")
        check_non_negative("ent_coef", self.ent_coef)
        check_non_negative("vf_coef", self.vf_coef)
        if self.max_grad_norm is not None:
            require(
                np.isfinite(self.max_grad_norm) and self.max_grad_norm > 0,
                f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}",
            )
        require(self.log_interval >= 1, f"log_interval must be >= 1, got {self.log_interval}")


def build_actor_critic(
    config: OnPolicyConfig,
    obs_dim: int,
    n_actions: int,
    continuous: bool,
    frames: gym.spaces.Box | gym.spaces.Dict | None = None,
) -> ActorCritic:
    """`n_actions`: how many actions (Discrete) or action dimensions (`continuous`, a Box).
    `frames`: the space an encoder with a CNN reads first (rlkit.nn.encoders): image frames,
    or a Dict with frames among its keys."""
    net = config.network
    encoder = value_encoder = None
    if frames is not None:
        encoder = make_encoder(frames, net.encoder)
        value_encoder = None if net.share_encoder else make_encoder(frames, net.encoder)
        obs_dim = encoder.features
    return ActorCritic(
        obs_dim, n_actions, net.hidden_sizes, net.activation, net.init, net.shared, net.gain,
        continuous, config.log_std_init, encoder, value_encoder,
    )  # fmt: skip


def actor_critic_actions(model: ActorCritic, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
    """The policy's actions for a batch: the most probable one (the Gaussian's mean), or one
    sampled."""
    with torch.inference_mode():
        head = model.logits(obs)
        if deterministic:
            actions = head if model.continuous else head.argmax(dim=1)
        else:
            actions = model.distribution(head).sample()
    return actions.cpu().numpy()


class NumpyActorCritic:
    """Acting on the CPU in numpy for a separate plain-MLP actor and critic (rlkit.nn.mlp_grad):
    a rollout step of 8 CartPoles costs ~0.3 ms through torch modules, distributions and
    tensor writes, and a fraction of that here. Actions are drawn by inverse CDF from the
    agent's numpy generator (saved in checkpoints like every other RNG)."""

    def __init__(self, actor: PlainMLP, critic: PlainMLP, rng: np.random.Generator) -> None:
        self.actor, self.critic, self.rng = actor, critic, rng

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sampled actions, their log-probabilities, V(obs)) for a batch of observations."""
        logits = self.actor.forward_numpy(obs)
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        cumulative = np.exp(log_probs).cumsum(axis=1)
        u = self.rng.random((len(obs), 1))
        # The first action whose cumulative probability exceeds u (the last if rounding leaves
        # the total a hair below u).
        actions = (u >= cumulative[:, :-1]).sum(axis=1)
        chosen = np.take_along_axis(log_probs, actions[:, None], axis=1)[:, 0]
        return actions, chosen, self.values(obs)

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.critic.forward_numpy(obs)[:, 0]


def collect_rollout(
    env,
    model: ActorCritic,
    buffer: RolloutBuffer,
    obs: np.ndarray,
    gamma: float,
    monitor: RunMonitor,
    global_step: int,
    numpy_policy: NumpyActorCritic | None = None,
    env_actions: Callable[[np.ndarray], np.ndarray] | None = None,
    guard: DivergenceGuard | None = None,
) -> tuple[np.ndarray, torch.Tensor, int, int]:
    """Fill `buffer` by acting with `model`'s sampled actions from `obs` (through
    `numpy_policy` when given: the same model, acting in numpy on the CPU). `env_actions`
    turns the policy's actions into the env's (continuous ones: clipped and scaled to the
    bounds); the buffer keeps the policy's own, whose log-probabilities the update needs.
    `guard` rolls back weights whose policy outputs are not finite (torch cannot sample from
    them; the numpy policy's draws let them through to the update, which the guard skips).

    Returns (next observations, V of them for bootstrapping, new global step, finished
    episodes).
    """
    if numpy_policy is not None:
        return _collect_rollout_numpy(env, numpy_policy, buffer, obs, gamma, monitor, global_step)
    device = buffer.obs.device
    n_envs = buffer.n_envs
    episodes = 0
    for t in range(buffer.n_steps):
        obs_tensor = torch.as_tensor(obs, dtype=buffer.obs.dtype, device=device)
        with torch.no_grad():
            if guard is None:
                head, values = model(obs_tensor)
            else:
                head, values = guard.finite_outputs(lambda: model(obs_tensor))  # noqa: B023
            distribution = model.distribution(head)
            actions = distribution.sample()
            log_probs = distribution.log_prob(actions)
        step_actions = actions.cpu().numpy()
        if env_actions is not None:
            step_actions = env_actions(step_actions)
        next_obs, rewards, terminated, truncated, infos = env.step(step_actions)
        rewards = np.asarray(rewards, dtype=np.float32).copy()
        cut = np.flatnonzero(truncated & ~terminated)
        if len(cut):  # bootstrap a time-limit cut from the value of where it stopped
            final_obs = np.stack([infos["final_obs"][i] for i in cut])
            final_obs = torch.as_tensor(final_obs, dtype=buffer.obs.dtype)
            with torch.no_grad():
                final_values = model.values(torch.as_tensor(final_obs, device=device))
            rewards[cut] += gamma * final_values.cpu().numpy()
        buffer.obs[t] = obs_tensor
        buffer.actions[t] = actions
        buffer.log_probs[t] = log_probs
        buffer.values[t] = values
        buffer.rewards[t] = torch.as_tensor(rewards, device=device)
        buffer.dones[t] = torch.as_tensor(terminated | truncated, device=device)
        obs = next_obs
        global_step += n_envs
        episodes += monitor.record_episodes(infos, global_step)
    with torch.no_grad():
        last_values = model.values(torch.as_tensor(obs, dtype=buffer.obs.dtype, device=device))
    return obs, last_values, global_step, episodes


def _collect_rollout_numpy(
    env,
    policy: NumpyActorCritic,
    buffer: RolloutBuffer,
    obs: np.ndarray,
    gamma: float,
    monitor: RunMonitor,
    global_step: int,
) -> tuple[np.ndarray, torch.Tensor, int, int]:
    """collect_rollout for a CPU buffer, written through numpy views of its tensors."""
    fields = ("obs", "actions", "log_probs", "values", "rewards", "dones")
    store = {name: getattr(buffer, name).numpy() for name in fields}
    episodes = 0
    for t in range(buffer.n_steps):
        actions, log_probs, values = policy.act(obs)
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        store["rewards"][t] = rewards
        cut = np.flatnonzero(truncated & ~terminated)
        if len(cut):  # bootstrap a time-limit cut from the value of where it stopped
            final_obs = np.stack([infos["final_obs"][i] for i in cut]).astype(np.float32)
            store["rewards"][t, cut] += gamma * policy.values(final_obs)
        store["obs"][t] = obs
        store["actions"][t] = actions
        store["log_probs"][t] = log_probs
        store["values"][t] = values
        store["dones"][t] = terminated | truncated
        obs = next_obs
        global_step += buffer.n_envs
        episodes += monitor.record_episodes(infos, global_step)
    last_values = torch.from_numpy(policy.values(obs).astype(np.float32))
    return obs, last_values, global_step, episodes
