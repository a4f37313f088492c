"""Threads and precision: numpy's BLAS runs on one thread while an agent trains and evaluates
(rlkit.base.threads), its pool would otherwise spin against torch's threads on the same cores;
torch runs on the run's count in the updates only; `rlkit train` without torch_threads or
matmul_precision measures them on the machine, once per CPU, torch and config
(rlkit.agent.calibration), and never chooses bfloat16 products (rlkit.base.precision)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np  # noqa: F401  (numpy's BLAS loaded)
import pytest
import threadpoolctl
import torch
import yaml
from safetensors.torch import load_file

import agents
from rlkit.agent.calibration import choose, choose_threads, workload_key
from rlkit.base.precision import (
    SHAPES,
    keeps_float32,
    onednn_keeps_float32,
    relative_error,
    torch_precision,
)


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


def test_torch_runs_on_the_run_count_in_updates_and_on_one_thread_elsewhere():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent = agents.A2C(env="CartPole-v1", n_envs=2, n_steps=8,
                           network={"hidden_sizes": [16]})  # fmt: skip
        seen: set[tuple[int, int]] = set()  # (rows through a layer, torch's threads)
        for layer in agent.networks["model"].modules():
            if isinstance(layer, torch.nn.Linear):
                layer.register_forward_hook(
                    lambda m, inputs, out: seen.add((inputs[0].shape[0], torch.get_num_threads()))
                )
        loop_threads = []
        agent.learn(64, callback=lambda a: loop_threads.append(torch.get_num_threads()),
                    callback_interval=16)  # fmt: skip
        assert (16, 2) in seen and (2, 1) in seen, seen  # the update's 16 rows; acting's 2
        assert (16, 1) not in seen and (2, 2) not in seen, seen
        assert loop_threads and set(loop_threads) == {1}
        assert torch.get_num_threads() == 2 and agent.update_threads is None  # put back
        seen.clear()
        agent.evaluate(1, deterministic=False)  # (torch modules; greedy is numpy)
        assert seen and {threads for _, threads in seen} == {1}, seen
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ precision


def test_bfloat16_products_fail_the_float32_check_and_float32_ones_pass():
    generator = torch.Generator().manual_seed(1)
    for rows, inputs, outputs in SHAPES:
        x, w = (
            torch.randn(rows, inputs, generator=generator),
            torch.randn(outputs, inputs, generator=generator),
        )
        exact = x.double() @ w.double().T
        default = relative_error(x @ w.T, exact)
        bfloat16 = relative_error((x.bfloat16() @ w.bfloat16().T).float(), exact)
        assert keeps_float32(default, default)
        assert keeps_float32(relative_error((x.double() @ w.double().T).float(), exact), default)
        assert not keeps_float32(bfloat16, default), (rows, inputs, outputs, bfloat16, default)


def test_onednn_is_medium_only_where_it_keeps_float32_and_never_on_cuda():
    cpu = torch_precision("onednn", torch.device("cpu"))
    assert cpu == ("medium" if onednn_keeps_float32() else "highest")
    assert torch_precision("onednn", torch.device("cuda")) == "highest"
    for setting in ("highest", "high", "medium"):  # the user's own choice, as given
        assert torch_precision(setting, torch.device("cpu")) == setting
    if onednn_keeps_float32():  # then a whole update's products keep float32 too
        x, w = torch.randn(256, 256), torch.randn(256, 256)
        torch.set_float32_matmul_precision("medium")
        try:
            product = x @ w
        finally:
            torch.set_float32_matmul_precision("highest")
        exact = x.double() @ w.double()
        assert keeps_float32(relative_error(product, exact), relative_error(x @ w, exact))


def test_denormals_are_flushed_inside_learn_only():
    def flushed() -> bool:
        return (torch.tensor([1e-39]) * 1.0).item() == 0.0  # a denormal float32 read as zero

    assert not flushed()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flag to flush denormals (not x86 with SSE3)")
    agent = agents.DQN(env="CartPole-v1", learning_starts=10, network={"hidden_sizes": [8]})
    inside = []
    agent.learn(40, callback=lambda a: inside.append(flushed()), callback_interval=10)
    assert inside == [True] * 4
    assert not flushed()


def test_choose_takes_onednn_only_when_clearly_faster():
    seconds = {(1, "highest"): 1.0, (2, "highest"): 0.9, (1, "onednn"): 0.95, (2, "onednn"): 0.5}
    assert choose(seconds) == (2, "onednn")  # 1.8x over highest's best; 2 threads 1.9x
    assert choose({(1, "highest"): 1.0, (2, "highest"): 0.9, (1, "onednn"): 0.95,
                   (2, "onednn"): 0.8}) == (1, "highest")  # 1.05x: not worth it  # fmt: skip
    assert choose({(1, "highest"): 1.0, (2, "highest"): 0.7}) == (2, "highest")
    assert choose({(2, "highest"): 1.0, (2, "onednn"): 0.5}) == (2, "onednn")  # threads given


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
    assert "thread and precision settings on this CPU" in first.stderr  # said before it times
    threads = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["torch_threads"]
    assert threads in (1, 2), line
    cache = json.loads((tmp_path / "cache" / "rlkit" / "threads.json").read_text())
    assert [entry["threads"] for entry in cache.values() if "threads" in entry] == [threads]
    assert any("oneDNN float32" in key for key in cache)  # checked once per machine

    again = _train(tmp_path, "b", config, *SMALL)  # the cached choice, no second measurement
    assert again.returncode == 0 and "measured before, cached" in again.stderr, again.stderr
    assert "thread and precision settings" not in again.stderr
    recorded = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    precision = recorded["matmul_precision"]
    assert precision in ("highest", "onednn") and f"matmul_precision {precision}" in line
    assert (precision == "onednn") <= onednn_keeps_float32()
    # The measurement does not touch the run: the same agent as with both given.
    given = _train(tmp_path, "c", config, *SMALL, "--set", f"torch_threads={threads}",
                   "--set", f"matmul_precision={precision}")  # fmt: skip
    assert given.returncode == 0 and "torch threads" not in given.stderr, given.stderr
    files = [load_file(tmp_path / run / "agent.safetensors") for run in "abc"]
    for other in files[1:]:
        assert all(torch.equal(files[0][k], other[k]) for k in files[0])


def test_a_config_that_cannot_train_fails_in_one_line_before_any_timing(tmp_path):
    """With threads to measure (two OpenMP threads), an agent that cannot be built for its env
    is the one line of a user error: nothing is timed or announced first, and no run folder is
    left behind."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: dqn\nenv: Pendulum-v1\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", str(bad)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DQN needs a Discrete action space" in lines[0], result.stderr
    assert not list(tmp_path.glob("runs/*"))
