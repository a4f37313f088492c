"""`rlkit eval --video`: real MP4 files from gymnasium's RecordVideo with a real encoder
(moviepy with imageio-ffmpeg's ffmpeg), read back to count their frames."""

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

import agents

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved_agent(tmp_path_factory) -> Path:
    # Untrained: what is checked is the recording, not the policy.
    agent = agents.PPO("CartPole-v1", seed=3, n_envs=2, n_steps=64, batch_size=64, device="cpu")
    path = tmp_path_factory.mktemp("video") / "agent.safetensors"
    agent.save(path)
    agent.close()
    return path


def _rlkit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_eval_video_writes_one_valid_mp4_per_episode(saved_agent, tmp_path):
    folder = tmp_path / "videos"
    result = _rlkit("eval", saved_agent, "--episodes", "2", "--video", folder, "--json")
    assert result.returncode == 0, result.stderr
    files = sorted(folder.glob("*.mp4"))
    assert [f.name for f in files] == ["CartPole-v1-episode-0.mp4", "CartPole-v1-episode-1.mp4"]
    returns = json.loads(result.stdout)["returns"]
    for file, episode_return in zip(files, returns, strict=True):
        frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(file))
        # CartPole pays 1 per step; RecordVideo keeps the reset frame and one frame per step.
        assert frames == int(episode_return) + 1, (file, frames, episode_return)


def test_video_of_an_env_whose_observations_the_agent_sees_flattened(tmp_path):
    """FrozenLake's Discrete cell reaches the agent one-hot in training; the video's episodes
    must give it the same, and end at env_kwargs' time limit of 6 steps."""
    agent = agents.DQN("FrozenLake-v1", seed=3, env_kwargs={"max_episode_steps": 6})
    path = tmp_path / "agent.safetensors"
    agent.save(path)
    agent.close()
    folder = tmp_path / "videos"
    result = _rlkit("eval", path, "--episodes", "2", "--video", folder, "--json")
    assert result.returncode == 0, result.stderr
    assert len(list(folder.glob("FrozenLake-v1-episode-*.mp4"))) == 2
    assert json.loads(result.stdout)["mean_length"] <= 6


def test_eval_video_without_the_extra_is_one_line_naming_the_install(saved_agent, tmp_path):
    # A real interpreter in which moviepy cannot be imported (as on an install without the
    # `video` extra).
    code = (
        "import sys; sys.modules['moviepy'] = None; from rlkit.cli import main; "
        f"sys.exit(main(['eval', {str(saved_agent)!r}, '--video', {str(tmp_path / 'v')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if "error" in line]
    assert error == ["rlkit eval: error: --video needs moviepy: pip install 'rlkit[video]'"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("n_frames", [1, 10, 11, 12, 37])
def test_every_frame_is_written(tmp_path, n_frames):
    # moviepy 2.2 (RecordVideo's own writer) drops the last frame of 11 frames at 50 fps.
    from rlkit.agent.video import _write_mp4

    frames = [np.full((400, 600, 3), i * 6 % 256, dtype=np.uint8) for i in range(n_frames)]
    path = tmp_path / "clip.mp4"
    _write_mp4(str(path), frames, fps=50)
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == n_frames


@pytest.fixture(scope="module")
def saved_hopper_agent(tmp_path_factory) -> Path:
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed")
    agent = agents.SAC("Hopper-v5", seed=3, network={"hidden_sizes": [16]}, device="cpu")
    path = tmp_path_factory.mktemp("hopper") / "agent.safetensors"
    agent.save(path)
    agent.close()
    return path


def _headless(**settings: str) -> dict:
    """This environment without a display (as on a server or in CI), plus `settings`."""
    names = ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")
    return {**{k: v for k, v in os.environ.items() if k not in names}, **settings}


def _rlkit_in(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_mujoco_video_without_a_display_draws_through_egl(saved_hopper_agent, tmp_path):
    # MuJoCo's default tries a window library first, which fails only inside MuJoCo (a
    # traceback); without a display rlkit picks EGL. Where libEGL is missing that is one line
    # naming what to install.
    folder = tmp_path / "videos"
    result = _rlkit_in(_headless(), "eval", saved_hopper_agent, "--episodes", "2", "--video",
                       folder, "--json")  # fmt: skip
    if ctypes.util.find_library("EGL") is None:
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].count("MUJOCO_GL=egl") == 1
        assert "Traceback" not in result.stderr
        return
    assert result.returncode == 0, result.stderr
    files = sorted(folder.glob("*.mp4"))
    assert [f.name for f in files] == ["Hopper-v5-episode-0.mp4", "Hopper-v5-episode-1.mp4"]
    summary = json.loads(result.stdout)
    frames = [imageio_ffmpeg.count_frames_and_secs(str(f))[0] for f in files]
    # Each episode: the reset frame and one per step.
    assert sum(frames) == round(2 * summary["mean_length"]) + 2, (frames, summary)


def test_a_mujoco_gl_that_cannot_load_is_one_line_naming_the_choices(saved_hopper_agent,
                                                                     tmp_path):  # fmt: skip
    if ctypes.util.find_library("OSMesa") is not None:
        pytest.skip("OSMesa is installed here: MUJOCO_GL=osmesa loads")
    for args in (("eval", saved_hopper_agent, "--video", tmp_path / "v"),
                 ("train", ROOT / "configs" / "sac_hopper.yaml", "--steps", "10",
                  "--run-dir", tmp_path / "run")):  # fmt: skip
        result = _rlkit_in(_headless(MUJOCO_GL="osmesa"), *args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "MuJoCo failed to load with MUJOCO_GL=osmesa" in lines[0]
        assert "MUJOCO_GL=egl" in lines[0] and "apt-get install libosmesa6" in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "v").exists()
