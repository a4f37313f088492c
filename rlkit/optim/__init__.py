"""rlkit's optimizers (torch.optim.Optimizer subclasses on flat buffers), and the factories that
build an optimizer and a learning-rate schedule from config by name."""

from rlkit.optim.factory import (
    OPTIMIZERS,
    LRScheduleConfig,
    OptimizerConfig,
    build_lr_scheduler,
    build_optimizer,
    optimizer_class,
)
from rlkit.optim.optimizers import SGD, Adagrad, Adam, AdamW, NAdam, RMSprop

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "LRScheduleConfig",
    "NAdam",
    "OptimizerConfig",
    "RMSprop",
    "build_lr_scheduler",
    "build_optimizer",
    "optimizer_class",
]
