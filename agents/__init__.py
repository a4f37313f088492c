"""rlkit's agents: `agents.DQN(env="CartPole-v1", seed=0).learn(50_000)`; `agents.load(path)`."""

from __future__ import annotations

from pathlib import Path

import envs  # noqa: F401  (registers rlkit's own environments)
from agents.a2c import A2C, A2CConfig
from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig
from agents.reinforce import Reinforce, ReinforceConfig
from agents.sac import SAC, SACConfig
from agents.td3 import TD3, TD3Config
from rlkit.base.errors import AgentFileError, UserError
from rlkit.io.checkpoint import CHECKPOINT_FORMAT, checkpoint_dir
from rlkit.io.serialization import load_tensors

AGENTS: dict[str, type] = {
    "dqn": DQN, "ppo": PPO, "a2c": A2C, "reinforce": Reinforce, "sac": SAC, "td3": TD3,
}  # fmt: skip

__all__ = [
    "A2C",
    "AGENTS",
    "DQN",
    "PPO",
    "SAC",
    "TD3",
    "A2CConfig",
    "DQNConfig",
    "PPOConfig",
    "Reinforce",
    "ReinforceConfig",
    "SACConfig",
    "TD3Config",
    "agent_class",
    "from_checkpoint",
    "load",
]


def agent_class(name: str) -> type:
    """Agent class by its config name (`dqn`), case-insensitive."""
    from rlkit.base.config import check_choice

    key = str(name).lower()
    check_choice("agent", key, list(AGENTS))
    return AGENTS[key]


def load(path: str | Path, device: str = "auto"):
    """Load an agent saved with `agent.save(path)`: a run's final `agent.safetensors` or its
    `best_agent.safetensors` (whose `saved_evaluation` holds the validation score it was kept
    for). The file is read without unpickling."""
    tensors, metadata = load_tensors(path)
    if metadata.get("format") == CHECKPOINT_FORMAT:
        run = Path(path).parent.parent
        if checkpoint_dir(run) != Path(path).parent:  # (copied out of its run folder)
            raise AgentFileError(
                f"{path} is a training checkpoint, not a saved agent: load the run folder it "
                "came from with agents.from_checkpoint(RUN) (or `rlkit eval RUN`)"
            )
        raise AgentFileError(
            f"{path} is a training checkpoint, not a saved agent: load its run folder, "
            f"agents.from_checkpoint({str(run)!r}) (or `rlkit eval {run}`: the newer of its "
            "agent.safetensors and its newest good checkpoint)"
        )
    if metadata.get("format") != "rlkit.agent":
        raise AgentFileError(f"{path} is an rlkit file but not a saved agent")
    name = str(metadata.get("agent", "")).lower()
    if name not in AGENTS:
        raise AgentFileError(f"{path} holds an agent of unknown type {metadata.get('agent')!r}")
    return AGENTS[name].from_saved(tensors, metadata, device)


def from_checkpoint(run_dir: str | Path, device: str | None = None):
    """The agent of the newest intact checkpoint in `run_dir`, with its whole training state
    (optimizer, buffer, random states, environments): `.learn(resume=True)` continues the run
    exactly. `device` overrides the run's own device setting. Damaged checkpoints are skipped
    (listed in `agent.skipped_checkpoints`)."""
    from rlkit.io.checkpoint import newest_good_checkpoint, read_checkpoint

    info, skipped = newest_good_checkpoint(run_dir)
    if info is None:
        detail = f" ({'; '.join(skipped)})" if skipped else ""
        raise AgentFileError(f"no usable checkpoint in {run_dir}{detail}")
    tensors, state = read_checkpoint(info)
    name = str(state.get("agent", "")).lower()
    if name not in AGENTS:
        raise AgentFileError(f"{info.data} holds an agent of unknown type {state.get('agent')!r}")
    try:
        agent = AGENTS[name].from_checkpoint_state(tensors, state, device)
    except UserError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
        # The file passed its checksum, so its maker wrote it this way: wrong or hostile.
        raise AgentFileError(
            f"checkpoint {info.data} does not fit a {name} agent: {type(error).__name__}: {error}"
        ) from None
    agent.skipped_checkpoints = skipped
    agent.checkpoint_file = info.data
    return agent
