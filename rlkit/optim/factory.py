"""Optimizer and lr-schedule configs, and the factories that turn them into torch objects.

`optimizer: {name: adam, lr: 1e-3, eps: 1e-8}`: `name` picks the class, `lr` is required, any
other key is passed to the constructor and checked against its signature when the config is
built, so a misspelled option fails before training starts. Names prefixed `torch.` select
torch.optim's implementation for comparison.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from rlkit.base.config import (
    Config,
    ConfigError,
    check_choice,
    check_positive,
    coerce,
    require,
    unknown_key_message,
)
from rlkit.optim import optimizers

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": optimizers.SGD,
    "adagrad": optimizers.Adagrad,
    "rmsprop": optimizers.RMSprop,
    "adam": optimizers.Adam,
    "adamw": optimizers.AdamW,
    "nadam": optimizers.NAdam,
    # torch.optim's implementations, for comparison.
    "torch.sgd": torch.optim.SGD,
    "torch.adagrad": torch.optim.Adagrad,
    "torch.rmsprop": torch.optim.RMSprop,
    "torch.adam": torch.optim.Adam,
    "torch.adamw": torch.optim.AdamW,
    "torch.nadam": torch.optim.NAdam,
}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    check_choice("optimizer.name", name, list(OPTIMIZERS))
    return OPTIMIZERS[name]


def _option_defaults(cls: type[torch.optim.Optimizer]) -> dict[str, Any]:
    signature = inspect.signature(cls.__init__)
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if name not in ("self", "params", "lr")
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }


def _coerce_option(name: str, value: Any, default: Any) -> Any:
    where = f"optimizer.{name}"
    if isinstance(default, bool):
        return coerce(bool, value, where)
    if isinstance(default, int) and not isinstance(value, float):
        return coerce(int, value, where)
    if isinstance(default, float | int):
        return coerce(float, value, where)
    if isinstance(default, tuple):
        return tuple(coerce(list[float], value, where))
    return value  # None defaults (foreach, fused, ...) take the value as given


@dataclasses.dataclass
class OptimizerConfig(Config):
    name: str = "adam"
    """Optimizer: sgd, adagrad, rmsprop, adam, adamw, nadam (torch.<name> for torch's own)."""
    lr: float = 1e-3
    """Initial learning rate."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Other constructor arguments (betas, eps, weight_decay, momentum, ...), given inline."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "optimizer") -> OptimizerConfig:
        data = dict(data)
        name = coerce(str, data.pop("name", cls.name), f"{where}.name")
        lr = coerce(float, data.pop("lr", cls.lr), f"{where}.lr")
        options = data.pop("options", {})
        options = {**coerce(dict, options, f"{where}.options"), **data}
        return cls(name=name, lr=lr, options=options)

    def validate(self) -> None:
        cls = optimizer_class(self.name)
        check_positive("optimizer.lr", self.lr)
        defaults = _option_defaults(cls)
        for key, value in list(self.options.items()):
            if key not in defaults:
                raise ConfigError(unknown_key_message(key, ["name", "lr", *defaults], "optimizer"))
            self.options[key] = _coerce_option(key, value, defaults[key])
        # Let the optimizer's own constructor check the ranges (betas, eps, momentum, ...).
        try:
            cls([torch.zeros(1, requires_grad=True)], lr=self.lr, **self.options)
        except (ValueError, TypeError, RuntimeError) as error:
            raise ConfigError(f"optimizer {self.name}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lr": self.lr, **self.options}


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimizerConfig):
    return optimizer_class(config.name)(params, lr=config.lr, **config.options)


LR_SCHEDULES = ("constant", "linear", "step")


@dataclasses.dataclass
class LRScheduleConfig(Config):
    name: str = "constant"
    """constant, linear (lr -> lr * end_factor over the run) or step (x factor per step_size)."""
    end_factor: float = 0.0
    """linear: the learning rate at the end of training, as a fraction of the initial one."""
    step_size: int = 10_000
    """step: gradient updates between two decays."""
    factor: float = 0.5
    """step: multiplier applied at each decay."""

    def validate(self) -> None:
        check_choice("lr_schedule.name", self.name, LR_SCHEDULES)
        require(
            0.0 <= self.end_factor <= 1.0,
            f"lr_schedule.end_factor must be in [0, 1], got {self.end_factor}",
        )
        require(self.step_size >= 1, f"lr_schedule.step_size must be >= 1, got {self.step_size}")
        require(
            math.isfinite(self.factor) and 0.0 < self.factor <= 1.0,
            f"lr_schedule.factor must be in (0, 1], got {self.factor}",
        )


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, config: LRScheduleConfig, total_updates: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A torch lr scheduler stepped once per gradient update."""
    if config.name == "linear":
        return torch.optim.lr_scheduler.LinearLR(
            optimizer,
            start_factor=1.0,
            end_factor=config.end_factor,
            total_iters=max(total_updates, 1),
        )
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, gamma=config.factor)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
