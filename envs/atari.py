"""Atari 2600 games (ale-py, the `atari` extra), prepared as DQN (Mnih et al. 2015) and every
peer since prepare them; observation for observation what Stable-Baselines3's AtariWrapper and
a 4-frame stack give (tests/test_atari.py checks it where SB3 is installed).

From the raw game (ale-py's env at frameskip 1, sticky actions off unless asked), in this order:

- `GameScore`: each game's real score (all lives, unclipped) in the info of its last step;
- `NoopReset`: up to `noop_max` no-op steps after a reset (a random start);
- `MaxAndSkip`: each action repeated `frame_skip` times, the rewards summed, the observation the
  pixel-wise max of the last two frames (the Atari draws some sprites every other frame);
- `EpisodicLife` (training): a lost life ends the episode for the learner, but the game goes on;
  the env resets only at game over (SB3's EpisodicLifeEnv; gymnasium's AtariPreprocessing ends
  the game instead);
- `FireReset`: FIRE, then action 2, after each reset of a game that waits for FIRE (and, in
  whole games, `FireAfterLifeLoss` after each lost life, as training's per-life resets did);
- `WarpFrame`: grayscale, resized to `screen_size` square with OpenCV's area interpolation;
- `ClipReward` (training): the reward's sign;
- a stack of the last `frame_stack` frames, (k, H, W), zeros before the first (SB3's
  VecFrameStack), which the replay of DQN keeps one frame at a time (rlkit.data.frames).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlkit.base.config import Config, require
from rlkit.base.errors import ConfigError, EnvError

INSTALL = "pip install 'rlkit[atari]'"


@dataclasses.dataclass
class AtariConfig(Config):
    """The preprocessing of Atari games (`atari:` in a config), each step a setting; the
    defaults are SB3's AtariWrapper with a 4-frame stack."""

    noop_max: int = 30
    """Most no-op steps after a reset (0: none)."""
    frame_skip: int = 4
    """Frames each action is repeated for (the last two max-pooled)."""
    episodic_life: bool = True
    """Training: a lost life ends the episode for the learner (the game goes on)."""
    fire_reset: bool = True
    """Press FIRE after a reset in games that wait for it."""
    clip_reward: bool = True
    """Training: rewards clipped to their sign."""
    screen_size: int = 84
    """Frames resized to screen_size x screen_size grayscale."""
    frame_stack: int = 4
    """Observations stack the last frame_stack frames."""
    sticky_actions: float = 0.0
    """Probability that the game repeats the previous action (ALE v5's default is 0.25)."""
    max_frames: int = 108_000
    """A game is cut after this many frames (30 minutes at 60 frames a second)."""

    def validate(self) -> None:
        require(self.noop_max >= 0, f"atari.noop_max must be >= 0, got {self.noop_max}")
        require(self.frame_skip >= 1, f"atari.frame_skip must be >= 1, got {self.frame_skip}")
        require(self.screen_size >= 8, f"atari.screen_size must be >= 8, got {self.screen_size}")
        require(self.frame_stack >= 1, f"atari.frame_stack must be >= 1, got {self.frame_stack}")
        require(
            0.0 <= self.sticky_actions < 1.0,
            f"atari.sticky_actions must be in [0, 1), got {self.sticky_actions}",
        )
        require(self.max_frames >= 1, f"atari.max_frames must be >= 1, got {self.max_frames}")


def is_atari(env_id: str) -> bool:
    """ale-py's ids: ALE/<Game>-v5, and the older <Game>NoFrameskip-v4 family."""
    return env_id.startswith("ALE/") or env_id.endswith(("NoFrameskip-v4", "NoFrameskip-v0"))


def register(env_id: str) -> None:
    """Register ale-py's games with gymnasium (its import does not), or say what to install."""
    try:
        import ale_py
    except ImportError:
        raise EnvError(f"{env_id} needs the atari extra: {INSTALL}") from None
    gym.register_envs(ale_py)


def raw_game(env_id: str, settings: AtariConfig | None = None, **env_kwargs: Any) -> gym.Env:
    """ale-py's env of the game, one frame a step (the preprocessing skips frames itself)."""
    settings = settings or AtariConfig()
    register(env_id)
    return gym.make(
        env_id, frameskip=1, repeat_action_probability=settings.sticky_actions,
        full_action_space=False, max_num_frames_per_episode=settings.max_frames, **env_kwargs,
    )  # fmt: skip


def make_atari(
    env_id: str,
    settings: AtariConfig | None = None,
    training: bool = True,
    env: gym.Env | None = None,
    **env_kwargs: Any,
) -> gym.Env:
    """The game `env_id` prepared by `settings` (None: the defaults), on `env` where given (a
    raw game inside a video recorder) or a new `raw_game`. `training` false leaves out what
    only the learner sees (the episode end at a lost life and the clipped reward): evaluation
    plays whole games for their real score."""
    settings = settings or AtariConfig()
    if env is None:
        env = raw_game(env_id, settings, **env_kwargs)
    env = GameScore(env)
    if settings.noop_max > 0:
        env = NoopReset(env, settings.noop_max)
    if settings.frame_skip > 1:
        env = MaxAndSkip(env, settings.frame_skip)
    if training and settings.episodic_life:
        env = EpisodicLife(env)
    if settings.fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
        if not (training and settings.episodic_life):
            # Whole games: the learner never had to press FIRE after a lost life (each life
            # began with the reset's FIRE), so the game presses it here too.
            env = FireAfterLifeLoss(env)
    env = WarpFrame(env, settings.screen_size)
    if training and settings.clip_reward:
        env = ClipReward(env)
    if settings.frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, settings.frame_stack, padding_type="zero")
    return env


class GameScore(gym.Wrapper):
    """The real score of a whole game (every life, rewards unclipped) and its frames, put in
    `info["game_score"]` and `info["game_frames"]` on the step that ends the game: what the
    learner's per-life, clipped episodes hide. Sits on the raw game, under every other step."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.score = 0.0
        self.frames = 0

    def reset(self, **kwargs: Any):
        self.score, self.frames = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        self.frames += 1
        if terminated or truncated:
            info = {**info, "game_score": self.score, "game_frames": self.frames}
        return obs, reward, terminated, truncated, info


class NoopReset(gym.Wrapper):
    """After each reset, 1 to `noop_max` no-op steps (drawn from the env's own generator)."""

    def __init__(self, env: gym.Env, noop_max: int) -> None:
        super().__init__(env)
        require(env.unwrapped.get_action_meanings()[0] == "NOOP", "action 0 must be NOOP")
        self.noop_max = noop_max

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """The action repeated `skip` times; the rewards summed; the observation the max of the last
    two frames (sprites drawn every other frame would flicker otherwise)."""

    def __init__(self, env: gym.Env, skip: int) -> None:
        super().__init__(env)
        self.skip = skip
        self._frames = np.zeros((2, *env.observation_space.shape), env.observation_space.dtype)

    def step(self, action):
        total = 0.0
        terminated = truncated = False
        info: dict = {}
        for i in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if i >= self.skip - 2:
                self._frames[i - (self.skip - 2)] = obs
            total += float(reward)
            if terminated or truncated:
                break
        # (At a game's end the frames may be one stale: that observation is never acted on.)
        return self._frames.max(axis=0), total, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the learner's episode; the game resets only when it is over. Values are
    then learned per life, as DeepMind's DQN did; the real score comes from whole games."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:  # (Q*bert sits at 0 lives a few frames before it ends)
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a life was lost: play on from where the game is, with one no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """FIRE, then action 2, after a reset: games such as Breakout wait for FIRE to start."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        require(meanings[1] == "FIRE" and len(meanings) >= 3, "action 1 must be FIRE")

    def reset(self, **kwargs: Any):
        self.env.reset(**kwargs)
        obs = None
        for action in (1, 2):
            obs, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                obs, _ = self.env.reset(**kwargs)
        return obs, {}


class FireAfterLifeLoss(gym.Wrapper):
    """In a whole game (evaluation): after a lost life, what training's life-loss reset did
    (a no-op, FIRE, action 2), its rewards added to the step's. Without it, a greedy agent that
    trained with EpisodicLife waits in Breakout for a FIRE it never learned to press, until the
    game's frame cap."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            for press in (0, 1, 2):
                if terminated or truncated:
                    break
                obs, more, terminated, truncated, info = self.env.step(press)
                reward += more
        self.lives = lives
        return obs, reward, terminated, truncated, info


class WarpFrame(gym.ObservationWrapper):
    """RGB frames to `size` x `size` grayscale uint8 (OpenCV's luma weights and area
    interpolation, as SB3 and the DQN papers' preprocessing)."""

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        try:
            import cv2
        except ImportError:
            raise ConfigError(f"Atari frames need OpenCV: {INSTALL}") from None
        self._cv2 = cv2
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        return cv2.resize(gray, (self.size, self.size), interpolation=cv2.INTER_AREA)


class ClipReward(gym.RewardWrapper):
    """The reward's sign: -1, 0 or +1 (one learning rate fits every game's scale)."""

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))
