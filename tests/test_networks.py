import pytest
import torch
from torch import nn

from rlkit.base.errors import ConfigError
from rlkit.nn.networks import ACTIVATIONS, NetworkConfig, PolicyNetwork, QNetwork, mlp


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_shapes_and_activation(activation):
    net = mlp(4, [32, 16], 3, activation=activation)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 32), (32, 16), (16, 3)]
    acts = [m for m in net if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(isinstance(m, ACTIVATIONS[activation]) for m in acts)
    assert net(torch.randn(5, 4)).shape == (5, 3)


@pytest.mark.parametrize("init", ["orthogonal", "kaiming"])
def test_initialisation_preserves_scale_and_zeroes_biases(init):
    torch.manual_seed(0)
    net = mlp(256, [256, 256], 4, activation="relu", init=init)
    for layer in net:
        if isinstance(layer, nn.Linear):
            assert torch.all(layer.bias == 0)
    # He-style gain: ReLU pre-activations keep roughly unit variance through the layers.
    x = torch.randn(4096, 256)
    h = x
    for layer in list(net)[:-1]:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            assert 0.6 < h.std().item() < 1.6


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        mlp(4, [8], 2, activation="gelu")
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        NetworkConfig(activation="rellu")


def test_qnetwork_outputs_one_value_per_action():
    q_net = QNetwork(obs_dim=4, n_actions=2, hidden_sizes=[64, 64])
    out = q_net(torch.randn(7, 4))
    assert out.shape == (7, 2) and out.dtype == torch.float32


def test_policy_network_is_a_categorical_classifier():
    torch.manual_seed(0)
    policy = PolicyNetwork(obs_dim=4, n_actions=3, hidden_sizes=[32])
    obs = torch.randn(10, 4)
    dist = policy.distribution(obs)
    logits = policy(obs)
    assert torch.allclose(dist.probs.sum(dim=1), torch.ones(10))
    actions = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    expected_log_prob = torch.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)
    assert torch.allclose(dist.log_prob(actions), expected_log_prob)
    p = torch.softmax(logits, dim=1)
    assert torch.allclose(dist.entropy(), -(p * p.log()).sum(dim=1))
    # Output gain 0.01: the initial policy is close to uniform.
    assert torch.allclose(dist.probs, torch.full((10, 3), 1 / 3), atol=0.02)
    assert torch.equal(policy.act(obs, deterministic=True), logits.argmax(dim=1))
    assert policy.act(obs).shape == (10,)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_gradients_match_finite_differences(activation):
    # Notes 004: "numerically check your gradients". gradcheck compares autograd's Jacobian
    # with central differences, in float64.
    torch.manual_seed(0)
    net = mlp(3, [5, 4], 2, activation=activation).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-5)

    # And with respect to the weights and biases, the gradients the optimizer uses.
    names = [name for name, _ in net.named_parameters()]

    def loss_of_params(*values):
        outputs = torch.func.functional_call(net, dict(zip(names, values, strict=True)), (x,))
        return outputs.square().sum()

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    assert torch.autograd.gradcheck(loss_of_params, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_twin_q_network_is_two_mlps_in_values_and_gradients(activation):
    # The stacked, batched critics against the plain version: two `mlp`s from the same seed.
    from rlkit.nn.networks import TwinQNetwork

    config = NetworkConfig(hidden_sizes=[8, 6], activation=activation, init="torch_default")
    torch.manual_seed(0)
    twin = TwinQNetwork(3, 2, config).double()
    torch.manual_seed(0)
    plain = [mlp(5, [8, 6], 1, activation, "torch_default").double() for _ in range(2)]
    obs = torch.randn(7, 3, dtype=torch.float64)
    actions = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    x = torch.cat((obs, actions), dim=1)
    expected = [net(x).squeeze(1) for net in plain]
    got = twin(obs, actions)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    # Weight gradients: layer i of critic c is weights[i][c], the transpose of nn.Linear's.
    loss = (got[0] ** 2).sum() + 3 * got[1].sum()
    loss.backward()
    ((expected[0] ** 2).sum() + 3 * expected[1].sum()).backward()
    for i in range(3):
        for c, net in enumerate(plain):
            linear = [m for m in net if isinstance(m, nn.Linear)][i]
            assert torch.allclose(twin.weights[i].grad[c], linear.weight.grad.T, atol=1e-12)
            assert torch.allclose(twin.biases[i].grad[c, 0], linear.bias.grad, atol=1e-12)
    # Frozen: the same values, gradients reach the actions only.
    twin.zero_grad(set_to_none=True)
    actions.grad = None
    (grad_live,) = torch.autograd.grad(sum(q.sum() for q in twin(obs, actions)), actions)
    frozen = twin.frozen(obs, actions)
    sum(q.sum() for q in frozen).backward()
    assert torch.allclose(actions.grad, grad_live, atol=1e-12)
    assert all(p.grad is None for p in twin.parameters())
    assert torch.allclose(twin.frozen_q1(obs, actions), expected[0], atol=1e-12)
    assert torch.autograd.gradcheck(lambda o, a: twin(o, a), (obs.requires_grad_(), actions))


@pytest.mark.parametrize("gain", [None, 2**0.5])
def test_hidden_layers_are_initialised_with_the_configured_gain(gain):
    from rlkit.nn.networks import ActorCritic

    model = ActorCritic(4, 2, [64, 64], activation="tanh", init="orthogonal", gain=gain)
    expected = torch.nn.init.calculate_gain("tanh") if gain is None else gain
    first, second = model.policy.net[0].weight, model.policy.net[2].weight
    # Orthogonal init: the columns of the (64, 4) matrix are orthogonal with norm `gain`.
    assert torch.allclose(first.T @ first, expected**2 * torch.eye(4), atol=1e-5)
    assert torch.allclose(second @ second.T, expected**2 * torch.eye(64), atol=1e-4)
    head = model.policy.net[4].weight  # the policy head keeps its small gain
    assert torch.allclose(head @ head.T, 0.01**2 * torch.eye(2), atol=1e-7)
