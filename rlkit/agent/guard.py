"""Divergence guard: a NaN or inf never reaches the weights, and a run that keeps diverging
goes back to its last good state with a smaller learning rate, then stops cleanly.

Notes 004 ("divergence symptoms and cures"): the loss turning NaN or exploding is the sign of
a step size too large for the curvature; the cure is to go back and take smaller steps. The
guard does exactly that, mechanically:

  1. a gradient update whose loss or gradient norm is not finite is skipped (zero_grad, no
     optimizer step) and counted;
  2. `rollback_after` skips in a row restore the last good snapshot of the networks and the
     optimizer, and multiply the learning rate by `lr_factor`;
  3. more than `max_rollbacks` rollbacks raise DivergenceError (the agent holds its last good
     state then, so the caller can still save it).

A snapshot is taken every `snapshot_interval` applied updates, and only when every parameter
is finite, so there is always a good state to return to.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from rlkit.base.config import Config, require
from rlkit.base.errors import UserError
from rlkit.io.checkpoint import all_finite


class DivergenceError(UserError, RuntimeError):
    """Training kept diverging after the allowed rollbacks."""


@dataclasses.dataclass
class DivergenceConfig(Config):
    rollback_after: int = 5
    """Non-finite updates in a row before rolling back to the last good state."""
    lr_factor: float = 0.5
    """Learning rate multiplier applied at each rollback."""
    max_rollbacks: int = 3
    """Rollbacks allowed in one run; one more stops training with an error."""
    snapshot_interval: int = 500
    """Applied gradient updates between two in-memory snapshots of the good state."""

    def validate(self) -> None:
        require(self.rollback_after >= 1, f"rollback_after must be >= 1, got {self.rollback_after}")
        require(
            math.isfinite(self.lr_factor) and 0 < self.lr_factor <= 1,
            f"lr_factor must be in (0, 1], got {self.lr_factor}",
        )
        require(self.max_rollbacks >= 0, f"max_rollbacks must be >= 0, got {self.max_rollbacks}")
        require(
            self.snapshot_interval >= 1,
            f"snapshot_interval must be >= 1, got {self.snapshot_interval}",
        )


def is_finite_update(loss: torch.Tensor | float, grad_norm: torch.Tensor | float) -> bool:
    """True when both the loss and the gradient norm are finite (tensors: one host-device
    sync; floats already read: none). Both are scalars and the norm is never negative, so
    their sum is finite exactly when both are."""
    if isinstance(loss, float) and isinstance(grad_norm, float):
        return math.isfinite(loss + grad_norm)
    return bool(torch.isfinite(torch.as_tensor(loss).detach() + grad_norm))


class DivergenceGuard:
    """Watches the updates of `modules` trained by `optimizer`; see the module docstring."""

    def __init__(
        self,
        config: DivergenceConfig,
        modules: Mapping[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.config = config
        self.modules = dict(modules)
        self.optimizer = optimizer
        self.skipped_updates = 0  # non-finite updates skipped in total
        self.consecutive = 0  # ... in a row, right now
        self.rollbacks = 0
        self.applied_since_snapshot = 0
        self._snapshot: dict[str, Any] | None = None
        self.snapshot()

    def parameters_finite(self) -> bool:
        return all_finite(p for module in self.modules.values() for p in module.parameters())

    def snapshot(self) -> bool:
        """Remember the current state as the good one (if it is finite)."""
        if not self.parameters_finite():
            return False
        self._snapshot = {
            "modules": {k: copy.deepcopy(m.state_dict()) for k, m in self.modules.items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }
        self.applied_since_snapshot = 0
        return True

    def check(self, loss: torch.Tensor | float, grad_norm: torch.Tensor | float) -> bool:
        """Call after backward, before optimizer.step(): True if the step may be applied.
        False means the gradients were dropped; it may also have rolled back (or raised)."""
        if is_finite_update(loss, grad_norm):
            self.consecutive = 0
            return True
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_updates += 1
        self.consecutive += 1
        if self.consecutive >= self.config.rollback_after:
            self.rollback()
        return False

    def step(self, loss: torch.Tensor | float, grad_norm: torch.Tensor | float) -> bool:
        """After backward: the optimizer step, unless the update is not finite (see `check`).
        True if it was applied."""
        if not self.check(loss, grad_norm):
            return False
        self.optimizer.step()
        self.applied()
        return True

    def applied(self) -> None:
        """Call after each applied optimizer step."""
        self.applied_since_snapshot += 1
        if self.applied_since_snapshot >= self.config.snapshot_interval:
            self.snapshot()

    def rollback(self) -> None:
        """Restore the last good state with the learning rate times lr_factor."""
        assert self._snapshot is not None  # taken at construction from finite initial weights
        self.rollbacks += 1
        self.consecutive = 0
        # The learning rates in force now (the schedule's position, earlier rollbacks), before
        # the snapshot's optimizer state brings back older ones. torch's schedulers are
        # chainable (each step scales the group's current lr), so scaling it here sticks.
        rates = [(g["lr"], g.get("initial_lr")) for g in self.optimizer.param_groups]
        for name, module in self.modules.items():
            module.load_state_dict(self._snapshot["modules"][name])
        self.optimizer.load_state_dict(copy.deepcopy(self._snapshot["optimizer"]))
        factor = self.config.lr_factor
        for group, (lr, initial_lr) in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = lr * factor
            if initial_lr is not None:
                group["initial_lr"] = initial_lr * factor
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.rollbacks > self.config.max_rollbacks:
            raise DivergenceError(
                f"training diverged: non-finite losses or gradients persisted through "
                f"{self.config.max_rollbacks} rollbacks (learning rate now {lrs[0]:.3g}); "
                f"lower optimizer.lr or check the environment's rewards"
            )

    def finite_outputs(self, forward: Callable[[], Any]) -> Any:
        """`forward()` (a policy's outputs for acting: a tensor or numpy array, or a tuple
        whose first item is the policy head), rolled back until the head is finite. An update
        with a finite loss and gradient can still leave weights whose outputs overflow (a
        learning rate far too large): no action can be sampled from those, and a NaN action
        would reach the env, which would then be blamed for the NaN it returns. Back to the
        last good weights at a smaller step, as for a non-finite update (DivergenceError after
        max_rollbacks)."""
        outputs = forward()
        while not _all_finite(outputs[0] if isinstance(outputs, tuple) else outputs):
            self.rollback()
            outputs = forward()
        return outputs

    def scalars(self) -> dict[str, float]:
        return {
            "guard/skipped_updates": self.skipped_updates,
            "guard/rollbacks": self.rollbacks,
        }

    def state_dict(self) -> dict[str, int]:
        return {
            "skipped_updates": self.skipped_updates,
            "consecutive": self.consecutive,
            "rollbacks": self.rollbacks,
            "applied_since_snapshot": self.applied_since_snapshot,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Counters back; the snapshot becomes the current (restored, finite) state."""
        self.snapshot()
        for key in ("skipped_updates", "consecutive", "rollbacks", "applied_since_snapshot"):
            setattr(self, key, int(state[key]))


def _all_finite(values: torch.Tensor | np.ndarray) -> bool:
    if isinstance(values, np.ndarray):
        return bool(np.isfinite(values).all())
    return bool(torch.isfinite(values).all())
