"""Policy-gradient math (GAE, returns, PPO losses), truncation bootstrapping, and the agents."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from rlkit.agent.on_policy import collect_rollout
from rlkit.data.rollout import RolloutBuffer
from rlkit.io.recorder import RunMonitor
from rlkit.math.policy_gradient import (
    CategoricalLogits,
    approx_kl,
    clipped_surrogate_loss,
    discounted_returns,
    explained_variance,
    gae,
    ppo_loss_gradients,
    ratio_statistics,
    value_loss,
)
from rlkit.nn.networks import ActorCritic


def test_gae_hand_computed():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[False], [False], [False]])
    last = torch.tensor([0.2])
    # deltas: 1 + .9*.4 - .5 = .86; 1 + .9*.3 - .4 = .87; 1 + .9*.2 - .3 = .88
    # A2 = .88; A1 = .87 + .72*.88 = 1.5036; A0 = .86 + .72*1.5036 = 1.942592
    advantages, returns = gae(rewards, values, dones, last, gamma, lam)
    assert advantages[:, 0].tolist() == pytest.approx([1.942592, 1.5036, 0.88])
    assert returns[:, 0].tolist() == pytest.approx([2.442592, 1.9036, 1.18])


def test_gae_stops_at_episode_ends():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [0.3]])
    dones = torch.tensor([[False], [True], [False]])
    last = torch.tensor([0.2])
    # Step 1 ends its episode: delta1 = 2 - .4 = 1.6 and nothing flows back across it into
    # step 1 from step 2 (a new episode).
    advantages, _ = gae(rewards, values, dones, last, gamma, lam)
    a2 = 1 + 0.9 * 0.2 - 0.3
    a1 = 2 - 0.4
    a0 = (1 + 0.9 * 0.4 - 0.5) + 0.72 * a1
    assert advantages[:, 0].tolist() == pytest.approx([a0, a1, a2])


def test_gae_lambda_one_is_the_n_step_return():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    values = torch.rand(3, 2)
    dones = torch.tensor([[False, False], [False, True], [False, False]])
    last = torch.tensor([5.0, 3.0])
    _, returns = gae(rewards, values, dones, last, 0.5, 1.0)
    expected = discounted_returns(rewards, dones, 0.5, last)
    assert torch.allclose(returns, expected)
    # Column 0: 1 + .5*0 + .25*2 + .125*5; column 1 restarts after its episode end.
    assert expected[:, 0].tolist() == pytest.approx([1 + 0.5 + 0.625, 1.0 + 1.25, 2.0 + 2.5])
    assert expected[:, 1].tolist() == pytest.approx([0.5, 1.0, 1.0 + 1.5])


def test_clipped_surrogate_hand_computed():
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7])
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    # min(r A, clip(r) A): 1.2 (clipped), 0.5, -1.1, -0.8 (clipped) -> loss = -mean
    assert clipped_surrogate_loss(ratio, advantages, 0.2).item() == pytest.approx(
        -(1.2 + 0.5 - 1.1 - 0.8) / 4
    )


def test_value_loss_and_clipping():
    values, returns = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert value_loss(values, returns).item() == pytest.approx(0.5)
    old = torch.tensor([0.0, 0.0])
    # Row 0 moved from 0 to 2 but is clipped to 0.5: max(1, 0.25) = 1; row 1: 1.
    assert value_loss(values, returns, old, 0.5).item() == pytest.approx(0.5 * (1 + 1) / 2)
    values = torch.tensor([0.6, 0.0])  # moved 0.6 toward the return: clipped at 0.5
    assert value_loss(values, returns, old, 0.5).item() == pytest.approx(0.5 * (0.25 + 1) / 2)


def test_approx_kl_and_explained_variance():
    assert approx_kl(torch.zeros(5)).item() == 0.0
    assert approx_kl(torch.tensor([0.1, -0.1])).item() > 0
    target = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(target, target) == 1.0
    assert explained_variance(torch.full((3,), 2.0), target) == pytest.approx(0.0)


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_gae_in_numpy_is_torchs_to_the_bit(lam):
    """On the CPU gae runs its loop in numpy; the same float32 operations as torch's loop (the
    path for CUDA and for tensors on an autograd graph)."""
    torch.manual_seed(1)
    rewards, values = torch.randn(32, 8), torch.randn(32, 8)
    dones, last = torch.rand(32, 8) < 0.1, torch.randn(8)
    numpy_path = gae(rewards, values, dones, last, 0.98, lam)
    graph_path = gae(rewards, values.requires_grad_(), dones, last, 0.98, lam)
    for a, b in zip(numpy_path, graph_path, strict=True):
        assert torch.equal(a, b.detach())
    assert graph_path[1].requires_grad


def test_ratio_statistics_are_the_means_of_each_minibatchs():
    """PPO logs the mean over minibatches of each one's approx KL and clip fraction; the
    minibatches of one size are reduced together, and the last, smaller one on its own."""
    torch.manual_seed(0)
    log_ratios = [0.3 * torch.randn(64) for _ in range(5)] + [0.3 * torch.randn(10)]
    kl, clip_fraction = ratio_statistics(log_ratios, 0.2)
    expected_kl = sum(approx_kl(r).item() for r in log_ratios) / 6
    clipped = [((r.exp() - 1).abs() > 0.2).float().mean().item() for r in log_ratios]
    assert kl == pytest.approx(expected_kl, rel=1e-6)
    assert clip_fraction == pytest.approx(sum(clipped) / 6, rel=1e-6)
    assert 0 < clip_fraction < 1
    assert ratio_statistics([], 0.2) == (0.0, 0.0)
    assert ratio_statistics([torch.zeros(8)], 0.2) == (0.0, 0.0)  # the policy did not move


@pytest.mark.parametrize("shared", [False, True])
def test_actor_critic_log_probs_and_entropy(shared):
    torch.manual_seed(0)
    model = ActorCritic(4, 3, [16, 16], shared=shared)
    obs = torch.randn(5, 4)
    logits, values = model(obs)
    assert logits.shape == (5, 3) and values.shape == (5,)
    assert torch.equal(model.logits(obs), logits) and torch.equal(model.values(obs), values)
    dist = torch.distributions.Categorical(logits=logits)
    log_softmax = torch.log_softmax(logits, dim=1)
    assert torch.allclose(
        dist.log_prob(torch.tensor([0, 1, 2, 0, 1])), log_softmax[range(5), [0, 1, 2, 0, 1]]
    )
    assert torch.allclose(dist.entropy(), -(log_softmax.exp() * log_softmax).sum(dim=1))


def test_truncated_steps_bootstrap_from_the_final_value_and_terminated_do_not():
    if "rlkit-test/CartPole10Steps-v0" not in gym.registry:
        gym.register(
            "rlkit-test/CartPole10Steps-v0",
            entry_point="gymnasium.envs.classic_control:CartPoleEnv",
            max_episode_steps=10,
        )
    import envs

    env = envs.make("rlkit-test/CartPole10Steps-v0", n_envs=2)
    obs, _ = env.reset(seed=0)
    model = ActorCritic(4, 2, [8])
    with torch.no_grad():  # a value function that is easy to recognise: 100 + x position
        model.value[-1].weight.zero_()
        model.value[-1].bias.fill_(100.0)
    buffer = RolloutBuffer(40, 2, 4, torch.device("cpu"))
    gamma = 0.5
    collect_rollout(env, model, buffer, obs, gamma, RunMonitor(None, 80), 0)
    rewards, dones = buffer.rewards.flatten(), buffer.dones.flatten()
    assert dones.any()
    # CartPole pays 1 per step. Ends by the 10-step limit carry 1 + 0.5 * 100; falls carry 1.
    assert set(rewards[~dones].tolist()) == {1.0}
    assert set(rewards[dones].tolist()) <= {1.0, 51.0}
    assert 51.0 in rewards[dones].tolist()


PG_AGENTS = [
    (agents.PPO, {"n_steps": 16, "batch_size": 32, "n_epochs": 2}),
    (agents.A2C, {"n_steps": 5}),
    (agents.Reinforce, {"batch_episodes": 2}),
]


@pytest.mark.parametrize(("cls", "options"), PG_AGENTS, ids=lambda x: getattr(x, "__name__", ""))
def test_save_load_gives_same_actions(tmp_path, cls, options):
    agent = cls(env="CartPole-v1", n_envs=2, seed=1, **options)
    agent.learn(600)
    loaded = agents.load(agent.save(tmp_path / "agent.safetensors"))
    assert type(loaded) is cls and loaded.config == agent.config
    obs = np.random.default_rng(0).normal(size=(128, 4)).astype(np.float32)
    assert np.array_equal(agent.act(obs), loaded.act(obs))
    assert loaded.evaluate(2, seed=0).returns == agent.evaluate(2, seed=0).returns


@pytest.mark.parametrize(("cls", "options"), PG_AGENTS, ids=lambda x: getattr(x, "__name__", ""))
def test_same_seed_same_training(cls, options):
    runs = []
    for seed in (3, 3, 4):
        agent = cls(env="CartPole-v1", n_envs=2, seed=seed, **options)
        agent.learn(600)
        runs.append(agent.model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_async_vector_env_trains():
    agent = agents.PPO(
        env="CartPole-v1", n_envs=2, vectorization="async", n_steps=16, batch_size=32, n_epochs=1
    )
    agent.learn(64)
    assert agent.global_step == 64 and agent.n_updates == 2  # two rollouts, one minibatch each
    agent.close()


def test_ppo_logs_its_scalars(tmp_path):
    from .helpers import read_scalars

    agent = agents.PPO(
        env="CartPole-v1", n_envs=2, seed=0, n_steps=16, batch_size=32, n_epochs=2, log_interval=1
    )
    agent.learn(320, run_dir=tmp_path)
    scalars = read_scalars(tmp_path)
    tags = [
        "train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
        "train/clip_fraction", "train/explained_variance", "train/learning_rate",
        "time/steps_per_second", "rollout/episodic_return", "rollout/episodic_length",
    ]  # fmt: skip
    for tag in tags:
        assert scalars.get(tag), tag


def test_ppo_target_kl_stops_the_epochs_early():
    full = agents.PPO(env="CartPole-v1", n_envs=2, seed=0, n_steps=32, batch_size=16, n_epochs=10)
    full.learn(64)
    assert full.n_updates == 10 * 4  # 10 epochs of 4 minibatches
    early = agents.PPO(
        env="CartPole-v1", n_envs=2, seed=0, n_steps=32, batch_size=16, n_epochs=10,
        target_kl=1e-9, optimizer={"name": "adam", "lr": 1e-2},
    )  # fmt: skip
    early.learn(64)
    assert early.n_updates == 4  # stopped after the first epoch: any change exceeds 1e-9


def test_policy_gradient_config_errors():
    from rlkit.base.errors import ConfigError

    with pytest.raises(ConfigError, match=r"must be a multiple of batch_size"):
        agents.PPO(env="CartPole-v1", n_envs=2, n_steps=10, batch_size=16)
    with pytest.raises(ConfigError, match="did you mean 'gae_lambda'"):
        agents.PPO(env="CartPole-v1", gae_lamda=0.9)
    with pytest.raises(ConfigError, match="vectorization: unknown value 'threads'"):
        agents.A2C(env="CartPole-v1", vectorization="threads")
    with pytest.raises(ConfigError, match="batch_episodes must be >= 1"):
        agents.Reinforce(env="CartPole-v1", batch_episodes=0)


def test_categorical_logits_matches_torch_categorical_exactly():
    from torch.distributions import Categorical

    from rlkit.math.policy_gradient import CategoricalLogits

    logits = torch.randn(256, 5, generator=torch.Generator().manual_seed(0)) * 3
    logits[0, 2] = -1e30  # an action all but excluded
    ours, theirs = CategoricalLogits(logits), Categorical(logits=logits)
    torch.manual_seed(7)
    sampled = ours.sample()
    torch.manual_seed(7)
    assert torch.equal(sampled, theirs.sample())
    assert torch.equal(ours.log_prob(sampled), theirs.log_prob(sampled))
    assert torch.equal(ours.entropy(), theirs.entropy())
    assert torch.equal(ours.probs, theirs.probs)


@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_ppo_loss_gradients_match_autograd(ent_coef):
    # The written-out PPO gradient (used by the fast path) against autograd through the loss
    # functions the autograd path uses, in float64, with ratios on both sides of the clip.
    torch.manual_seed(0)
    batch, n_actions, clip_range, vf_coef = 64, 3, 0.2, 0.5
    logits = (torch.randn(batch, n_actions, dtype=torch.float64) * 2).requires_grad_()
    values = torch.randn(batch, dtype=torch.float64).requires_grad_()
    actions = torch.randint(0, n_actions, (batch,))
    current = torch.log_softmax(logits.detach(), -1).gather(1, actions[:, None]).squeeze(1)
    old_log_probs = current + torch.randn(batch, dtype=torch.float64) * 0.4  # rho far from 1
    advantages = torch.randn(batch, dtype=torch.float64)
    returns = torch.randn(batch, dtype=torch.float64)

    distribution = CategoricalLogits(logits)
    ratio = (distribution.log_prob(actions) - old_log_probs).exp()
    policy_loss = clipped_surrogate_loss(ratio, advantages, clip_range)
    v_loss = value_loss(values, returns)
    entropy = distribution.entropy().mean()
    loss = policy_loss - ent_coef * entropy + vf_coef * v_loss
    loss.backward()

    parts = ppo_loss_gradients(
        logits.detach(), values.detach(), actions, old_log_probs, advantages, returns,
        clip_range, ent_coef, vf_coef,
    )  # fmt: skip
    for ours, theirs in [
        (parts.loss, loss), (parts.policy_loss, policy_loss), (parts.value_loss, v_loss),
        (parts.entropy, entropy), (parts.log_ratio.exp(), ratio),
        (parts.grad_logits, logits.grad), (parts.grad_values, values.grad),
    ]:  # fmt: skip
        assert torch.allclose(ours, theirs.detach(), rtol=1e-12, atol=1e-15)
    # Both branches of the clip were exercised: some samples get no policy gradient.
    clipped = (ratio.detach() - 1).abs() > clip_range
    assert clipped.any() and (~clipped).any()
    no_policy_gradient = (logits.grad.abs().sum(1) < 1e-15) if ent_coef == 0 else None
    if no_policy_gradient is not None:
        assert no_policy_gradient.any() and not no_policy_gradient.all()


def test_numpy_acting_matches_the_model():
    # The CPU rollout path acts in numpy; its log-probabilities and values must be the model's,
    # and its actions must follow the policy's probabilities.
    from rlkit.agent.on_policy import NumpyActorCritic
    from rlkit.nn.mlp_grad import PlainMLP

    torch.manual_seed(0)
    model = ActorCritic(4, 3, [16, 16], "tanh", "orthogonal")
    with torch.no_grad():  # a policy far from uniform
        model.policy.net[-1].weight.mul_(300.0)
    policy = NumpyActorCritic(
        PlainMLP(model.policy.net), PlainMLP(model.value), np.random.default_rng(0)
    )
    obs = np.tile(np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32), (40_000, 1))
    actions, log_probs, values = policy.act(obs)
    with torch.no_grad():
        logits, expected_values = model(torch.from_numpy(obs[:1]))
        expected = torch.log_softmax(logits, -1)[0].numpy()
    assert np.allclose(log_probs, expected[actions], atol=1e-5)
    assert np.allclose(values, expected_values.numpy()[0], atol=1e-5)
    frequencies = np.bincount(actions, minlength=3) / len(actions)
    probabilities = np.exp(expected)
    assert probabilities.max() < 0.95 and probabilities.min() > 0.01  # a real mix
    assert np.allclose(frequencies, probabilities, atol=0.01)
