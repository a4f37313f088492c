"""SAC on continuous actions: action spaces checked in user terms, actions inside the bounds,
the update's pieces (each loss reaches only its own parameters; alpha moves towards the target
entropy), save/load without pickle, TensorBoard scalars, and learning on Pendulum-v1. Exact
resume is in test_resume.py."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from rlkit.agent import check_spaces
from rlkit.errors import EnvError

from .helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(
    learning_starts=100, batch_size=32, buffer_size=5000, network={"hidden_sizes": [32, 32]}
)


def test_discrete_env_and_unbounded_actions_are_refused_in_one_line():
    with pytest.raises(EnvError, match="SAC needs a continuous action space"):
        agents.SAC(env="CartPole-v1")
    with pytest.raises(EnvError, match=r"use an agent for continuous actions \(sac\)"):
        agents.DQN(env="Pendulum-v1")
    unbounded = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    obs = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(EnvError, match="unbounded; wrap the env with"):
        check_spaces("SAC", "X-v0", obs, unbounded, continuous=True)
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", "configs/sac_pendulum.yaml",
         "--set", "env=CartPole-v1", "--run-dir", "/nonexistent/never"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_actions_lie_within_the_bounds_of_the_env():
    agent = agents.SAC(env="MountainCarContinuous-v0", seed=0, **SMALL)
    obs = np.random.default_rng(0).uniform(-1, 1, (256, 2)).astype(np.float32)
    for deterministic in (True, False):
        actions = agent.act(obs, deterministic=deterministic)
        assert actions.shape == (256, 1) and actions.dtype == np.float32
        assert (actions >= -1).all() and (actions <= 1).all()
    pendulum = agents.SAC(env="Pendulum-v1", seed=0, **SMALL)  # bounds [-2, 2]
    actions = pendulum.act(np.zeros((1000, 3), np.float32), deterministic=False)
    assert (np.abs(actions) <= 2).all() and np.abs(actions).max() > 1.0


def test_each_loss_moves_only_its_own_parameters():
    agent = agents.SAC(env="Pendulum-v1", seed=1, **SMALL)
    agent.learn(150)  # fills the buffer past learning_starts: 50 updates
    before = {name: [p.detach().clone() for p in net.parameters()]
              for name, net in agent.networks.items()}  # fmt: skip
    # One update moves the actor, the critics, alpha, and (Polyak) the target critics ...
    stats = agent._update()
    assert stats is not None and np.isfinite(list(stats.values())).all()
    after = {name: list(net.parameters()) for name, net in agent.networks.items()}
    changed = {name: any(not torch.equal(a, b) for a, b in zip(before[name], after[name],
                                                                strict=True))
               for name in before}  # fmt: skip
    assert changed == {"actor": True, "critic": True, "critic_target": True, "temperature": True}
    # ... but the actor's term reaches the actor only, never the critics' weights.
    batch = agent.buffer.sample(32, agent.sample_generator)
    mean, log_std = agent.actor(batch.obs)
    from rlkit.gaussian import squashed_sample

    actions, log_prob = squashed_sample(mean, log_std, torch.randn_like(mean))
    frozen = {k: v.detach() for k, v in agent.critic.named_parameters()}
    q = torch.min(*torch.func.functional_call(agent.critic, frozen, (batch.obs, actions)))
    agent.optimizer.zero_grad(set_to_none=True)
    (agent.alpha() * log_prob - q).mean().backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())


def test_alpha_falls_when_the_policy_is_more_random_than_the_target():
    # At the start the policy's entropy is far above -|A| = -1: alpha must decrease.
    agent = agents.SAC(env="Pendulum-v1", seed=2, **SMALL)
    agent.learn(400)
    assert agent.alpha().item() < 1.0


def test_saved_agent_acts_the_same_and_loads_without_pickle(tmp_path):
    agent = agents.SAC(env="Pendulum-v1", seed=3, log_interval=100, **SMALL)
    agent.learn(300, run_dir=tmp_path)
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = agents.load(path)
    obs = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    scalars = read_scalars(tmp_path)
    for tag in ("train/critic_loss", "train/actor_loss", "train/alpha", "train/entropy",
                "train/action_std", "train/mean_q", "rollout/episodic_return"):  # fmt: skip
        assert tag in scalars, tag


@pytest.mark.slow
def test_sac_learns_pendulum_quickly():
    # configs/sac_pendulum.yaml's values, 12,000 steps, greedy over 20 test episodes: seeds
    # 1-10 scored -125.7, -114.4, -126.1, -109.7, -131.6, -127.8, -133.1, -126.0, -127.4,
    # -136.4 (AMD EPYC; random actions score about -1,200). -300 holds on every one with a
    # margin of 160, whatever another CPU's rounding does to seed 1's run. (At 6,000 steps
    # seed 8 was still at -614: too early for a test that must hold on any seed.)
    agent = agents.SAC(env="Pendulum-v1", seed=1, learning_starts=100, optimizer={"lr": 1e-3})
    agent.learn(12_000)
    result = agent.evaluate(20)
    assert result.mean_return > -300, result.returns
