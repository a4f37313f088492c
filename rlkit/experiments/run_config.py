"""A run's config file: the run settings (`RunConfig`: which agent, how many steps, checkpoints,
threads) beside the agent's own keys, in one flat YAML mapping; the file `rlkit train`,
`rlkit train --seeds` and `rlkit tune` read, and config.yaml in every run folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlkit.base.config import Config, apply_overrides, config_from_dict, load_yaml, require


@dataclasses.dataclass
class RunConfig(Config):
    """Settings of a CLI run; every other key in the YAML file configures the agent."""

    agent: str = "dqn"
    """Which agent to train (dqn)."""
    total_steps: int = 50_000
    """Environment steps to train for."""
    checkpoint_interval: int = 10_000
    """Environment steps between training checkpoints in the run folder (0: none)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    torch_threads: int = 0
    """Threads of torch and of numpy's BLAS for the run (0: `rlkit train` measures which count
    trains this config fastest on the machine, cached per CPU, torch and config, and records
    it here in the run folder)."""

    def validate(self) -> None:
        require(self.total_steps >= 1, f"total_steps must be >= 1, got {self.total_steps}")
        require(
            self.checkpoint_interval >= 0,
            f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}",
        )
        require(
            self.keep_checkpoints >= 1,
            f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
        )
        require(self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}")


RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def load_run_config(
    path: str | Path, overrides: Sequence[str] = (), **flags: Any
) -> tuple[RunConfig, Any]:
    """Read a YAML config, apply --set overrides and flags; return (run settings, agent config)."""
    run, data = read_run_settings(path, overrides, **flags)
    import agents  # (torch: 2 s) once the file, its YAML and the run's settings have passed

    agent_cls = agents.agent_class(run.agent)
    agent_config = config_from_dict(agent_cls.Config, data, also_known=RUN_KEYS)
    return run, agent_config


def read_run_settings(
    path: str | Path, overrides: Sequence[str] = (), **flags: Any
) -> tuple[RunConfig, dict[str, Any]]:
    """The first half of load_run_config, without loading torch: (run settings, the agent's
    keys, not yet checked)."""
    data = apply_overrides(load_yaml(path), overrides)
    for key, value in flags.items():
        if value is not None:
            data[key] = value
    return split_run_settings(data)


def split_run_settings(data: Mapping[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """Config data -> (run settings, the agent's keys, not yet checked)."""
    data = dict(data)
    run_data = {key: data.pop(key) for key in RUN_KEYS if key in data}
    data.pop("search", None)  # what `rlkit tune` varies (experiments.search); not training
    return config_from_dict(RunConfig, run_data), data
