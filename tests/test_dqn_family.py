"""The DQN family's pieces: dueling heads, prioritized replay, Monte Carlo terminal targets."""

import numpy as np
import pytest
import torch

from agents import DQN
from rlkit.data.buffers import PrioritizedReplayBuffer
from rlkit.data.nstep import EpisodeCollector, discounted_returns
from rlkit.data.sumtree import SumTree
from rlkit.math.targets import mix_monte_carlo
from rlkit.nn.networks import QNetwork, dueling_aggregate


def test_dueling_aggregation_hand_computed():
    value = torch.tensor([[1.0], [2.0]])
    advantage = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    # Row 0: 1 + A - 2; row 1: 2 + A - 1.
    expected = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0]])
    assert torch.equal(dueling_aggregate(value, advantage), expected)


def test_dueling_qnetwork_keeps_the_interface():
    torch.manual_seed(0)
    q_net = QNetwork(4, 3, [16, 16], dueling=True)
    obs = torch.randn(8, 4)
    q = q_net(obs)
    assert q.shape == (8, 3)
    features = q_net.trunk(obs)
    value, advantage = q_net.value_head(features), q_net.advantage_head(features)
    assert torch.allclose(q, value + advantage - advantage.mean(dim=1, keepdim=True))
    # The mean over actions of Q is V: the advantages are centred.
    assert torch.allclose(q.mean(dim=1, keepdim=True), value, atol=1e-6)
    assert torch.equal(q.argmax(dim=1), advantage.argmax(dim=1))


def test_sum_tree_sampling_frequencies_match_priorities():
    generator = torch.Generator().manual_seed(0)
    tree = SumTree(100)
    priorities = torch.rand(100, generator=generator, dtype=torch.float64) ** 2
    priorities[[3, 50]] = 0.0  # never to be drawn
    tree.update(torch.arange(100), priorities)
    assert tree.total.item() == pytest.approx(priorities.sum().item())
    n = 200_000
    counts = torch.zeros(tree.capacity, dtype=torch.float64)
    for _ in range(n // 1000):
        counts += torch.bincount(tree.sample(1000, generator), minlength=tree.capacity)
    expected = priorities / priorities.sum() * n
    assert counts[100:].sum() == 0 and counts[3] == 0 and counts[50] == 0
    # Stratified sampling has less variance than multinomial; binomial 5-sigma bounds hold.
    sigma = torch.sqrt(expected * (1 - priorities / priorities.sum()))
    assert torch.all((counts[:100] - expected).abs() <= 5 * sigma + 1)


def test_sum_tree_updates_with_repeated_indices_keep_sums_exact():
    tree = SumTree(8)
    tree.update(torch.arange(8), torch.ones(8, dtype=torch.float64))
    tree.update(torch.tensor([2, 2, 5]), torch.tensor([4.0, 4.0, 0.5], dtype=torch.float64))
    leaves = tree.nodes[8:]
    assert leaves.tolist() == [1, 1, 4, 1, 1, 0.5, 1, 1]
    for node in range(1, 8):
        assert tree.nodes[node] == tree.nodes[2 * node] + tree.nodes[2 * node + 1]
    assert tree.find(torch.tensor([0.0, 1.99, 2.0, 5.99, 6.0, 8.49])).tolist() == [0, 1, 2, 2, 3, 5]


def _fill(buffer, n):
    obs = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    zeros = np.zeros(n)
    buffer.add(obs, zeros.astype(np.int64), zeros, obs, zeros.astype(bool), zeros.astype(bool), 0.9)


def test_new_transitions_get_the_largest_priority_so_far():
    buffer = PrioritizedReplayBuffer(16, (2,), alpha=1.0)
    _fill(buffer, 4)
    buffer.sample(1)  # applies the pending priorities
    assert buffer.tree.priorities(torch.arange(4)).tolist() == [1.0] * 4
    buffer.update_priorities(torch.tensor([1]), torch.tensor([5.0]))
    _fill(buffer, 2)
    buffer.sample(1)
    assert buffer.tree.priorities(torch.tensor([4, 5])).tolist() == pytest.approx([5.0, 5.0])


def test_importance_weights_hand_computed():
    alpha, beta = 0.5, 0.4
    buffer = PrioritizedReplayBuffer(4, (2,), alpha=alpha, epsilon=0.0)
    _fill(buffer, 4)
    td_errors = torch.tensor([1.0, 4.0, 9.0, 16.0])
    buffer.sample(1)
    buffer.update_priorities(torch.arange(4), td_errors)
    # p^alpha = 1, 2, 3, 4; P = p / 10; w = (4 P)^-beta / max over the batch.
    probabilities = torch.tensor([1.0, 2.0, 3.0, 4.0]) / 10
    batch = buffer.sample(512, torch.Generator().manual_seed(0), beta=beta)
    raw = (4 * probabilities[batch.indices]) ** -beta
    assert torch.allclose(batch.weights, (raw / raw.max()).float())
    assert batch.weights.max() == 1.0
    # The least likely transition has the largest weight.
    assert batch.weights[batch.indices == 0].min() == 1.0
    # Sampling follows the priorities: index 3 four times as often as index 0 (stratified).
    counts = torch.bincount(batch.indices, minlength=4).tolist()
    assert counts == pytest.approx([51.2, 102.4, 153.6, 204.8], abs=2)


def test_discounted_returns():
    assert discounted_returns([0.0, 0.0, 1.0], 0.5).tolist() == [0.25, 0.5, 1.0]
    assert discounted_returns([1.0, 1.0], 1.0).tolist() == [2.0, 1.0]


def _step(collector, t, rewards, terminated, truncated):
    obs = np.array([[10.0 * t], [10.0 * t + 1]], dtype=np.float32)
    return collector.add(obs, np.array([t, t]), np.array(rewards), obs + 10, terminated, truncated)


def test_monte_carlo_returns_are_back_filled_when_the_episode_ends():
    gamma = 0.9
    collector = EpisodeCollector(n_steps=1, gamma=gamma, n_envs=2)
    assert _step(collector, 0, [0.0, 0.0], [False, False], [False, False]) is None
    assert _step(collector, 1, [0.0, 0.0], [False, False], [False, False]) is None
    # Copy 0 terminates with reward 1; copy 1 is truncated (its true return is unknown).
    ready = _step(collector, 2, [1.0, 5.0], [True, False], [False, True])
    obs, _, returns, _, terminated, truncated, discounts, mc_returns, mc_valid = ready
    assert obs[:, 0].tolist() == [0.0, 10.0, 20.0, 1.0, 11.0, 21.0]
    assert returns.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 5.0]  # one-step rewards
    assert mc_returns[:3] == pytest.approx([gamma**2, gamma, 1.0])
    assert mc_valid.tolist() == [True, True, True, False, False, False]
    assert terminated.tolist() == [False, False, True, False, False, False]
    assert truncated.tolist() == [False, False, False, False, False, True]
    assert discounts == pytest.approx([gamma] * 6)
    # Both copies start afresh.
    assert _step(collector, 3, [0.0, 0.0], [False, False], [False, False]) is None


def test_monte_carlo_with_n_step_windows():
    collector = EpisodeCollector(n_steps=2, gamma=0.5, n_envs=1)
    obs = np.zeros((1, 1), dtype=np.float32)
    for t, reward in enumerate([1.0, 2.0]):
        assert collector.add(obs + t, [t], [reward], obs + t + 1, [False], [False]) is None
    ready = collector.add(obs + 2, [2], [4.0], obs + 3, [True], [False])
    _, _, returns, next_obs, terminated, _, discounts, mc_returns, mc_valid = ready
    assert returns.tolist() == [1.0 + 0.5 * 2.0, 2.0 + 0.5 * 4.0, 4.0]
    assert next_obs[:, 0].tolist() == [2.0, 3.0, 3.0]
    assert terminated.tolist() == [False, True, True]
    assert discounts.tolist() == [0.25, 0.25, 0.5]
    assert mc_returns.tolist() == [1.0 + 0.5 * 2.0 + 0.25 * 4.0, 2.0 + 0.5 * 4.0, 4.0]
    assert mc_valid.all()


def test_mixed_target_hand_computed():
    td = torch.tensor([1.0, 1.0, 1.0])
    mc = torch.tensor([3.0, 3.0, 3.0])
    valid = torch.tensor([True, True, False])
    assert torch.equal(mix_monte_carlo(td, mc, valid, 0.0), td)
    assert torch.equal(mix_monte_carlo(td, mc, valid, 0.25), torch.tensor([1.5, 1.5, 1.0]))
    assert torch.equal(mix_monte_carlo(td, mc, valid, 1.0), torch.tensor([3.0, 3.0, 1.0]))


def test_agent_with_every_option_trains_and_updates_priorities():
    agent = DQN(
        env="CartPole-v1", n_envs=2, seed=0, learning_starts=300, buffer_size=5_000,
        double_q=True, n_steps=3, beta_mc=0.5, prioritized_replay=True,
        network={"hidden_sizes": [32, 32], "dueling": True},
    )  # fmt: skip
    agent.learn(2_000)
    n = len(agent.buffer)
    assert n > 1_500 and agent.n_updates > 0
    priorities = agent.buffer.tree.priorities(torch.arange(n))
    assert priorities.min() > 0 and not torch.allclose(priorities, priorities[0].expand(n))
    assert agent.buffer.mc_valid[:n].any()  # CartPole episodes terminate
