import pytest
import torch
import torch.nn.functional as F

from rlkit.math.losses import LOSSES, get_loss, huber_loss, l1_loss, mse_loss, pseudo_huber_loss


@pytest.fixture
def pair():
    torch.manual_seed(0)
    return torch.randn(64, dtype=torch.float64) * 3, torch.randn(64, dtype=torch.float64) * 3


def test_mse_and_l1_match_torch(pair):
    pred, target = pair
    assert torch.allclose(mse_loss(pred, target), F.mse_loss(pred, target))
    assert torch.allclose(l1_loss(pred, target), F.l1_loss(pred, target))
    # Written out, unweighted (torch's fused kernel) and with unit weights (our formula).
    ones = torch.ones_like(pred)
    for loss in (mse_loss, l1_loss):
        assert torch.allclose(loss(pred, target), loss(pred, target, ones))
    assert torch.allclose(mse_loss(pred, target), ((pred - target) ** 2).mean())
    assert torch.allclose(l1_loss(pred, target), (pred - target).abs().mean())


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_matches_torch(pair, delta):
    pred, target = pair
    assert torch.allclose(
        huber_loss(pred, target, delta=delta), F.huber_loss(pred, target, delta=delta)
    )
    assert torch.allclose(get_loss("smooth_l1")(pred, target), F.smooth_l1_loss(pred, target))
    # The notes' piecewise definition, written out: both halves are exercised (|e| up to ~10).
    error = (pred - target).abs()
    assert (error < delta).any() and (error > delta).any()
    piecewise = torch.where(error <= delta, 0.5 * error**2, delta * (error - 0.5 * delta))
    assert torch.allclose(huber_loss(pred, target, delta=delta), piecewise.mean())
    weighted = huber_loss(pred, target, torch.ones_like(pred), delta=delta)
    assert torch.allclose(weighted, piecewise.mean())


def test_pseudo_huber_closed_form_and_limits():
    error = torch.tensor([0.0, 1e-3, 1.0, 100.0], dtype=torch.float64)
    zero = torch.zeros_like(error)
    per_sample = torch.stack(
        [pseudo_huber_loss(e[None], z[None]) for e, z in zip(error, zero, strict=True)]
    )
    assert torch.allclose(per_sample, torch.sqrt(1 + error**2) - 1)
    # ~ e^2 / 2 near zero and ~ |e| - 1 far away: quadratic inside, linear outside.
    assert per_sample[1] == pytest.approx(0.5e-6, rel=1e-3)
    assert per_sample[3] == pytest.approx(99.0, rel=1e-3)


def test_weights_scale_each_sample(pair):
    pred, target = pair
    weights = torch.zeros(64, dtype=torch.float64)
    weights[0] = 64.0
    for name, loss in LOSSES.items():
        only_first = loss(pred[:1], target[:1])
        assert torch.allclose(loss(pred, target, weights), only_first), name


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'hubber'"):
        get_loss("hubber")


def test_losses_have_gradients_pointing_to_target():
    pred = torch.tensor([0.0, 5.0], requires_grad=True)
    target = torch.tensor([1.0, 1.0])
    for name, loss in LOSSES.items():
        pred.grad = None
        loss(pred, target).backward()
        assert pred.grad[0] < 0 < pred.grad[1], name
