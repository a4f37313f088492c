"""What every agent shares: `Agent` (acting and the public API), the run loop, evaluation,
agent files and checkpoints, the divergence guard, and the replay and rollout machinery that
the agents in agents/ compose."""

from rlkit.agent.config import AgentConfig
from rlkit.agent.core import Agent
from rlkit.agent.files import BEST_AGENT_FILE, FINAL_AGENT_FILE

__all__ = ["BEST_AGENT_FILE", "FINAL_AGENT_FILE", "Agent", "AgentConfig"]
