"""Atari preprocessing (envs.atari) against Stable-Baselines3's AtariWrapper and VecFrameStack,
observation for observation on seeded games with the same random actions (skipped where
ale-py, OpenCV or SB3 is missing), and the settings' checks."""

import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")
pytest.importorskip("cv2")

import gymnasium as gym  # noqa: E402

from envs.atari import AtariConfig, is_atari, make_atari  # noqa: E402
from rlkit.base.errors import ConfigError  # noqa: E402

gym.register_envs(ale_py)


def _sb3_env(env_id: str):
    atari_wrappers = pytest.importorskip("stable_baselines3.common.atari_wrappers")
    raw = gym.make(env_id, frameskip=1, repeat_action_probability=0.0, full_action_space=False)
    return atari_wrappers.AtariWrapper(raw)


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "ALE/Pong-v5"])
def test_frames_rewards_and_ends_equal_sb3s_atari_wrapper(env_id):
    """Over 1,500 agent steps (Breakout: several lives and a game over, each ending the
    learner's episode), with resets where either says the episode ended."""
    ours = make_atari(env_id, AtariConfig(frame_stack=1))
    theirs = _sb3_env(env_id)
    obs, _ = ours.reset(seed=3)
    sb3_obs, _ = theirs.reset(seed=3)
    assert np.array_equal(obs, sb3_obs[:, :, 0])
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(1_500):
        action = int(rng.integers(ours.action_space.n))
        obs, reward, terminated, truncated, _ = ours.step(action)
        sb3_obs, sb3_reward, sb3_terminated, sb3_truncated, _ = theirs.step(action)
        assert np.array_equal(obs, sb3_obs[:, :, 0])
        assert (reward, terminated, truncated) == (sb3_reward, sb3_terminated, sb3_truncated)
        if terminated or truncated:
            ends += 1
            obs, _ = ours.reset()
            sb3_obs, _ = theirs.reset()
            assert np.array_equal(obs, sb3_obs[:, :, 0])
    assert ends >= (3 if env_id == "ALE/Breakout-v5" else 0)


def test_the_stack_equals_sb3s_vec_frame_stack():
    vec_env = pytest.importorskip("stable_baselines3.common.vec_env")
    ours = make_atari("ALE/Breakout-v5")
    theirs = vec_env.VecFrameStack(vec_env.DummyVecEnv([lambda: _sb3_env("ALE/Breakout-v5")]), 4)
    theirs.seed(5)
    obs, _ = ours.reset(seed=5)
    sb3_obs = theirs.reset()
    assert obs.shape == (4, 84, 84) and sb3_obs.shape == (1, 84, 84, 4)
    rng = np.random.default_rng(1)
    for _ in range(200):
        assert np.array_equal(obs, np.moveaxis(sb3_obs[0], -1, 0))
        action = int(rng.integers(ours.action_space.n))
        obs, _, terminated, truncated, _ = ours.step(action)
        sb3_obs, _, dones, _ = theirs.step(np.array([action]))
        if terminated or truncated:  # (SB3 resets inside step: compare up to the first end)
            assert dones[0]
            break


def test_evaluation_plays_whole_games_at_their_real_score():
    """Without the learner's episode ends and clipping: one game over all of Breakout's five
    lives, its unclipped rewards."""
    env = make_atari("ALE/Breakout-v5", training=False)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    lives_seen = set()
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        lives_seen.add(info["lives"])
        assert reward == int(reward) >= 0
        if terminated or truncated:
            break
    assert lives_seen >= {5, 1} and info["lives"] == 0


def test_ids_and_settings():
    assert is_atari("ALE/Pong-v5") and is_atari("PongNoFrameskip-v4")
    assert not is_atari("CartPole-v1") and not is_atari("MinAtar/Breakout-v1")
    for key, value in [("frame_skip", 0), ("sticky_actions", 1.0), ("frame_stack", 0)]:
        with pytest.raises(ConfigError, match=f"atari.{key}"):
            AtariConfig(**{key: value})


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_agents_train_on_a_game_and_evaluate_whole_games(name):
    """A few hundred steps (smoke): the frames (4, 84, 84) through the Nature CNN, the stack
    stored once in DQN's replay; evaluation plays a whole game of Pong (to 21 points)."""
    import agents

    extra = (
        dict(learning_starts=100, buffer_size=1000)
        if name == "dqn"
        else dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=1)
    )
    agent = agents.agent_class(name)(env="ALE/Pong-v5", seed=1, **extra)
    assert agent.observation_space.shape == (4, 84, 84)
    agent.learn(300)
    if name == "dqn":
        assert agent.replay_obs.stack_axis == 0
    result = agent.evaluate(1)
    assert -21 <= result.mean_return <= 21 and result.mean_return == int(result.mean_return)


def test_the_game_score_adds_every_life_unclipped():
    """The learner's episodes end at each lost life with clipped rewards; the step that ends
    the game carries the whole game's real score (tried unclipped, it is the sum)."""
    for clip in (False, True):
        env = make_atari("ALE/Breakout-v5", AtariConfig(clip_reward=clip))
        env.reset(seed=2)
        rng = np.random.default_rng(2)
        total, lives_ended = 0.0, 0
        while True:
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            total += reward
            if "game_score" in info:
                break
            if terminated or truncated:
                lives_ended += 1
                env.reset()
        assert lives_ended == 4  # (five lives: the fifth ends the game)
        if clip:
            assert info["game_score"] >= total  # (bricks higher up score 4 and 7)
        else:
            assert info["game_score"] == total and info["game_frames"] > 0


def test_training_logs_the_game_score(tmp_path, capsys):
    """TensorBoard gets both the per-life clipped returns and the whole games' scores; the
    progress bar shows the mean game score."""
    import agents
    from tests.helpers import read_scalars

    agent = agents.PPO(env="ALE/Breakout-v5", n_envs=2, n_steps=128, batch_size=64, n_epochs=1)
    agent.learn(1024, run_dir=tmp_path, progress=True)
    scalars = read_scalars(tmp_path)
    assert "rollout/game_score" in scalars and "rollout/episodic_return" in scalars
    assert len(scalars["rollout/episodic_return"]) >= 4 * len(scalars["rollout/game_score"])
    scores = [value for _, value in scalars["rollout/game_score"]]
    last_bar = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"score {sum(scores[-20:]) / len(scores[-20:]):.1f}," in last_bar, last_bar


def test_a_video_films_a_whole_game_frame_by_frame(tmp_path):
    """`rlkit eval --video` of an Atari agent: the raw game's every frame (frameskip 4: four a
    step), the whole game, at its real score."""
    import subprocess
    import sys
    from pathlib import Path

    import imageio_ffmpeg

    import agents

    agent = agents.PPO(env="ALE/Pong-v5", n_envs=1, n_steps=64, batch_size=64)
    agent.save(tmp_path / "agent.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "eval", tmp_path / "agent.safetensors",
         "--episodes", "1", "--video", tmp_path / "videos", "--json"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (video,) = (tmp_path / "videos").glob("*.mp4")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames > 4 * 700  # (an untrained agent loses 0-21 in about 760 steps)
