import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents import DQN
from rlkit.base.errors import EnvError


def test_make_returns_seeded_vector_env_with_episode_statistics():
    a, b = envs.make("CartPole-v1", n_envs=3), envs.make("CartPole-v1", n_envs=3)
    assert a.num_envs == 3
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    assert np.array_equal(obs_a, obs_b)
    for _ in range(60):
        out_a = a.step(np.array([0, 1, 0]))
        out_b = b.step(np.array([0, 1, 0]))
        assert np.array_equal(out_a[0], out_b[0])
    assert "episode" in out_a[4] or a.episode_count > 0


@pytest.mark.parametrize(
    ("env_id", "fragment"),
    [
        ("CartPole-v9", "CartPole-v9"),
        ("Cartpole-v1", "Did you mean: `CartPole`"),
        ("", "gymnasium environment id"),
    ],
)
def test_unknown_env_ids(env_id, fragment):
    with pytest.raises(EnvError, match=fragment):
        envs.make(env_id)


def test_bad_n_envs():
    with pytest.raises(EnvError, match="n_envs must be an integer >= 1"):
        envs.make("CartPole-v1", n_envs=0)


def test_same_step_autoreset_gives_the_real_final_observation():
    env = envs.make("CartPole-v1", n_envs=2)
    env.reset(seed=0)
    seen_end = 0
    for _ in range(200):
        next_obs, _, terminated, truncated, infos = env.step(np.array([0, 0]))  # falls quickly
        real = envs.real_next_obs(next_obs, infos)
        for i in range(2):
            if terminated[i] or truncated[i]:
                seen_end += 1
                # next_obs is the new episode's first observation (small values) ...
                assert np.all(np.abs(next_obs[i]) <= 0.05)
                # ... while the real next observation is the terminal one, out of bounds.
                assert abs(real[i][0]) > 2.4 or abs(real[i][2]) > 0.2095
            else:
                assert np.array_equal(real[i], next_obs[i])
    assert seen_end >= 10


@pytest.mark.parametrize("n_envs", [1, 3])
def test_dqn_stores_only_real_transitions_across_episode_boundaries(n_envs):
    # Episodes end by termination (pole falls) and by truncation (a 25-step limit). The buffer
    # must never hold a "transition" from one episode's last state to the next one's first.
    if "rlkit-test/CartPole25Steps-v0" not in gym.registry:
        gym.register(
            "rlkit-test/CartPole25Steps-v0",
            entry_point="gymnasium.envs.classic_control:CartPoleEnv",
            max_episode_steps=25,
        )
    agent = DQN(
        env="rlkit-test/CartPole25Steps-v0",
        n_envs=n_envs,
        learning_starts=10**9,
        buffer_size=2_000,
        exploration_initial_eps=1.0,
        exploration_final_eps=1.0,
        seed=3,
    )
    agent.learn(1_200)
    buf = agent.buffer
    n = len(buf)
    # The buffer lives on the training device (CUDA where there is one).
    obs, next_obs = buf.obs[:n].cpu().numpy(), buf.next_obs[:n].cpu().numpy()
    terminated, truncated = buf.terminated[:n].cpu().numpy(), buf.truncated[:n].cpu().numpy()
    assert terminated.any() and truncated.any()
    for i in range(n_envs):
        rows = np.arange(i, n, n_envs)  # the vector env writes its copies side by side
        ended = terminated[rows] | truncated[rows]
        # Inside an episode, each transition starts where the previous one led.
        cont = ~ended[:-1]
        assert np.array_equal(next_obs[rows][:-1][cont], obs[rows][1:][cont])
        # At an episode end the stored next_obs is the real last state, not the reset state.
        end_rows = rows[:-1][ended[:-1]]
        assert not np.any(np.all(next_obs[end_rows] == obs[end_rows + n_envs], axis=1))
        term_rows = rows[terminated[rows]]
        out_of_bounds = (np.abs(next_obs[term_rows, 0]) > 2.4) | (
            np.abs(next_obs[term_rows, 2]) > 0.2095
        )
        assert out_of_bounds.all()
    # Truncated episodes were cut at 25 steps while the pole was still up.
    trunc_rows = np.flatnonzero(truncated & ~terminated)
    assert np.all(np.abs(next_obs[trunc_rows, 2]) <= 0.2095)


@pytest.mark.parametrize(
    ("env_id", "n_envs"), [("CartPole-v1", 1), ("CartPole-v1", 3), ("rlkit/Catch-v0", 2)]
)
def test_lean_vector_env_steps_exactly_like_gymnasiums(env_id, n_envs):
    # envs.vector's SyncVectorEnv and RecordEpisodeStatistics take a shorter path than
    # gymnasium's; every observation, reward, flag, final observation and episode statistic
    # must still be the same, over many episode ends.
    from gymnasium.vector import AutoresetMode
    from gymnasium.vector import SyncVectorEnv as GymSync
    from gymnasium.wrappers.vector import RecordEpisodeStatistics as GymStats

    from envs.vector import RecordEpisodeStatistics, SyncVectorEnv

    def build(sync_cls, stats_cls):
        thunks = [envs.make_env(env_id) for _ in range(n_envs)]
        env = stats_cls(sync_cls(thunks, autoreset_mode=AutoresetMode.SAME_STEP))
        env.reset(seed=5)
        return env

    ours, theirs = build(SyncVectorEnv, RecordEpisodeStatistics), build(GymSync, GymStats)
    assert ours.env._direct  # the lean path is the one under test
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(600):
        actions = rng.integers(0, ours.single_action_space.n, n_envs)
        a, b = ours.step(actions), theirs.step(actions)
        for x, y in zip(a[:4], b[:4], strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
        infos_a, infos_b = a[4], b[4]
        assert set(infos_a) == set(infos_b)
        if "final_obs" in infos_b:
            assert np.array_equal(infos_a["_final_obs"], infos_b["_final_obs"])
            for i in np.flatnonzero(infos_b["_final_obs"]):
                assert np.array_equal(infos_a["final_obs"][i], infos_b["final_obs"][i])
        if "episode" in infos_b:
            episodes += int(infos_b["_episode"].sum())
            for key in ("r", "l"):
                assert np.array_equal(infos_a["episode"][key], infos_b["episode"][key])
    assert episodes >= 10
    assert ours.episode_count == theirs.episode_count
    assert list(ours.return_queue) == list(theirs.return_queue)
    assert list(ours.length_queue) == list(theirs.length_queue)
    assert np.array_equal(ours.episode_returns, theirs.episode_returns)


def _module_env(folder, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body)


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The current folder of a user with their own env module in it, not on sys.path (as
    when `rlkit` runs as a console script); sys.path and sys.modules restored afterwards."""
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


def test_an_env_id_with_a_module_imports_it_from_the_current_folder(user_folder):
    import sys

    _module_env(user_folder, "user_cartpoles", (
        "import gymnasium as gym\n"
        "gym.register('UserCartPole-v0', entry_point="
        "'gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=5)\n"
    ))  # fmt: skip
    env = envs.make("user_cartpoles:UserCartPole-v0", n_envs=2, seed=0)
    env.reset(seed=0)
    lengths = set()
    for _ in range(100):
        *_, infos = env.step(np.array([0, 1]))
        if "episode" in infos:
            lengths.update(infos["episode"]["l"][infos["_episode"]].tolist())
    assert lengths == {5}  # its own time limit: the registered env, not gymnasium's CartPole
    assert sys.path[0] == str(user_folder)
    assert envs.env_module_folder("user_cartpoles:UserCartPole-v0") == str(user_folder)
    assert envs.env_module_folder("CartPole-v1") is None


@pytest.mark.parametrize(
    ("module_text", "env_id", "message"),
    [
        (None, "no_such_user_module:X-v0",
         "env 'no_such_user_module:X-v0': no module named 'no_such_user_module' in the current "
         "folder and PYTHONPATH"),
        ("import gymnasium\nx = 1 / 0\n", "broken_user_envs:X-v0",
         "env 'broken_user_envs:X-v0': importing 'broken_user_envs' failed at "
         "broken_user_envs.py, line 2: ZeroDivisionError: division by zero"),
        ("X = 1\n", "quiet_user_envs:NotRegistered-v0",
         "unknown environment 'quiet_user_envs:NotRegistered-v0': "),
    ],
)  # fmt: skip
def test_a_module_env_that_cannot_be_made_is_one_line(user_folder, module_text, env_id, message):
    if module_text is not None:
        _module_env(user_folder, env_id.split(":")[0], module_text)
    with pytest.raises(EnvError) as raised:
        envs.check_env_id(env_id)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("env_id", "size"),
    [("FrozenLake-v1", 16), ("CliffWalking-v1", 48), ("Blackjack-v1", 32 + 11 + 2)],
)
def test_observations_that_are_not_a_flat_box_arrive_flat_as_sb3_prepares_them(env_id, size):
    env = envs.make(env_id, n_envs=2, seed=0)
    space = env.single_observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (size,)
    assert space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (2, size)
    assert set(np.unique(obs)) <= {0.0, 1.0}  # one-hot (per part, for Blackjack's tuple)
    raw = gym.make(env_id)
    first, _ = raw.reset(seed=0)
    assert np.array_equal(obs[0], gym.spaces.flatten(raw.observation_space, first))


def test_a_flat_box_env_is_not_wrapped():
    env = envs.make_env("CartPole-v1")()
    assert not isinstance(env, gym.ObservationWrapper)
    assert env.observation_space.shape == (4,)


def test_episodes_of_an_env_without_time_limit_end_in_evaluation():
    """CliffWalking has no time limit; a policy walking into the wall never ends an episode,
    and an evaluation would never end without the cap; with env_kwargs' own limit, that one."""
    from rlkit.agent.evaluation import evaluate

    def up(obs):
        return np.zeros(len(obs), dtype=np.int64)  # action 0: up, from the start: the wall

    assert not envs.has_time_limit("CliffWalking-v1")
    with pytest.warns(UserWarning, match="CliffWalking-v1 has no time limit: evaluation epi"):
        result = evaluate(up, "CliffWalking-v1", 3, seed=0)
    assert result.lengths == [envs.UNLIMITED_EPISODE_CAP] * 3
    assert result.returns == [-float(envs.UNLIMITED_EPISODE_CAP)] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own limit: no word about the cap
        limited = evaluate(up, "CliffWalking-v1", 2, env_kwargs={"max_episode_steps": 7})
    assert limited.lengths == [7, 7]
