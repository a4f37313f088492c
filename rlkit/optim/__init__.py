"""Optimizers and learning-rate schedules, built from config by name."""

from rlkit.optim.factory import (
    LRScheduleConfig,
    OptimizerConfig,
    build_lr_scheduler,
    build_optimizer,
    optimizer_class,
)

__all__ = [
    "LRScheduleConfig",
    "OptimizerConfig",
    "build_lr_scheduler",
    "build_optimizer",
    "optimizer_class",
]
