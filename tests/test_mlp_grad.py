"""The hand-written MLP backward (rlkit.nn.mlp_grad) against autograd: same gradients, same
forward, same clipping, and DQN trains the same with it as without."""

import pytest
import torch
from torch import nn

import agents
from rlkit.math.losses import LOSSES
from rlkit.nn.mlp_grad import LOSS_GRADIENTS, PlainMLP
from rlkit.nn.networks import mlp


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("hidden", [[], [16], [32, 16]])
@pytest.mark.parametrize("loss", sorted(LOSS_GRADIENTS))
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_autograd(activation, hidden, loss, weighted):
    torch.manual_seed(0)
    net = mlp(5, hidden, 3, activation).double()
    obs = torch.randn(40, 5, dtype=torch.float64)
    actions = torch.randint(0, 3, (40,))
    targets = torch.randn(40, dtype=torch.float64) * 3
    weights = torch.rand(40, dtype=torch.float64) if weighted else None

    q_taken = net(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
    LOSSES[loss](q_taken, targets, weights).backward()
    expected = [p.grad.clone() for p in net.parameters()]

    fast = PlainMLP(net)
    ours = fast.td_gradients(obs, actions, targets, weights, loss)
    assert torch.allclose(ours, q_taken.detach(), rtol=1e-12, atol=1e-12)
    for p, grad in zip(net.parameters(), expected, strict=True):
        assert torch.allclose(p.grad, grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(fast.forward(obs), net(obs), rtol=1e-12, atol=1e-12)


def test_gradient_norm_and_scaling():
    torch.manual_seed(1)
    net = mlp(4, [8], 2, "relu")
    fast = PlainMLP(net)
    fast.td_gradients(
        torch.randn(16, 4) * 50, torch.randint(0, 2, (16,)), torch.randn(16), None, "mse"
    )
    grads = [p.grad.clone() for p in net.parameters()]
    expected = torch.nn.utils.get_total_norm(grads)
    assert expected > 1.0  # (the scaling below changes something)
    assert torch.allclose(fast.grad_norm(), expected, rtol=1e-6)
    fast.scale_grads(0.25)
    for p, g in zip(net.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g * 0.25)


def test_only_plain_relu_or_tanh_mlps_are_supported():
    assert PlainMLP.supports(mlp(4, [8, 8], 2, "relu"))
    assert PlainMLP.supports(mlp(4, [8], 2, "tanh"))
    assert not PlainMLP.supports(mlp(4, [8], 2, "leaky_relu"))
    assert not PlainMLP.supports(nn.Sequential(nn.Linear(4, 8), nn.ReLU()))  # no output
    assert agents.DQN(env="CartPole-v1")._fast is not None
    assert agents.DQN(env="CartPole-v1", network={"dueling": True})._fast is None
    assert agents.DQN(env="CartPole-v1", fast_mlp=False)._fast is None


def test_dqn_trains_the_same_with_and_without_it():
    params = {}
    for fast in (True, False):
        agent = agents.DQN(
            env="CartPole-v1", seed=3, device="cpu", learning_starts=200,
            network={"hidden_sizes": [64, 64]}, fast_mlp=fast,
        )  # fmt: skip
        agent.learn(3000)
        params[fast] = torch.cat([p.detach().reshape(-1) for p in agent.q_net.parameters()])
    # Not bit-for-bit (matrix products summed in another order), within float32 rounding.
    assert torch.allclose(params[True], params[False], rtol=0, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_forward_matches_torch(activation):
    import numpy as np

    net = mlp(4, [64, 64], 3, activation)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = net(torch.as_tensor(obs)).detach().numpy()
    assert np.allclose(PlainMLP(net).forward_numpy(obs), expected, rtol=1e-5, atol=1e-6)
