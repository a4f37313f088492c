import torch

from rlkit.math.targets import bootstrap_values, td_target


def test_td_target_stops_at_termination_only():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.5])
    next_q = torch.tensor([10.0, 10.0, 10.0, -4.0])
    terminated = torch.tensor([False, True, False, True])
    # Row 2 was truncated by a time limit: it still bootstraps from its real next state.
    target = td_target(rewards, next_q, terminated, gamma=0.9)
    assert torch.allclose(target, torch.tensor([10.0, 1.0, 10.0, 0.5]))


def test_td_target_gamma_zero_is_reward():
    rewards = torch.tensor([0.3, -1.0])
    assert torch.equal(
        td_target(rewards, torch.tensor([5.0, 5.0]), torch.tensor([False, False]), 0.0), rewards
    )


def test_dqn_bootstrap_is_max_over_target_net():
    next_q_target = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    assert torch.equal(bootstrap_values(next_q_target), torch.tensor([3.0, 5.0]))


def test_double_dqn_bootstrap_hand_computed():
    # The online net prefers action 2 in row 0 and action 0 in row 1; the target net values
    # those actions (2.0 and 0.0), not its own maxima (3.0 and 5.0).
    next_q_target = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    next_q_online = torch.tensor([[0.0, 0.1, 0.9], [7.0, 1.0, 2.0]])
    values = bootstrap_values(next_q_target, next_q_online)
    assert torch.equal(values, torch.tensor([2.0, 0.0]))
    target = td_target(torch.tensor([1.0, 1.0]), values, torch.tensor([False, True]), 0.5)
    assert torch.equal(target, torch.tensor([2.0, 1.0]))
