"""rlkit.math.gaussian against torch.distributions, the tanh squash correction against a numeric
change of variables, and the squashed sample's written-out gradients against autograd."""

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from rlkit.math.gaussian import (
    diagonal_entropy,
    diagonal_log_prob,
    from_bounds,
    squashed_sample,
    squashed_sample_grads,
    tanh_log_det,
    to_bounds,
)


def _params(seed=0, batch=64, dim=3):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    log_std = torch.rand(batch, dim, generator=g, dtype=torch.float64) * 3 - 2
    noise = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    return mean, log_std, noise


def test_diagonal_log_prob_and_entropy_match_torch():
    mean, log_std, noise = _params()
    u = mean + log_std.exp() * noise
    reference = Independent(Normal(mean, log_std.exp()), 1)
    torch.testing.assert_close(diagonal_log_prob(u, mean, log_std), reference.log_prob(u))
    torch.testing.assert_close(diagonal_entropy(log_std), reference.entropy())


def test_squashed_log_prob_matches_torchs_tanh_transform():
    mean, log_std, noise = _params(seed=1)
    action, log_prob = squashed_sample(mean, log_std, noise)
    reference = TransformedDistribution(
        Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()]
    )
    # Away from the edges, where torch's inverse atanh is accurate.
    inside = action.abs().amax(dim=1) < 0.999
    assert inside.sum() > 40
    torch.testing.assert_close(log_prob[inside], reference.log_prob(action)[inside])
    assert (action.abs() < 1).all()


def test_squash_correction_is_the_numeric_change_of_variables():
    # p(a) = p(u) / |da/du|: compare log(1 - tanh(u)^2) with log of a finite difference.
    u = torch.linspace(-6, 6, 101, dtype=torch.float64).reshape(-1, 1)
    h = 1e-6
    slope = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)
    torch.testing.assert_close(tanh_log_det(u), slope.log().squeeze(1), rtol=1e-6, atol=1e-6)


def test_squash_correction_stays_finite_where_tanh_rounds_to_one():
    u = torch.tensor([[20.0], [-40.0], [100.0]])
    naive = torch.log(1 - torch.tanh(u).pow(2)).squeeze(1)
    assert torch.isinf(naive).all()  # what the stable form avoids
    stable = tanh_log_det(u)
    assert torch.isfinite(stable).all()
    torch.testing.assert_close(stable, 2 * (np.log(2) - u.abs()).squeeze(1))


def test_squashed_sample_gradients_reach_mean_and_log_std():
    mean, log_std, noise = (t.float().requires_grad_(i < 2) for i, t in enumerate(_params(2)))
    action, log_prob = squashed_sample(mean, log_std, noise)
    (action.sum() + log_prob.sum()).backward()
    assert mean.grad is not None and log_std.grad is not None
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_std.grad).all()


@pytest.mark.parametrize("array", [np.asarray, torch.as_tensor])
def test_bounds_round_trip(array):
    low, high = array(np.array([-2.0, 0.0, -1.0])), array(np.array([2.0, 10.0, 3.0]))
    a = array(np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.5, -0.5]]))
    scaled = to_bounds(a, low, high)
    np.testing.assert_allclose(np.asarray(scaled)[:2], np.stack([low, high]))
    np.testing.assert_allclose(np.asarray(scaled)[2], [0.0, 7.5, 0.0])
    np.testing.assert_allclose(np.asarray(from_bounds(scaled, low, high)), np.asarray(a))


def test_policy_gradient_gaussian_matches_torch_normal():
    from rlkit.math.policy_gradient import DiagonalGaussian

    torch.manual_seed(0)
    mean, log_std = torch.randn(64, 3), torch.randn(3)  # one log std per dimension
    ours = DiagonalGaussian(mean, log_std)
    reference = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    actions = ours.sample()
    assert actions.shape == (64, 3)
    torch.testing.assert_close(ours.log_prob(actions), reference.log_prob(actions))
    torch.testing.assert_close(ours.entropy(), reference.entropy())
    samples = DiagonalGaussian(torch.zeros(20000, 3), log_std).sample()
    torch.testing.assert_close(samples.std(0), log_std.exp(), rtol=0.03, atol=0.0)


def test_the_squash_gradients_match_autograd():
    generator = torch.Generator().manual_seed(3)
    mean = torch.randn(64, 2, dtype=torch.float64, generator=generator).mul_(3).requires_grad_()
    log_std = torch.randn(64, 2, dtype=torch.float64, generator=generator).requires_grad_()
    noise = torch.randn(64, 2, dtype=torch.float64, generator=generator)
    grad_actions = torch.randn(64, 2, dtype=torch.float64, generator=generator)
    grad_log_prob = torch.randn(64, dtype=torch.float64, generator=generator)
    actions, log_prob = squashed_sample(mean, log_std, noise)
    torch.autograd.backward((actions, log_prob), (grad_actions, grad_log_prob))
    ours = squashed_sample_grads(grad_actions, grad_log_prob, actions.detach(), log_std, noise)
    # (autograd's chain through (u - mean) / std and softplus rounds differently: ~1e-12)
    torch.testing.assert_close(ours[0], mean.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours[1].detach(), log_std.grad, rtol=1e-10, atol=1e-12)
