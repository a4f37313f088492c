"""rlkit's agents: `agents.DQN(env="CartPole-v1", seed=0).learn(50_000)`; `agents.load(path)`."""

from __future__ import annotations

from pathlib import Path

import envs  # noqa: F401  (registers rlkit's own environments)
from agents.a2c import A2C, A2CConfig
from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig
from agents.reinforce import Reinforce, ReinforceConfig
from rlkit.errors import AgentFileError
from rlkit.serialization import load_tensors

AGENTS: dict[str, type] = {"dqn": DQN, "ppo": PPO, "a2c": A2C, "reinforce": Reinforce}

__all__ = [
    "A2C",
    "AGENTS",
    "DQN",
    "PPO",
    "A2CConfig",
    "DQNConfig",
    "PPOConfig",
    "Reinforce",
    "ReinforceConfig",
    "agent_class",
    "load",
]


def agent_class(name: str) -> type:
    """Agent class by its config name (`dqn`), case-insensitive."""
    from rlkit.config import check_choice

    key = str(name).lower()
    check_choice("agent", key, list(AGENTS))
    return AGENTS[key]


def load(path: str | Path, device: str = "auto"):
    """Load an agent saved with `agent.save(path)`; the file is read without unpickling."""
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != "rlkit.agent":
        raise AgentFileError(f"{path} is an rlkit file but not a saved agent")
    name = str(metadata.get("agent", "")).lower()
    if name not in AGENTS:
        raise AgentFileError(f"{path} holds an agent of unknown type {metadata.get('agent')!r}")
    return AGENTS[name].from_saved(tensors, metadata, device)
