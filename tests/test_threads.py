"""Threads: numpy's BLAS runs on one thread while an agent trains and evaluates
(rlkit.base.threads), its pool would otherwise spin against torch's threads on the same cores;
and `rlkit train` without torch_threads measures torch's count on the machine, once per CPU,
torch and config (rlkit.agent.calibration)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np  # noqa: F401  (numpy's BLAS loaded)
import threadpoolctl
import torch
import yaml
from safetensors.torch import load_file

import agents
from rlkit.agent.calibration import choose_threads, workload_key


def _numpy_blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


def test_numpy_blas_is_single_threaded_inside_learn_and_evaluate_only():
    assert _numpy_blas_threads(), "numpy's BLAS not found"
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # as a user's would be
        torch_threads = torch.get_num_threads()
        agent = agents.DQN(env="CartPole-v1", learning_starts=50, batch_size=16,
                           network={"hidden_sizes": [16]})  # fmt: skip
        inside: list[list[int]] = []
        agent.learn(200, callback=lambda a: inside.append(_numpy_blas_threads()),
                    callback_interval=50)  # fmt: skip
        assert inside and all(threads == [1] * len(threads) for threads in inside), inside
        assert torch.get_num_threads() == torch_threads  # torch's own pool untouched
        assert _numpy_blas_threads() == [2] * len(_numpy_blas_threads())  # restored after

        seen = []
        policy = agent._greedy_policy()

        def watching(obs):
            seen.append(_numpy_blas_threads())
            return policy(obs)

        agent._greedy_policy = lambda: watching
        agent.evaluate(2)
        assert seen and all(threads == [1] * len(threads) for threads in seen)
        assert _numpy_blas_threads() == [2] * len(_numpy_blas_threads())


# ---------------------------------------------------------------------- torch's thread count

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--steps", "600", "--no-progress", "--set", "learning_starts=100", "--set", "train_freq=16",
    "--set", "gradient_steps=4", "--set", "network.hidden_sizes=[32,32]",
    "--set", "eval_interval=300", "--set", "eval_episodes=2",
]  # fmt: skip


def _train(tmp_path: Path, run: str, *extra: str) -> subprocess.CompletedProcess:
    # Two OpenMP threads (the suite runs on one: tests/conftest.py), the cache in tmp_path.
    env = {**os.environ, "OMP_NUM_THREADS": "2", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", *extra, "--run-dir", str(tmp_path / run)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def test_choose_threads_takes_more_only_when_clearly_faster():
    assert choose_threads({1: 1.0, 2: 0.9}) == 1  # 1.11x: not worth a busy core
    assert choose_threads({1: 1.0, 2: 0.7}) == 2  # 1.43x
    assert choose_threads({1: 1.0, 2: 1.2}) == 1
    assert choose_threads({1: 2.0, 2: 1.0, 4: 1.5}) == 2
    assert choose_threads({1: 1.0, 2: 0.8}, margin=1.2) == 2


def test_the_workload_key_ignores_the_seed_and_evaluation_but_not_the_sizes():
    config = agents.DQNConfig().to_dict()
    key = workload_key("dqn", config)
    assert workload_key("dqn", dict(config, seed=7, eval_interval=100)) == key
    assert workload_key("dqn", dict(config, batch_size=256)) != key
    assert workload_key("ppo", config) != key


def test_rlkit_train_measures_its_threads_once_records_them_and_keeps_its_run(tmp_path):
    config = "configs/dqn_cartpole.yaml"
    first = _train(tmp_path, "a", config, *SMALL)
    assert first.returncode == 0, first.stderr
    line = next(x for x in first.stderr.splitlines() if "torch threads" in x)
    assert "measured per env step" in line, line
    threads = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["torch_threads"]
    assert threads in (1, 2), line
    cache = json.loads((tmp_path / "cache" / "rlkit" / "threads.json").read_text())
    assert [entry["threads"] for entry in cache.values()] == [threads]

    again = _train(tmp_path, "b", config, *SMALL)  # the cached choice, no second measurement
    assert again.returncode == 0 and "measured before, cached" in again.stderr, again.stderr
    # The measurement does not touch the run: the same agent as with the count given.
    given = _train(tmp_path, "c", config, *SMALL, "--set", f"torch_threads={threads}")
    assert given.returncode == 0 and "torch threads" not in given.stderr, given.stderr
    files = [load_file(tmp_path / run / "agent.safetensors") for run in "abc"]
    for other in files[1:]:
        assert all(torch.equal(files[0][k], other[k]) for k in files[0])
