"""Regression losses for TD learning, selectable by name (notes 000: L1, L2, (pseudo-)Huber).

All take `prediction` and `target` of the same shape and an optional per-sample `weights`
(importance weights of prioritized replay); they return the weighted mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _reduce(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).mean()


# torch's loss kernels called directly with reduction "mean": the same kernels as F.mse_loss and
# F.huber_loss without their Python argument handling (~6 us a call, in an op-bound DQN update).
_MEAN = 1


def mse_loss(prediction, target, weights=None):
    """L2: mean of (y - f(x))^2. Sensitive to outliers (large TD errors dominate)."""
    if weights is None:  # one fused kernel instead of three (the DQN update is op-bound)
        return torch.ops.aten.mse_loss(prediction, target, _MEAN)
    return _reduce((prediction - target).square(), weights)


def l1_loss(prediction, target, weights=None):
    """L1: mean of abs(y - f(x)). Robust, but its gradient does not shrink near the optimum."""
    if weights is None:
        return F.l1_loss(prediction, target)
    return _reduce((prediction - target).abs(), weights)


def huber_loss(prediction, target, weights=None, delta: float = 1.0):
    """Huber / smooth-L1: quadratic within `delta`, linear outside (DQN's standard loss).

    0.5 e^2 for abs(e) <= delta, delta (abs(e) - 0.5 delta) otherwise; equals torch's huber_loss.
    """
    if weights is None:
        return torch.ops.aten.huber_loss(prediction, target, _MEAN, delta)
    error = (prediction - target).abs()
    quadratic = torch.clamp(error, max=delta)
    linear = error - quadratic
    return _reduce(0.5 * quadratic.square() + delta * linear, weights)


def pseudo_huber_loss(prediction, target, weights=None, delta: float = 1.0):
    """Pseudo-Huber (Charbonnier): delta^2 (sqrt(1 + (e/delta)^2) - 1), smooth everywhere."""
    error = prediction - target
    return _reduce(delta**2 * (torch.sqrt(1.0 + (error / delta).square()) - 1.0), weights)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": mse_loss,
    "l2": mse_loss,
    "l1": l1_loss,
    "huber": huber_loss,
    "smooth_l1": huber_loss,
    "pseudo_huber": pseudo_huber_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
