"""rlkit's own environments: gymnasium's checker, seeding, rules, rendering."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the rlkit/ environments)
from envs.games import TicTacToeEnv, winner

GAMES = ["rlkit/TicTacToe-v0", "rlkit/TicTacToeLookahead-v0", "rlkit/Catch-v0"]


@pytest.mark.parametrize("env_id", GAMES)
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_gymnasium_env_checker_passes_without_warnings(env_id, render_mode):
    env = gym.make(env_id, render_mode=render_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def _episode(env_id, seed, actions_seed=0):
    env = gym.make(env_id)
    rng = np.random.default_rng(actions_seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs.copy()]
    while True:
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        trace += [obs.copy(), reward]
        if terminated or truncated:
            return trace


@pytest.mark.parametrize("env_id", GAMES)
def test_same_seed_same_episode(env_id):
    a, b = _episode(env_id, seed=3), _episode(env_id, seed=3)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    others = [_episode(env_id, seed=s) for s in range(4, 12)]
    assert any(
        len(o) != len(a) or not all(np.array_equal(x, y) for x, y in zip(a, o, strict=False))
        for o in others
    )


@pytest.mark.parametrize("env_id", GAMES)
def test_reward_only_at_the_end(env_id):
    for seed in range(20):
        trace = _episode(env_id, seed, actions_seed=seed)
        rewards = trace[2::2]
        assert all(r == 0 for r in rewards[:-1]) and rewards[-1] in (-1.0, 0.0, 1.0)


def test_tictactoe_rules():
    board = np.array([1, 1, 1, 0, -1, -1, 0, 0, 0])
    assert winner(board) == 1 and winner(-board) == -1 and winner(np.zeros(9)) == 0
    env = TicTacToeEnv()
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(4)
    assert obs[4] == 1 and np.sum(obs == -1) == 1 and reward == 0 and not terminated
    taken = int(np.flatnonzero(obs == -1)[0])
    assert info["action_mask"][4] == 0 and info["action_mask"][taken] == 0
    _, reward, terminated, _, info = env.step(taken)  # an occupied cell
    assert (reward, terminated, info["outcome"]) == (-1.0, True, "illegal")


def test_lookahead_opponent_blocks_and_wins():
    env = TicTacToeEnv(opponent="lookahead")
    env.reset(seed=0)
    env.board[:] = [1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert env._opponent_move() == 2  # blocks the agent's row
    env.board[:] = [1, 1, 0, -1, -1, 0, 1, 0, 0]
    assert env._opponent_move() == 5  # its own win comes before a block


def test_lookahead_opponent_is_harder_than_random():
    def losses(env_id):
        env = gym.make(env_id)
        rng = np.random.default_rng(0)
        count = 0
        for seed in range(200):
            obs, _ = env.reset(seed=seed)
            while True:
                legal = np.flatnonzero(obs == 0)
                obs, reward, terminated, _, _ = env.step(int(rng.choice(legal)))
                if terminated:
                    count += reward < 0
                    break
        return count

    assert losses("rlkit/TicTacToeLookahead-v0") > losses("rlkit/TicTacToe-v0") + 20


def test_catch_pays_on_landing():
    env = gym.make("rlkit/Catch-v0")
    obs, _ = env.reset(seed=1)
    grid = obs.reshape(10, 5)
    ball_column = int(np.flatnonzero(grid[0])[0])
    paddle = int(np.flatnonzero(grid[-1])[0])
    steps = 0
    while True:
        action = 1 + int(np.sign(ball_column - paddle))  # follow the ball
        obs, reward, terminated, _, info = env.step(action)
        paddle = int(np.flatnonzero(obs.reshape(10, 5)[-1])[0])
        steps += 1
        if terminated:
            break
    assert steps == 9 and reward == 1.0 and info["outcome"] == "catch"


@pytest.mark.parametrize("env_id", GAMES)
def test_rendering(env_id):
    text_env = gym.make(env_id, render_mode="ansi")
    text_env.reset(seed=0)
    text = text_env.render()
    assert isinstance(text, str) and len(text.splitlines()) >= 3
    image_env = gym.make(env_id, render_mode="rgb_array")
    image_env.reset(seed=0)
    image = image_env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_continuous_catch_moves_by_thirds_of_the_action_range():
    env = gym.make("rlkit/CatchPixelsContinuous-v0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    assert env.action_space.shape == (1,) and env.observation_space.shape == (10, 5, 1)
    for value, move in [(-1.0, -1), (-0.34, -1), (-0.3, 0), (0.3, 0), (0.34, 1), (1.0, 1)]:
        env.reset(seed=2)
        start = env.unwrapped.paddle = 2
        env.step(np.array([value], dtype=np.float32))
        assert env.unwrapped.paddle == start + move, value
