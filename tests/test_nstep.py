import numpy as np
import pytest

from rlkit.data.nstep import NStepCollector, discounted_sum


def test_discounted_sum():
    assert discounted_sum([1.0, 2.0, 3.0], 0.5) == 1.0 + 0.5 * 2.0 + 0.25 * 3.0
    assert discounted_sum([], 0.9) == 0.0


def _reference(rewards, ends, n, gamma):
    """Brute force for one env: the n-step transition starting at every step t."""
    out = []
    for t in range(len(rewards)):
        window = []
        for k in range(t, min(t + n, len(rewards))):
            window.append(k)
            if ends[k] != "":
                break
        if len(window) < n and ends[window[-1]] == "":
            continue  # the trajectory stops before this window completes
        last = window[-1]
        out.append((t, discounted_sum([rewards[k] for k in window], gamma), last + 1,
                    ends[last] == "term", ends[last] == "trunc", gamma ** len(window)))  # fmt: skip
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_collector_matches_brute_force_across_episode_ends(n):
    gamma, steps, n_envs = 0.9, 60, 2
    rng = np.random.default_rng(n)
    rewards = rng.normal(size=(steps, n_envs)).round(2)
    ends = rng.choice(["", "", "", "", "term", "trunc"], size=(steps, n_envs))
    # The observation encodes time and copy: obs = 10 t + i.
    obs = (10 * np.arange(steps + 1)[:, None] + np.arange(n_envs)).astype(np.float32)
    collector = NStepCollector(n, gamma, n_envs)
    got = {i: [] for i in range(n_envs)}
    for t in range(steps):
        ready = collector.add(
            obs[t][:, None], np.full(n_envs, t), rewards[t], obs[t + 1][:, None],
            ends[t] == "term", ends[t] == "trunc",
        )  # fmt: skip
        for o, _, ret, next_o, term, trunc, discount in zip(*(ready or []), strict=True):
            t0, env = divmod(int(o[0]), 10)
            got[env].append((t0, ret, int(next_o[0]) // 10, term, trunc, discount))
    for i in range(n_envs):
        expected = _reference(list(rewards[:, i]), list(ends[:, i]), n, gamma)
        actual = sorted(got[i])
        assert len(actual) == len(expected)
        for (t, ret, nxt, term, trunc, disc), (t2, ret2, nxt2, term2, trunc2, disc2) in zip(
            expected, actual, strict=True
        ):
            assert (t, nxt, term, trunc) == (t2, nxt2, term2, trunc2)
            assert ret == pytest.approx(ret2, rel=1e-5) and disc == pytest.approx(disc2, rel=1e-6)


def test_truncated_episode_bootstraps_with_shorter_discount():
    collector = NStepCollector(3, 0.5, 1)
    assert collector.add(np.zeros((1, 1)), [0], [1.0], np.ones((1, 1)), [False], [False]) is None
    ready = collector.add(np.ones((1, 1)), [1], [2.0], np.full((1, 1), 9.0), [False], [True])
    _, actions, returns, next_obs, terminated, truncated, discounts = ready
    assert actions.tolist() == [0, 1]
    assert returns.tolist() == [1.0 + 0.5 * 2.0, 2.0]
    assert next_obs[:, 0].tolist() == [9.0, 9.0]  # both bootstrap from the real last observation
    assert not terminated.any() and truncated.all()
    assert discounts.tolist() == [0.25, 0.5]


def test_terminated_episode_does_not_bootstrap_and_next_episode_starts_clean():
    collector = NStepCollector(3, 0.5, 1)
    collector.add(np.zeros((1, 1)), [0], [1.0], np.ones((1, 1)), [False], [False])
    ready = collector.add(np.ones((1, 1)), [1], [1.0], np.full((1, 1), 9.0), [True], [True])
    assert ready[4].all() and not ready[5].any()  # terminated wins over a same-step truncation
    # A new episode: nothing from the old one leaks into its windows.
    assert collector.add(np.zeros((1, 1)), [5], [3.0], np.ones((1, 1)), [False], [False]) is None
