"""MinAtar (Young & Tian 2019): five Atari games on a 10x10 grid, one boolean channel per kind
of object, registered as MinAtar/<Game>-v0 (all 6 actions, as the paper's agents) and -v1 (the
game's minimal action set). The games come from the `minatar` package (the `minatar` extra).

This env drives MinAtar's game classes itself rather than through minatar.Environment or
minatar.gym: its randomness (sticky actions, the game's own draws) then comes from gymnasium's
seeding, and every piece of its state is a number, a list or a random state that rlkit's
checkpoints hold, so a resumed run plays the same game on. The rules are the package's: a
sticky action (the previous one repeated) with probability 0.1, difficulty ramping on.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}

# Episodes end by the game's rules (Freeway after 2,500 frames); the cap only keeps a policy
# that never loses from running forever.
MAX_EPISODE_STEPS = 10_000


def register() -> None:
    for name, game in GAMES.items():
        for version, minimal in (("v0", False), ("v1", True)):
            env_id = f"MinAtar/{name}-{version}"
            if env_id not in gym.registry:
                gym.register(
                    env_id, entry_point="envs.minatar:MinAtarEnv",
                    kwargs={"game": game, "minimal_actions": minimal},
                    max_episode_steps=MAX_EPISODE_STEPS,
                )  # fmt: skip


def game_module(game: str):
    """minatar.environments.<game>, or gymnasium's DependencyNotInstalled (which envs.make
    turns into a one-line install hint)."""
    try:
        return importlib.import_module(f"minatar.environments.{game}")
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] == "minatar":
            raise gym.error.DependencyNotInstalled(
                "MinAtar is not installed: pip install 'rlkit[minatar]'"
            ) from None
        raise


class MinAtarEnv(gym.Env):
    """One MinAtar game as a gymnasium env: observations (10, 10, channels) bool, rewards as
    the game gives them (Breakout: +1 a brick)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        game: str = "breakout",
        minimal_actions: bool = True,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        render_mode: str | None = None,
    ) -> None:
        if game not in GAMES.values():
            raise ValueError(f"unknown MinAtar game {game!r}; one of {sorted(GAMES.values())}")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        # `env`: the game, named so that rlkit's env state walks into it like a wrapped env.
        self.env = game_module(game).Env(ramping=difficulty_ramping)
        self.game = game
        self.sticky_action_prob = float(sticky_action_prob)
        self.render_mode = render_mode
        self.action_set = list(self.env.minimal_action_set()) if minimal_actions else list(range(6))
        self.action_space = spaces.Discrete(len(self.action_set))
        self.observation_space = spaces.Box(0, 1, self.env.state_shape(), dtype=bool)
        self.last_action = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # The game draws from its own RandomState: seed it from gymnasium's generator.
        self.env.random = np.random.RandomState(int(self.np_random.integers(2**31)))
        self.env.reset()
        self.last_action = 0
        return self.env.state().astype(bool), {}

    def step(self, action):
        action = self.action_set[int(action)]
        if self.np_random.random() < self.sticky_action_prob:
            action = self.last_action
        self.last_action = action
        reward, terminal = self.env.act(action)
        return self.env.state().astype(bool), float(reward), bool(terminal), False, {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        state = self.env.state()
        # A colour per channel (the first one present wins), black where nothing is.
        palette = np.array(
            [[0, 0, 0]] + [_channel_colour(i, state.shape[-1]) for i in range(state.shape[-1])],
            dtype=np.uint8,
        )
        index = np.where(state.any(-1), state.argmax(-1) + 1, 0)
        return np.repeat(np.repeat(palette[index], 16, axis=0), 16, axis=1)


def _channel_colour(i: int, n: int) -> list[int]:
    hue = i / max(n, 1)
    r, g, b = (0.5 + 0.5 * np.cos(2 * np.pi * (hue + shift)) for shift in (0, 1 / 3, 2 / 3))
    return [int(55 + 200 * r), int(55 + 200 * g), int(55 + 200 * b)]
