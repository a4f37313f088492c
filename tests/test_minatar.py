"""MinAtar (envs/minatar.py): the five games registered as gymnasium envs, seeded and exactly
restorable from rlkit's env state; a one-line install hint without the package; the shipped
configs run through `rlkit train`. The learning claims are in benchmarks (docs/results.md)."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.minatar import GAMES
from envs.state import get_state, set_state
from rlkit.base.errors import EnvError

pytest.importorskip("minatar")

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"MinAtar/{name}-{version}" for name in GAMES for version in ("v0", "v1")]


@pytest.mark.parametrize("env_id", IDS)
def test_each_game_is_a_checked_gymnasium_env_of_boolean_channels(env_id):
    env = gym.make(env_id).unwrapped
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == bool and obs.shape[:2] == (10, 10)
    assert env.action_space.n == (6 if env_id.endswith("v0") else len(env.action_set))
    frame = gym.make(env_id, render_mode="rgb_array")
    frame.reset(seed=0)
    assert frame.render().shape == (160, 160, 3)


def _play(vector_env, actions):
    out = []
    for action in actions:
        obs, rewards, terminated, truncated, _ = vector_env.step(action)
        out.append((obs.copy(), rewards.copy(), terminated.copy(), truncated.copy()))
    return out


@pytest.mark.parametrize("game", list(GAMES))
def test_a_restored_env_plays_the_same_game_on(game):
    # Asterix, Freeway and Seaquest keep their objects in nested lists, every game a legacy
    # RandomState, and the sticky actions draw from gymnasium's generator.
    env_id = f"MinAtar/{game}-v1"
    rng = np.random.default_rng(0)
    n = gym.make(env_id).action_space.n
    before, after = rng.integers(n, size=(300, 2)), rng.integers(n, size=(300, 2))
    original = envs.make(env_id, n_envs=2, seed=3, keep_images=True)
    _play(original, before)
    tensors, data = get_state(original)
    expected = _play(original, after)
    restored = envs.make(env_id, n_envs=2, seed=99, keep_images=True)
    set_state(restored, tensors, data)
    got = _play(restored, after)
    if game != "Freeway":  # (whose episodes last 2,500 steps)
        assert any(step[2].any() for step in expected)  # episodes ended on the way
    for a, b in zip(expected, got, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)


def test_the_same_seed_plays_the_same_episode():
    runs = []
    for _ in range(2):
        env = envs.make("MinAtar/Breakout-v1", n_envs=1, seed=7, keep_images=True)
        runs.append(_play(env, [[i % 3] for i in range(200)]))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(*runs, strict=True))


def test_without_the_package_the_error_names_the_install(monkeypatch):
    for module in [m for m in sys.modules if m == "minatar" or m.startswith("minatar.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "minatar", None)  # import minatar now fails
    with pytest.raises(EnvError) as error:
        envs.make("MinAtar/Breakout-v1")
    assert str(error.value) == (
        "MinAtar/Breakout-v1 needs the minatar extra: pip install 'rlkit[minatar]'"
    )


@pytest.mark.parametrize("config", ["dqn_minatar_breakout", "ppo_minatar_breakout"])
def test_the_shipped_configs_train_and_save(tmp_path, config):
    run = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", f"configs/{config}.yaml", "--steps", "600",
         "--set", "learning_starts=200" if config.startswith("dqn") else "n_steps=32",
         "--set", "eval_interval=300", "--set", "eval_episodes=2",
         "--run-dir", str(tmp_path / "run"), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "agent.safetensors").exists()
    assert "greedy mean return" in run.stderr
