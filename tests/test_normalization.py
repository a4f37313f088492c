"""Observation normalization and reward scaling (rlkit.nn.normalization): the running moments
against numpy over everything seen, the reward scale against the running discounted return,
and the statistics saved in the agent file and used when a loaded agent acts."""

import numpy as np
import pytest
import torch

import agents
from rlkit.nn.normalization import Normalizer, update_moments


def test_running_moments_equal_numpy_over_all_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 4)) for n in (1, 7, 64, 3)]
    mean, var, count = np.zeros(4), np.ones(4), 0.0
    for batch in batches:
        mean, var, count = update_moments(mean, var, count, batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, everything.var(axis=0), rtol=1e-12)
    assert count == len(everything)


def test_observations_are_centred_scaled_and_clipped():
    norm = Normalizer(2, 1, 0.99, normalize_obs=True, normalize_reward=False, clip_obs=5.0)
    data = np.random.default_rng(1).normal([10.0, -3.0], [4.0, 0.5], (5000, 2))
    norm.observe(data)
    out = norm.obs(data)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-3)
    assert np.abs(norm.obs(np.array([[1e6, -1e6]]))).max() == 5.0


def test_rewards_are_divided_by_the_std_of_the_discounted_return():
    gamma = 0.9
    norm = Normalizer(1, 2, gamma, normalize_obs=False, normalize_reward=True)
    rng = np.random.default_rng(2)
    returns_seen, g = [], np.zeros(2)
    for t in range(300):
        rewards = rng.normal(-5.0, 3.0, 2)
        dones = np.array([t % 50 == 49, t % 70 == 69])
        g = g * gamma + rewards
        returns_seen.append(g.copy())
        scaled = norm.rewards(rewards, dones)
        g[dones] = 0.0
    # The last scale: all returns so far (plus SB3's start of variance 1 at weight 1e-4).
    std = np.sqrt(np.concatenate(returns_seen).var())
    np.testing.assert_allclose(scaled, np.clip(rewards / std, -10, 10), rtol=1e-4)
    np.testing.assert_allclose(norm.returns.numpy(), g)  # restarted where an episode ended


@pytest.mark.parametrize("name", ["ppo", "a2c", "reinforce"])
def test_saved_statistics_come_back_and_the_loaded_agent_acts_the_same(tmp_path, name):
    agent = agents.agent_class(name)(
        env="Pendulum-v1", seed=3, n_envs=2, normalize_obs=True, normalize_reward=True,
        **({"n_steps": 64, "batch_size": 32} if name == "ppo" else {}),
        **({"n_steps": 16} if name == "a2c" else {}),
        **({"batch_episodes": 2} if name == "reinforce" else {}),
    )  # fmt: skip
    agent.learn(1000)
    assert float(agent.normalizer.obs_count) >= 1000  # every training observation
    path = agent.save(tmp_path / "agent.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    loaded = agents.load(path)
    for key, value in agent.normalizer.state_dict().items():
        assert torch.equal(loaded.normalizer.state_dict()[key], value), key
    obs = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32) * 5
    np.testing.assert_array_equal(loaded.act(obs), agent.act(obs))
    # The raw observation goes through the statistics: without them the actions differ.
    loaded.normalizer.obs_mean.fill_(100.0)
    assert not np.array_equal(loaded.act(obs), agent.act(obs))


def test_episode_returns_are_logged_in_the_envs_own_units():
    # The networks get scaled rewards; the logged episode return (rollout/episodic_return)
    # stays Pendulum's own: 200 steps of rewards in [-16.3, 0].
    agent = agents.PPO(env="Pendulum-v1", seed=0, n_envs=2, normalize_reward=True)
    agent.env.reset(seed=5)
    scaled, logged = [], []
    for _ in range(200):
        _, rewards, _, _, infos = agent.env.step(np.zeros((2, 1), np.float32))
        scaled.extend(rewards)
        if "episode" in infos:
            logged.extend(infos["episode"]["r"][infos["_episode"]])
    assert len(logged) == 2 and all(r < -100 for r in logged), logged
    assert max(abs(r) for r in scaled) <= 10.0  # clipped at 10 after scaling
    assert abs(sum(scaled[0::2]) - logged[0]) > 1.0
