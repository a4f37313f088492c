"""Environment factories: `envs.make(env_id, n_envs=..., seed=...)` -> a gymnasium vector env.

Vector envs use gymnasium's SAME_STEP autoreset on purpose. Under the default NEXT_STEP mode
the step after an episode ends is a reset, not a transition; an off-policy agent that stores it
as one teaches its Q-network a jump from the last state of one episode to the first state of
the next. With SAME_STEP the step that ends an episode returns the next episode's first
observation and puts the real last observation in `info["final_obs"]`, which `real_next_obs`
puts back, so every stored transition is a real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, VectorEnv, VectorWrapper

from envs import atari as _atari
from envs import masked as _masked
from envs import minatar as _minatar
from envs.vector import RecordEpisodeStatistics, SyncVectorEnv
from rlkit.base.errors import EnvError

__all__ = ["CheckFinite", "check_env_id", "env_spec", "make", "make_env", "real_next_obs"]

# rlkit's own environments, registered under the rlkit/ namespace on `import envs`.
_REGISTRATIONS = {
    "rlkit/TicTacToe-v0": ("envs.games:TicTacToeEnv", {"opponent": "random"}),
    "rlkit/TicTacToeLookahead-v0": ("envs.games:TicTacToeEnv", {"opponent": "lookahead"}),
    "rlkit/Catch-v0": ("envs.games:CatchEnv", {}),
    "rlkit/CatchPixels-v0": ("envs.games:CatchEnv", {"pixels": True}),
    "rlkit/CatchPixelsContinuous-v0": ("envs.games:CatchEnv", {"pixels": True, "continuous": True}),
    "rlkit/CatchPixelStack-v0": ("envs.games:catch_frame_stack", {}),
    "rlkit/CatchDict-v0": ("envs.games:catch_dict", {}),
}
for _env_id, (_entry_point, _kwargs) in _REGISTRATIONS.items():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point, kwargs=_kwargs)
# MinAtar/<Game>-v0 and -v1 (their engine, the `minatar` package, is imported on first make).
_minatar.register()
# The Zoo's velocity-masked tasks (CartPoleNoVel-v1, ...), for recurrent policies.
_masked.register()


def check_env_id(env_id: str) -> None:
    """Raise EnvError (with gymnasium's 'Did you mean' hint) unless `env_id` is registered."""
    env_spec(env_id)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """gymnasium's spec of `env_id`, or EnvError. An id "module:Name-v0" (gymnasium's form for
    an env that module registers on import, as `gym.make` takes it) imports the module first."""
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(
            f"env must be a gymnasium environment id such as 'CartPole-v1', got {env_id!r}"
        )
    module, _, name = env_id.rpartition(":")
    if module:
        import_env_module(module, env_id)
    elif _atari.is_atari(env_id):
        _atari.register(env_id)
    try:
        return gym.spec(name)
    except gym.error.Error as error:
        raise EnvError(f"unknown environment {env_id!r}: {error}") from None


def import_env_module(module: str, env_id: str) -> None:
    """Import the module of an id "module:Name-v0", from the current folder too: `rlkit` runs
    as a script, whose folder (not the one it is run from) Python searches first, and a user's
    envs.py next to the config is what `python -m` and `python train.py` would find."""
    try:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())
            importlib.import_module(module)
    except ModuleNotFoundError as error:
        where = "the current folder and PYTHONPATH"
        raise EnvError(f"env {env_id!r}: no module named {error.name!r} in {where}") from None
    except Exception as error:  # the user's module failed: where, in one line
        frame = traceback.extract_tb(error.__traceback__)[-1]
        place = f"{os.path.relpath(frame.filename)}, line {frame.lineno}"
        raise EnvError(
            f"env {env_id!r}: importing {module!r} failed at {place}: "
            f"{type(error).__name__}: {error}"
        ) from None


def env_module_folder(env_id: str) -> str | None:
    """The folder on sys.path that the module of an id "module:Name-v0" imports from (None for
    a plain id): what processes started elsewhere (Ray's workers) need on their PYTHONPATH."""
    module, _, _ = env_id.rpartition(":") if isinstance(env_id, str) else ("", "", "")
    if not module:
        return None
    import_env_module(module, env_id)
    top = sys.modules[module.split(".")[0]]
    location = getattr(top, "__file__", None)
    if location is None:  # a namespace package
        location = next(iter(top.__path__))
    path = Path(location).resolve().parent
    return str(path.parent if Path(location).name == "__init__.py" else path)


# Where an env has no time limit of its own (CliffWalking, many users' envs), an evaluation
# or video episode stops after this many steps: a greedy policy that never reaches the end
# (walking into a wall) would otherwise hold up the run forever.
UNLIMITED_EPISODE_CAP = 1_000


def has_time_limit(env_id: str, env_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether the env's episodes end within a number of steps: its registration has
    max_episode_steps, or `env_kwargs` gives one (gym.make's own keyword)."""
    if (env_kwargs or {}).get("max_episode_steps") is not None:
        return True
    if _atari.is_atari(env_id):  # (a game is cut at atari.max_frames)
        return True
    return env_spec(env_id).max_episode_steps is not None


def capped_kwargs(env_id: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`env_kwargs` for an episode that must end: with max_episode_steps at
    UNLIMITED_EPISODE_CAP where the env has no time limit."""
    kwargs = dict(env_kwargs or {})
    if not has_time_limit(env_id, kwargs):
        kwargs["max_episode_steps"] = UNLIMITED_EPISODE_CAP
    return kwargs


_FLAT_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


def _flattens(space: gym.Space) -> bool:
    """A space of numbers of a fixed size (a Text, Sequence or Graph is not)."""
    if isinstance(space, gym.spaces.Tuple):
        return all(map(_flattens, space.spaces))
    if isinstance(space, gym.spaces.Dict):
        return all(map(_flattens, space.spaces.values()))
    return isinstance(space, _FLAT_SPACES)


def make_env(
    env_id: str,
    keep_images: bool = False,
    atari: _atari.AtariConfig | None = None,
    training: bool = True,
    observation_mask: Sequence[int] = (),
    **env_kwargs: Any,
) -> Callable[[], gym.Env]:
    """A thunk that builds one copy of the environment (for vector envs and subprocesses). An
    Atari game comes prepared by `atari` (envs.atari; `training` false: whole games at their
    real score, for evaluation). `observation_mask`: entries of the observation read as 0
    (envs.masked)."""

    def thunk() -> gym.Env:
        # (In a subprocess of the async vector env, this imports a "module:Name-v0"'s module.)
        if is_mujoco(env_id):
            route_mujoco_warnings()
        if _atari.is_atari(env_id):
            raw = _atari.raw_game(env_id, atari, **env_kwargs)
        else:
            raw = gym.make(env_id, **env_kwargs)
        return prepare(raw, env_id, keep_images, atari, training, observation_mask)

    return thunk


def prepare(
    raw: gym.Env,
    env_id: str,
    keep_images: bool = False,
    atari: _atari.AtariConfig | None = None,
    training: bool = True,
    observation_mask: Sequence[int] = (),
) -> gym.Env:
    """What the agent sees of `raw` (the env as gym.make gives it, or inside a video
    recorder): an Atari game's preparation (envs.atari), the masked observation entries
    (envs.masked), then the observations an MLP or CNN takes (`flat_observations`)."""
    env = raw
    if _atari.is_atari(env_id):
        env = _atari.make_atari(env_id, atari, training, env=raw)
    if observation_mask:
        env = _masked.MaskObservation(env, observation_mask)
    return flat_observations(env, keep_images)


def flat_observations(env: gym.Env, keep_images: bool = False) -> gym.Env:
    """The env with observations the agents' MLPs take, a flat float vector, as SB3 prepares
    them: a Discrete one one-hot (FrozenLake, Taxi, CliffWalking), a Tuple, Dict or
    MultiDiscrete concatenated (Blackjack), a Box of any shape flattened (gymnasium's
    FlattenObservation, then float32). A flat Box passes through untouched, and so does a space
    of no fixed size of numbers (Text, Sequence, Graph), for the agent's check to name.
    `keep_images`: frames (a Box of 3 dimensions) pass through too, for a CNN."""
    space = env.observation_space
    if keep_images and isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        return env
    if (isinstance(space, gym.spaces.Box) and len(space.shape) == 1) or not _flattens(space):
        return env
    flat = gym.wrappers.FlattenObservation(env)
    box = flat.observation_space
    if box.dtype == np.float32:
        return flat
    low, high = box.low.astype(np.float32), box.high.astype(np.float32)
    float_box = gym.spaces.Box(low, high, dtype=np.float32)
    return gym.wrappers.TransformObservation(flat, lambda obs: obs.astype(np.float32), float_box)


def is_mujoco(env_id: str) -> bool:
    """True for gymnasium's MuJoCo envs (Hopper, HalfCheetah, ...), by where they live."""
    return "envs.mujoco" in str(env_spec(env_id).entry_point)


# Which OpenGL library MuJoCo opens (to draw frames; its import loads it) is its MUJOCO_GL.
MUJOCO_GL_HINT = (
    "MuJoCo draws through OpenGL: with a display set MUJOCO_GL=glfw; without one MUJOCO_GL=egl "
    "(libEGL: apt-get install libegl1) or MUJOCO_GL=osmesa (apt-get install libosmesa6)"
)


class MuJoCoWarning(RuntimeWarning):
    """A warning of the MuJoCo engine (such as a deprecated attribute in a model file)."""


def route_mujoco_warnings() -> None:
    """MuJoCo writes its warnings to MUJOCO_LOG.TXT in the current folder (gymnasium's own
    model files trigger one with recent MuJoCo releases); send them to Python's warnings
    instead, which show each once and leave the user's folder alone."""
    if importlib.util.find_spec("mujoco") is None:
        return  # not installed: gym.make then says so, and `missing_dependency` what to install
    try:
        import mujoco
    except Exception as error:  # its import loads the OpenGL library that MUJOCO_GL names
        backend = os.environ.get("MUJOCO_GL")
        raise EnvError(
            f"MuJoCo failed to load with MUJOCO_GL={backend} ({type(error).__name__}: {error}); "
            f"{MUJOCO_GL_HINT}"
        ) from None
    mujoco.set_mju_user_warning(
        lambda text: warnings.warn(f"MuJoCo: {text.strip()}", MuJoCoWarning, stacklevel=1)
    )


# Envs whose physics engine is an optional extra of rlkit, by the gymnasium module they live in.
EXTRAS = {"box2d": "box2d", "mujoco": "mujoco", "minatar": "minatar"}


def missing_dependency(env_id: str, error: Exception) -> str:
    """One line naming the install for an env whose engine is missing (gymnasium's own hint
    names its extras, not rlkit's)."""
    entry_point = str(env_spec(env_id).entry_point)
    for module, extra in EXTRAS.items():
        if f"envs.{module}" in entry_point:
            return f"{env_id} needs the {extra} extra: pip install 'rlkit[{extra}]'"
    return f"cannot make environment {env_id!r}: {error}"


VECTORIZATIONS = ("sync", "async")


class CheckFinite(VectorWrapper):
    """Raises EnvError, naming the copy and the step, when an environment returns a NaN or
    infinite observation or reward: one such value reaching a replay buffer or a return
    would poison every update after it, far from its cause."""

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        self.step_count = 0  # vector steps taken since the env was made
        dtype = getattr(env.single_observation_space, "dtype", None)
        self._float_obs = dtype is not None and np.issubdtype(dtype, np.floating)

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        self._check(obs, None, "reset")
        return obs, infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self.step_count += 1
        when = f"step {self.step_count}"
        self._check(obs, rewards, when)
        done = infos.get("_final_obs")
        if done is not None:  # the real last observations of episodes that just ended
            for i in np.flatnonzero(done):
                self._check_obs(np.asarray(infos["final_obs"][i]), int(i), when)
        return obs, rewards, terminated, truncated, infos

    def _check(self, obs: np.ndarray, rewards: np.ndarray | None, when: str) -> None:
        if rewards is not None and not np.isfinite(rewards).all():
            i = int(np.flatnonzero(~np.isfinite(rewards))[0])
            raise EnvError(
                f"environment copy {i} returned a non-finite reward ({rewards[i]}) at {when}"
            )
        floating = self._float_obs or np.issubdtype(obs.dtype, np.floating)
        if floating and not np.isfinite(obs).all():
            for i, row in enumerate(obs):  # (one vectorised test per step; rows only to name it)
                self._check_obs(row, i, when)

    @staticmethod
    def _check_obs(obs: np.ndarray, copy: int, when: str) -> None:
        if np.issubdtype(obs.dtype, np.floating) and not np.isfinite(obs).all():
            raise EnvError(f"environment copy {copy} returned a non-finite observation at {when}")


def make(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    record_statistics: bool = True,
    vectorization: str = "sync",
    env_kwargs: dict[str, Any] | None = None,
    keep_images: bool = False,
    atari: _atari.AtariConfig | None = None,
    training: bool = True,
    observation_mask: Sequence[int] = (),
    **more_env_kwargs: Any,
) -> VectorEnv:
    """`n_envs` copies of `env_id` in a vector env with SAME_STEP autoreset.

    `vectorization`: "sync" steps the copies one after the other in this process (best for
    cheap envs such as CartPole); "async" runs each copy in its own subprocess (for envs whose
    step is expensive).

    `env_kwargs` (and any other keyword) go to `gym.make` for each copy: the env's own
    arguments, and gym.make's (max_episode_steps).

    With `seed`, the copies are reset with seeds seed, seed+1, ... so runs are reproducible.
    The episode statistics wrapper puts each finished episode's return and length in
    `info["episode"]`.

    Observations are what an MLP takes (`flat_observations`) unless `keep_images`: then frames
    (a Box of 3 dimensions) stay as they are, for an agent with a CNN. `observation_mask`:
    entries of a flat Box observation read as 0 (envs.masked.MaskObservation).
    """
    check_env_id(env_id)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int | np.integer) or n_envs < 1:
        raise EnvError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if vectorization not in VECTORIZATIONS:
        raise EnvError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    vector_cls = SyncVectorEnv if vectorization == "sync" else AsyncVectorEnv
    env_kwargs = {**(env_kwargs or {}), **more_env_kwargs}
    try:
        vector_env: VectorEnv = vector_cls(
            [
                make_env(env_id, keep_images, atari, training, observation_mask, **env_kwargs)
                for _ in range(int(n_envs))
            ],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(missing_dependency(env_id, error)) from None
    except gym.error.Error as error:
        raise EnvError(f"cannot make environment {env_id!r}: {error}") from None
    except (TypeError, ValueError) as error:  # keyword arguments the env does not take
        raise EnvError(f"cannot make environment {env_id!r}: {error}") from None
    vector_env = CheckFinite(vector_env)
    if record_statistics:
        vector_env = RecordEpisodeStatistics(vector_env)
    if seed is not None:
        vector_env.reset(seed=int(seed))
        vector_env.action_space.seed(int(seed))
    return vector_env


def dict_observation_space(
    env: gym.Env, env_id: str, env_kwargs: dict[str, Any] | None = None
) -> gym.spaces.Dict | None:
    """The Dict space of an env whose observations `flat_observations` flattened into one
    vector (gymnasium's FlattenObservation: the keys' values concatenated in the space's key
    order), else None: what an encoder needs to read the vector key by key. Takes the vector
    env the agent trains on (a SyncVectorEnv's first copy is read; for another, one copy of
    `env_id` is made to look)."""
    copies = getattr(env.unwrapped, "envs", None)
    if copies:
        return _flattened_dict(copies[0])
    probe = make_env(env_id, **(env_kwargs or {}))()  # (an async env's copies are elsewhere)
    try:
        return _flattened_dict(probe)
    finally:
        probe.close()


def _flattened_dict(layer: gym.Env | None) -> gym.spaces.Dict | None:
    while layer is not None:
        if isinstance(layer, gym.wrappers.FlattenObservation):
            space = layer.env.observation_space
            return space if isinstance(space, gym.spaces.Dict) else None
        layer = getattr(layer, "env", None)
    return None


def frame_stack_axis(env: gym.Env) -> int | None:
    """Where an env's observations stack their last k frames (0 for (k, H, W)), or None when
    they are not a frame stack: gymnasium's FrameStackObservation of 2-d frames, or a wrapper
    that says so with a `frame_stack_axis` attribute. Takes one env or a SyncVectorEnv (whose
    first copy is read)."""
    env = getattr(env.unwrapped, "envs", [env])[0]
    while env is not None:
        axis = getattr(env, "frame_stack_axis", None)
        if axis is not None:
            return int(axis)
        if isinstance(env, gym.wrappers.FrameStackObservation):
            shape = env.observation_space.shape
            return 0 if shape is not None and len(shape) == 3 else None
        env = getattr(env, "env", None)
    return None


def real_next_obs(next_obs: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """The observation each transition actually led to (SAME_STEP autoreset).

    Where a copy's episode ended on this step, `next_obs` already holds the next episode's
    first observation; the true last observation is in `infos["final_obs"]`.
    """
    done_mask = infos.get("_final_obs")
    if done_mask is None or not np.any(done_mask):
        return next_obs
    result = next_obs.copy()
    final_obs = infos["final_obs"]
    for i in np.flatnonzero(done_mask):
        result[i] = final_obs[i]
    return result
