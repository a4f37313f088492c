"""`rlkit eval PATH --video DIR`: the agent's greedy episodes as MP4 files, through gymnasium's
RecordVideo (moviepy, with the ffmpeg binary of imageio-ffmpeg; pygame draws the classic
control envs). These come with the `video` extra: pip install 'rlkit[video]'."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordVideo

from envs.atari import is_atari, raw_game
from rlkit.agent.evaluation import EvalResult, seed_for_testing
from rlkit.base.errors import UserError

INSTALL = "pip install 'rlkit[video]'"


def _require_video_dependencies() -> None:
    missing = []
    for module in ("moviepy", "pygame"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(f"--video needs {' and '.join(missing)}: {INSTALL}")


def record_episodes(
    agent: Any, n_episodes: int, folder: Path, seed: int | None = None
) -> tuple[EvalResult, list[Path]]:
    """Greedy episodes on one copy of the agent's env, episode i reset with seed + i (default
    seed: the agent's test seeds), each recorded to its own MP4 in `folder`; returns their
    returns and lengths and the video files."""
    # No window and no sound device: frames are drawn off-screen (pygame reads these at init).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # MuJoCo (gymnasium reads this when it first renders) tries a window library first,
        # which without a display fails only later, inside MuJoCo: off-screen through EGL.
        os.environ.setdefault("MUJOCO_GL", "egl")
    _require_video_dependencies()
    import envs

    env_id = agent.config.env
    envs.check_env_id(env_id)
    env_kwargs = envs.capped_kwargs(env_id, agent.config.env_kwargs)
    env_kwargs.pop("render_mode", None)  # (frames are drawn whatever the config says)
    modes = _render_modes(env_id, env_kwargs)
    if "rgb_array" not in modes:
        raise UserError(f"{env_id} cannot draw frames (its render modes: {modes or 'none'})")
    if seed is None:
        seed = seed_for_testing(agent.config.seed)
    prefix = env_id.replace("/", "-")
    atari = is_atari(env_id)  # (the raw game is filmed, every frame, under its preparation)
    game = raw_game if atari else gym.make
    recorder = _RecordEveryFrame(
        game(env_id, render_mode="rgb_array", **env_kwargs), str(folder),
        episode_trigger=lambda _: True, name_prefix=prefix, disable_logger=True,
    )  # fmt: skip
    # What the agent sees of the filmed env: an Atari game whole at its real score, as
    # evaluation plays it; masked entries hidden from the agent, not from the frames.
    env = envs.prepare(
        recorder, env_id, agent.keep_images, agent.config.atari, training=False,
        observation_mask=agent.config.observation_mask,
    )  # fmt: skip
    returns: list[float] = []
    lengths: list[int] = []
    drawn = False  # a frame has been drawn: rendering works
    # What MuJoCo's renderer raises when it cannot open its OpenGL context (PyOpenGL without
    # its library: AttributeError on a None handle; MuJoCo: FatalError; gymnasium:
    # RuntimeError). Other envs' errors keep their traceback.
    mujoco = sys.modules.get("mujoco") if envs.is_mujoco(env_id) else None
    no_context: tuple[type[BaseException], ...] = ()
    if mujoco is not None:
        no_context = (AttributeError, ImportError, OSError, RuntimeError, mujoco.FatalError)
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)  # (draws the first frame)
            drawn = True
            total, length, done = 0.0, 0, False
            while not done:
                action = agent.act(np.asarray(obs)[None], deterministic=True)[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    except gym.error.DependencyNotInstalled as error:
        raise UserError(f"--video: {error}: {INSTALL}") from None
    except no_context as error:
        if drawn:
            raise
        raise UserError(
            f"--video: {env_id} could not draw a frame ({type(error).__name__}: {error}); "
            f"{envs.MUJOCO_GL_HINT}"
        ) from None
    finally:
        env.close()
    files = [folder / f"{prefix}-episode-{i}.mp4" for i in range(n_episodes)]
    return EvalResult(returns, lengths), files


def _render_modes(env_id: str, env_kwargs: dict) -> list[str]:
    env = (raw_game if is_atari(env_id) else gym.make)(env_id, **env_kwargs)
    try:
        return list(env.metadata.get("render_modes", []))
    finally:
        env.close()


def _write_mp4(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Every frame, in order, as H.264 in an MP4 (yuv420p, which every player reads)."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        path, (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p", macro_block_size=2, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)  # start ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
    finally:
        writer.close()


class _RecordEveryFrame(RecordVideo):
    """gymnasium's RecordVideo (triggers, names, frame capture), writing each episode's frames
    with imageio-ffmpeg. RecordVideo's own writer, moviepy 2.2's ImageSequenceClip, adds up
    the frames' durations in floating point and truncates their sum times fps, so some
    episodes lose their last frame (a 10-step CartPole episode at 50 fps: 10 of its 11
    frames). imageio-ffmpeg is the ffmpeg that moviepy itself runs."""

    def stop_recording(self) -> None:
        if self.recorded_frames:
            path = os.path.join(self.video_folder, f"{self._video_name}.mp4")
            _write_mp4(path, self.recorded_frames, self.frames_per_sec)
        self.recorded_frames = []
        self.recording = False
        self._video_name = None
