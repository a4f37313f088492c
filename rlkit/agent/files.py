"""An agent's files: the saved agent (networks, normalization statistics and config in one
safetensors file) and the training checkpoint (everything `learn(resume=True)` needs to go on
exactly: optimizer, schedule, buffers, counters, every random state, the environments' state).

Functions of the agent, which `Agent.save`, `Agent.load`, `Agent.save_checkpoint` and
`Agent.restore_checkpoint` call; the file formats are rlkit.io's (no pickle anywhere).
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from envs.state import get_state as get_env_state
from envs.state import set_state as set_env_state
from rlkit.base.errors import AgentFileError, EnvError
from rlkit.io.checkpoint import (
    CHECKPOINT_FORMAT,
    all_finite,
    flatten_state,
    unflatten_state,
    write_checkpoint,
)
from rlkit.io.serialization import load_tensors, save_tensors

AGENT_FILE_FORMAT = "rlkit.agent"
FINAL_AGENT_FILE = "agent.safetensors"
BEST_AGENT_FILE = "best_agent.safetensors"


class DeviceChangeWarning(RuntimeWarning):
    """A checkpoint written on one device type resumes on another."""


# ---------------------------------------------------------------------- the agent's tensors


def saved_modules(agent: Any) -> dict[str, torch.nn.Module]:
    """`agent.networks`, and the normalization statistics where the agent has them."""
    if agent.normalizer is None:
        return agent.networks
    return {**agent.networks, "normalizer": agent.normalizer}


def state_tensors(agent: Any) -> dict[str, torch.Tensor]:
    """Named tensors that make up the agent: the weights of its networks (and the
    normalization statistics)."""
    return {
        f"{name}.{key}": value
        for name, network in saved_modules(agent).items()
        for key, value in network.state_dict().items()
    }


def load_state_tensors(agent: Any, tensors: dict[str, torch.Tensor]) -> None:
    for name, network in saved_modules(agent).items():
        state = prefixed(tensors, f"{name}.")
        mismatch = describe_state_mismatch(network.state_dict(), state)
        if mismatch:
            raise AgentFileError(
                f"the file's {name} does not fit this rlkit's {type(agent).__name__} "
                f"({mismatch}); was it saved by another version of rlkit?"
            )
        network.load_state_dict(state)


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `tensors` under `prefix`, with the prefix removed (a module's state)."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def describe_state_mismatch(
    expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]
) -> str:
    """'' when `saved` has exactly the tensors (names and shapes) of `expected`, else what
    differs, in a few words."""
    parts = []
    for label, keys in (
        ("missing", sorted(expected.keys() - saved.keys())),
        ("unexpected", sorted(saved.keys() - expected.keys())),
        ("other shape", sorted(k for k in expected.keys() & saved.keys()
                                if tuple(expected[k].shape) != tuple(saved[k].shape))),
    ):  # fmt: skip
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


# ---------------------------------------------------------------------- saved agents


def save_agent(agent: Any, path: str | Path, evaluation: Mapping[str, Any] | None) -> Path:
    """One safetensors file: the agent's tensors, its config and counters as JSON metadata."""
    path = Path(path)
    metadata = {
        "format": AGENT_FILE_FORMAT,
        "format_version": 1,
        "agent": type(agent).__name__,
        "config": agent.config.to_dict(),
        "global_step": agent.global_step,
        "n_updates": agent.n_updates,
        "obs_shape": list(agent.obs_shape),
        "n_actions": agent.n_actions,
    }
    if evaluation is not None:
        metadata["evaluation"] = dict(evaluation)
    save_tensors(path, state_tensors(agent), metadata)
    return path


def agent_from_saved(
    cls: type, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], device: str
) -> Any:
    """An agent of class `cls` rebuilt from a saved agent file's contents, on `device`."""
    config = dict(metadata["config"])
    config["device"] = device
    agent = cls(config=config)
    if list(agent.obs_shape) != metadata["obs_shape"] or agent.n_actions != metadata["n_actions"]:
        raise EnvError("the saved agent's observation or action space does not match its env")
    load_state_tensors(agent, {k: v.to(agent.device) for k, v in tensors.items()})
    agent.global_step = int(metadata["global_step"])
    agent.n_updates = int(metadata["n_updates"])
    agent.saved_evaluation = metadata.get("evaluation")
    return agent


def load_agent(cls: type, path: str | Path, device: str) -> Any:
    tensors, metadata = load_tensors(path)
    return agent_from_saved(cls, tensors, metadata, device)


# ---------------------------------------------------------------------- training checkpoints


def checkpoint_state(agent: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON state) of everything needed to continue training exactly: networks,
    optimizer, schedule, buffers, counters, every random number generator and the
    environments' state."""
    tensors = {f"model.{k}": v.detach().to("cpu").clone() for k, v in state_tensors(agent).items()}
    rng = {
        "numpy": agent.rng.bit_generator.state,
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    env_tensors, env_state = get_env_state(agent.env)
    tensors.update({f"env.{k}": v for k, v in env_tensors.items()})
    scheduler = agent.lr_scheduler.state_dict() if agent.lr_scheduler is not None else None
    state = {
        "format": CHECKPOINT_FORMAT,
        "agent": type(agent).__name__,
        "device_type": agent.device.type,  # what the device-specific random states are for
        "config": agent.config.to_dict(),
        "counters": {
            "global_step": agent.global_step,
            "n_updates": agent.n_updates,
            "n_episodes": agent.n_episodes,
            "train_call_step": agent.train_call_step,
        },
        "run": agent._run,
        "env": env_state,
        "obs": flatten_state(agent._obs, "obs", tensors),
        "optimizer": flatten_state(agent.optimizer.state_dict(), "optimizer", tensors),
        "lr_scheduler": flatten_state(scheduler, "lr_scheduler", tensors),
        "rng": flatten_state(rng, "rng", tensors),
        "extra": flatten_state(agent._extra_state(), "extra", tensors),
        "guard": agent.guard.state_dict() if agent.guard is not None else None,
        "validation": agent.validation.state_dict(),
    }
    return tensors, state


def save_checkpoint(agent: Any, run_dir: str | Path, keep_last: int) -> Path | None:
    """Write a checkpoint into run_dir/checkpoints/ (atomic, checksummed, newest `keep_last`
    kept). Refuses to write non-finite weights or optimizer state: a checkpoint is a state
    worth returning to. Returns the manifest path, or None if refused."""
    tensors, state = checkpoint_state(agent)
    if not all_finite(tensors.values()):
        return None
    return write_checkpoint(run_dir, agent.global_step, tensors, state, keep_last)


def restore_checkpoint(agent: Any, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Put a checkpoint's contents back into an agent of the checkpoint's class and config."""
    if state.get("agent") != type(agent).__name__:
        raise AgentFileError(
            f"the checkpoint is of a {state.get('agent')} agent, not {type(agent).__name__}"
        )
    load_state_tensors(
        agent, {k: v.to(agent.device) for k, v in prefixed(tensors, "model.").items()}
    )
    counters = state["counters"]
    agent.global_step = counters["global_step"]
    agent.n_updates = counters["n_updates"]
    agent.n_episodes = counters["n_episodes"]
    agent.train_call_step = counters.get("train_call_step", 0)  # (older checkpoints: unused)
    agent._run = state["run"]
    set_env_state(agent.env, prefixed(tensors, "env."), state["env"])
    agent._obs = unflatten_state(state["obs"], tensors)
    agent.optimizer.load_state_dict(unflatten_state(state["optimizer"], tensors))
    agent._scheduler_state = unflatten_state(state["lr_scheduler"], tensors)
    rng = unflatten_state(state["rng"], tensors)
    agent.rng.bit_generator.state = rng["numpy"]
    random.setstate(_as_tuple(rng["python"]))
    torch.set_rng_state(rng["torch"])
    written_on = state.get("device_type", agent.device.type)
    if written_on != agent.device.type:
        warnings.warn(
            f"the checkpoint was written on {written_on} and resumes on "
            f"{agent.device.type}: random draws made on the device (replay sampling, "
            "minibatch order) are re-seeded from their saved state, so the run goes on "
            "deterministically but exactly as the uninterrupted one only on the same device "
            "type",
            DeviceChangeWarning,
            stacklevel=3,
        )
    if torch.cuda.is_available():
        if "cuda" in rng:
            for index, cuda_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, index)
        else:  # written without CUDA: derive CUDA's generators from the saved CPU state
            torch.cuda.manual_seed_all(seed_from_state(rng["torch"]))
    agent._restore_extra_state(unflatten_state(state["extra"], tensors))
    if agent.guard is not None and state.get("guard") is not None:
        agent.guard.load_state_dict(state["guard"])
    agent.validation.load_state_dict(state.get("validation") or {})


def agent_from_checkpoint_state(
    cls: type, tensors: dict[str, torch.Tensor], state: dict[str, Any], device: str | None
) -> Any:
    """An agent of class `cls` rebuilt from a checkpoint's contents; on the run's own device
    setting unless `device` is given."""
    config = dict(state["config"])
    if device is not None:
        config["device"] = device
    agent = cls(config=config)
    restore_checkpoint(agent, tensors, state)
    return agent


# ---------------------------------------------------------------------- random states


def seed_from_state(state: torch.Tensor) -> int:
    """A 63-bit seed derived from a generator's saved state: re-seeding a generator of another
    device type from it keeps a resumed run deterministic."""
    digest = hashlib.sha256(state.detach().cpu().contiguous().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """A device generator's state, under its device type (a CUDA generator's state does not
    fit a CPU generator, nor the other way round)."""
    return {"device_type": generator.device.type, "state": generator.get_state()}


def restore_generator(generator: torch.Generator, saved: Any) -> None:
    """Put a state from `generator_state` back; one saved on another device type re-seeds the
    generator from it instead (deterministic, see DeviceChangeWarning)."""
    if isinstance(saved, torch.Tensor):  # older checkpoints: the bare state
        # A CPU (Mersenne Twister) state is 5,056 bytes, a CUDA (Philox) one a few dozen.
        saved = {"device_type": "cpu" if saved.numel() > 256 else "cuda", "state": saved}
    if saved["device_type"] == generator.device.type:
        generator.set_state(saved["state"])
    else:
        generator.manual_seed(seed_from_state(saved["state"]))


def _as_tuple(value: Any) -> Any:
    """Python's random state is nested tuples; JSON gives lists back."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
