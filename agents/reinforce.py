"""REINFORCE (Williams 1992): Monte Carlo policy gradient over whole episodes.

The copies play until `batch_episodes` episodes have finished; each step's return G_t (the
discounted rewards to the episode's end) weights the gradient of log pi(a_t | s_t). Options: a
learned value baseline (G_t - V(s_t) instead of G_t: same expectation, less variance), return
normalisation within the batch, and an entropy bonus. An episode cut by a time limit has no
true return; with the baseline its tail is bootstrapped from V(final observation), without it
the cut return is used as it is (the plain estimator has nothing better).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlkit.agent.core import Agent, update_step
from rlkit.agent.on_policy import OnPolicyConfig, actor_critic_actions, build_actor_critic
from rlkit.base.config import require
from rlkit.data.nstep import discounted_returns
from rlkit.math.policy_gradient import explained_variance, normalize, value_loss
from rlkit.optim import build_optimizer


@dataclasses.dataclass
class ReinforceConfig(OnPolicyConfig):
    batch_episodes: int = 16
    """Finished episodes per gradient step."""
    baseline: bool = True
    """Subtract a learned state value V(s_t) from the return (an actor-critic baseline)."""
    normalize_returns: bool = True
    """Normalize the returns (or advantages, with the baseline) within each batch."""
    n_steps: int = 1
    """Unused by REINFORCE (it updates per batch of episodes); kept for the shared settings."""

    def validate(self) -> None:
        super().validate()
        require(self.batch_episodes >= 1, f"batch_episodes must be >= 1, got {self.batch_episodes}")


class Reinforce(Agent):
    """`agents.Reinforce(env="CartPole-v1", seed=0, ...)`; keyword arguments are
    ReinforceConfig fields."""

    Config = ReinforceConfig
    action_kinds = frozenset({"discrete", "continuous"})
    name = "reinforce"

    def __init__(
        self,
        env: str | None = None,
        config: ReinforceConfig | Mapping | None = None,
        **overrides: Any,
    ):
        super().__init__(env, config, **overrides)
        cfg = self.config
        model = build_actor_critic(
            cfg, self.obs_dim, self.n_actions, self.continuous, self.encoded_space()
        )
        self.model = model.to(self.device)
        # Frames go to the network as the env gives them (uint8: the CNN scales them).
        self._obs_dtype = self.stored_observations()[1]
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optimizer)
        self._parameters = list(self.model.parameters())  # walking the modules costs per call
        # The current episode of each copy: observations, actions, rewards.
        self._episodes: list[tuple[list, list, list]] = [([], [], []) for _ in range(cfg.n_envs)]
        # Finished episodes waiting for the next update, as (obs, actions, returns) arrays.
        self._batch: list[tuple] = []
        self.networks = {"model": self.model}
        self._make_guard()

    def describe_memory(self) -> str:
        return "episode storage: grows with the episodes of one batch"

    def _act(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        return self._env_actions(actor_critic_actions(self.model, obs, deterministic))

    def _finish_episode(self, i: int, final_obs: np.ndarray | None) -> tuple:
        """The finished episode of copy i as (obs, actions, returns) arrays; `final_obs` is
        given when the episode was truncated, to bootstrap its tail with the baseline."""
        obs, actions, rewards = self._episodes[i]
        self._episodes[i] = ([], [], [])
        rewards = np.asarray(rewards, dtype=np.float64)
        if final_obs is not None and self.config.baseline:
            with torch.no_grad():
                tail = self.model.values(torch.as_tensor(final_obs[None], device=self.device))
            rewards[-1] += self.config.gamma * float(tail)
        returns = discounted_returns(rewards, self.config.gamma)
        return np.stack(obs), np.asarray(actions), returns.astype(np.float32)

    def _prepare_run(self, start_step: int, end_step: int) -> None:
        # How many updates a run makes depends on episode lengths, so the learning-rate
        # schedule advances once per vector step instead: it then ends where the run ends.
        self._make_lr_scheduler(math.ceil((end_step - start_step) / self.config.n_envs))

    def _train_step(self, monitor, start_step: int, end_step: int) -> dict | None:
        """One step of the env copies (sampled actions); finished episodes join the batch, and
        a full batch makes one gradient step. The last partial batch of a run is not used."""
        cfg = self.config
        obs_tensor = torch.as_tensor(self._obs, dtype=self._obs_dtype, device=self.device)
        with torch.no_grad():
            logits = self.guard.finite_outputs(lambda: self.model.logits(obs_tensor))
            actions = self.model.distribution(logits).sample()
        actions = actions.cpu().numpy()
        next_obs, rewards, terminated, truncated, infos = self.env.step(self._env_actions(actions))
        for i, episode in enumerate(self._episodes):
            episode[0].append(self._obs[i])
            episode[1].append(actions[i])
            episode[2].append(float(rewards[i]))
            if terminated[i] or truncated[i]:
                cut = truncated[i] and not terminated[i]
                self._batch.append(self._finish_episode(i, infos["final_obs"][i] if cut else None))
        self._obs = next_obs
        self.global_step += cfg.n_envs
        self.n_episodes += monitor.record_episodes(infos, self.global_step)
        stats = None
        if len(self._batch) >= cfg.batch_episodes:
            stats = self._update(self._batch)
            self._batch.clear()
            stats["train/learning_rate"] = self.optimizer.param_groups[0]["lr"]
            stats.update(self.model.policy_scalars())
            if self.n_updates % cfg.log_interval != 0:
                stats = None
        if self.n_updates:  # torch expects an optimizer step before the first one
            self.lr_scheduler.step()
        return stats

    @update_step
    def _update(self, batch: list[tuple]) -> dict[str, float]:
        """One gradient step on a batch of finished episodes."""
        cfg = self.config
        obs = torch.as_tensor(
            np.concatenate([e[0] for e in batch]), dtype=self._obs_dtype, device=self.device
        )
        actions = torch.as_tensor(np.concatenate([e[1] for e in batch]), device=self.device)
        returns = torch.as_tensor(np.concatenate([e[2] for e in batch]), device=self.device)
        head, values = self.model(obs)
        distribution = self.model.distribution(head)
        log_probs = distribution.log_prob(actions)
        weights = returns - values.detach() if cfg.baseline else returns
        if cfg.normalize_returns:
            weights = normalize(weights)
        policy_loss = -(log_probs * weights).mean()
        entropy = distribution.entropy().mean()
        loss = policy_loss - cfg.ent_coef * entropy
        v_loss = torch.zeros((), device=self.device)
        if cfg.baseline:
            v_loss = value_loss(values, returns)
            loss = loss + cfg.vf_coef * v_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters, max_norm)
        if self.guard.step(loss, grad_norm):  # else skipped: a NaN/inf never reaches the weights
            self.n_updates += 1
        stats = {
            "train/policy_loss": policy_loss.item(),
            "train/entropy": entropy.item(),
            "train/episodes_per_update": float(len(batch)),
        }
        if cfg.baseline:
            stats["train/value_loss"] = v_loss.item()
            stats["train/explained_variance"] = explained_variance(values.detach(), returns)
        return stats

    def _extra_state(self) -> dict[str, Any]:
        return {
            "episodes": [[list(part) for part in episode] for episode in self._episodes],
            "batch": [list(episode) for episode in self._batch],
        }

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self._episodes = [tuple(list(part) for part in episode) for episode in state["episodes"]]
        self._batch = [tuple(episode) for episode in state["batch"]]
