"""What a Stable-Baselines3 user types first, answered in one line with rlkit's way: the policy
argument (`SAC("MlpPolicy", env)`), an env object instead of an id, `learn`'s keyword names and
callback objects."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlkit.base.errors import ConfigError

# Stable-Baselines3's first argument, the policy class or its name (`SAC("MlpPolicy", env)`).
SB3_POLICIES = frozenset({"MlpPolicy", "CnnPolicy", "MultiInputPolicy"})
# Stable-Baselines3's keyword arguments of `learn`, with rlkit's way to say the same.
SB3_LEARN_ARGUMENTS = {
    "total_timesteps": "rlkit's: total_steps (or the first argument)",
    "progress_bar": "rlkit's: progress",
    "tb_log_name": "rlkit's: run_dir (the run folder holds its TensorBoard files)",
    "log_interval": "rlkit's log_interval is a config key (agents.SAC(env=..., log_interval=...))",
    "reset_num_timesteps": "rlkit's steps always go on from the agent's global_step; "
    "resume=True continues a restored checkpoint's run to its end",
}
# What gym.make / gym.make_vec record in an env's spec beside the env's own keyword arguments.
_MAKE_ONLY_KWARGS = frozenset(
    {"render_mode", "num_envs", "vectorization_mode", "vector_kwargs", "wrappers"}
)


def check_agent_arguments(agent: str, env: Any, config: Any) -> None:
    """One-line errors for Stable-Baselines3's way of making an agent, `SAC("MlpPolicy", env)`
    with an env id or a gymnasium Env: rlkit takes the env's id first and makes its own seeded
    copies of the env (training, validation, test), so it needs the id, not an env object."""
    if isinstance(env, str) and env in SB3_POLICIES:
        given = config if isinstance(config, str | gym.Env | gym.vector.VectorEnv) else None
        raise ConfigError(
            f"agents.{agent} takes the env first, as agents.{agent}("
            f"{_env_arguments(given) if given is not None else 'env=...'}): {env!r} is "
            "Stable-Baselines3's policy argument (rlkit's agents build their own MLPs: "
            "network.hidden_sizes, network.activation)"
        )
    if isinstance(env, gym.Env | gym.vector.VectorEnv):
        raise ConfigError(
            f"agents.{agent} takes an env id, not a {type(env).__name__} object (rlkit makes "
            f"its own seeded copies of the env for training and evaluation): "
            f"{_env_arguments(env)}"
        )


def _env_arguments(env: str | gym.Env | gym.vector.VectorEnv) -> str:
    """rlkit's arguments for an env id or the env made from one: env=, n_envs=, env_kwargs=
    (read off the spec that gym.make / gym.make_vec record)."""
    if isinstance(env, str):
        return f"env={env!r}"
    spec = env.spec
    if spec is None:
        return "an env id (register the env with gymnasium: docs/guide/environments.md)"
    kwargs = {k: v for k, v in spec.kwargs.items() if k not in _MAKE_ONLY_KWARGS}
    registered = gym.registry.get(spec.id)
    limit = kwargs.pop("max_episode_steps", spec.max_episode_steps)  # (make_vec's place)
    if registered is None or limit != registered.max_episode_steps:
        kwargs["max_episode_steps"] = limit
    copies = spec.kwargs.get("num_envs")
    return (
        f"env={spec.id!r}"
        + (f", n_envs={copies}" if copies else "")
        + (f", env_kwargs={kwargs!r}" if kwargs else "")
    )


def check_callback(callback: Any) -> None:
    """Before `learn` steps the env: a callback that is a function of the agent. (Found only
    at its first call, a wrong one cost the run up to there.)"""
    if callback is None or callable(callback):
        return
    kind = type(callback)
    if kind.__module__.startswith("stable_baselines3"):
        raise ConfigError(
            f"callback: {kind.__name__} is a Stable-Baselines3 callback object; rlkit's is a "
            "function of the agent, callback(agent) -> False to stop, every callback_interval "
            "steps (evaluation, the best agent, checkpoints and stop_at_return are built in)"
        )
    raise ConfigError(
        f"callback must be a function of the agent (callback(agent) -> False to stop), got "
        f"{kind.__name__} {callback!r}"
    )


def check_learn_arguments(unknown: dict[str, Any]) -> None:
    """`learn(**unknown)`: Stable-Baselines3's names get rlkit's, any other Python's message."""
    if not unknown:
        return
    name = next(iter(unknown))
    instead = SB3_LEARN_ARGUMENTS.get(name)
    if instead is None:
        raise TypeError(f"learn() got an unexpected keyword argument {name!r}")
    raise TypeError(f"learn() has no {name!r} (Stable-Baselines3's name); {instead}")
