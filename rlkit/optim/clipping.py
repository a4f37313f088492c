"""Gradient clipping on a list of gradients whose global norm the update has already read."""

from __future__ import annotations

import math

import torch


def clip_gradients(grads: list[torch.Tensor], grad_norm: float, max_norm: float | None) -> None:
    """torch.nn.utils.clip_grad_norm_'s scaling, max_norm / (norm + 1e-6) where that is below 1,
    with the norm already read on the host (the update's one read). A non-finite norm is left
    alone: the divergence guard drops that update."""
    if max_norm is None or not math.isfinite(grad_norm):
        return
    factor = max_norm / (grad_norm + 1e-6)
    if factor < 1.0:
        torch._foreach_mul_(grads, factor)
