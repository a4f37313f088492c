"""Periodic evaluation during training (validation seeds), the best agent, stop_at_return, and
the determinism of a run: every agent, through the one shared run loop."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import agents
import envs
from rlkit.agent.evaluation import (
    EVAL_ENVS,
    ValidationRecord,
    overlapping_seed_sets,
    seed_for_testing,
    seed_for_validation,
)
from rlkit.base.errors import ConfigError
from rlkit.io.recorder import RunMonitor

from .helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "dqn": dict(
        learning_starts=200, buffer_size=5_000, batch_size=32, train_freq=2,
        target_update_interval=100, network={"hidden_sizes": [32, 32]}, log_interval=100,
    ),
    "ppo": dict(n_envs=4, n_steps=64, batch_size=64, n_epochs=2, network={"hidden_sizes": [32]}),
    "a2c": dict(n_envs=4, n_steps=5, network={"hidden_sizes": [32]}),
    "reinforce": dict(n_envs=2, batch_episodes=2, network={"hidden_sizes": [32]}),
}  # fmt: skip


def make(name: str, seed: int = 0, **overrides):
    config = {**SMALL[name], **overrides}
    return agents.agent_class(name)(env="CartPole-v1", seed=seed, **config)


def first_observations(seed: int, n_envs: int) -> np.ndarray:
    vector_env = envs.make("CartPole-v1", n_envs=n_envs)
    obs, _ = vector_env.reset(seed=seed)
    vector_env.close()
    return obs


# ----------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", [0, 1, 7, 19_999, 123_456])
@pytest.mark.parametrize("n_envs", [1, 8, 64])
def test_default_validation_seeds_overlap_neither_training_nor_test_seeds(seed, n_envs):
    assert overlapping_seed_sets(seed, n_envs, None, 20) is None
    first_validation, first_test = seed_for_validation(seed, None), seed_for_testing(seed)
    validation = set(range(first_validation, first_validation + EVAL_ENVS))
    assert validation.isdisjoint(range(seed, seed + n_envs))
    assert validation.isdisjoint(range(first_test, first_test + EVAL_ENVS))


def test_validation_episodes_start_from_states_training_never_saw():
    seed, n_envs = 3, 8
    training = first_observations(seed, n_envs)
    validation = first_observations(seed_for_validation(seed, None), EVAL_ENVS)
    test = first_observations(seed_for_testing(seed), EVAL_ENVS)
    starts = {tuple(row) for row in training}
    assert starts.isdisjoint(tuple(row) for row in validation)
    assert starts.isdisjoint(tuple(row) for row in test)
    assert {tuple(row) for row in validation}.isdisjoint(tuple(row) for row in test)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(seed=5, n_envs=4, eval_seed=7), "overlaps the training env seeds 5-8"),
        (dict(seed=5, eval_seed=10_003), "overlaps the test env seeds 10005-10012"),
        (dict(eval_interval=-1), "eval_interval must be >= 0"),
        (dict(eval_interval=100, eval_episodes=0), "needs eval_episodes >= 1"),
        (dict(stop_at_return=400.0), "stop_at_return needs periodic evaluation"),
        (dict(eval_interval=100, stop_at_return=float("nan")), "stop_at_return: expected a finite"),
        (dict(eval_interval=100, stop_at_return=1.0, stop_patience=0), "stop_patience must be"),
    ],
)
def test_bad_evaluation_settings_are_refused(overrides, fragment):
    for name in ("dqn", "ppo"):
        with pytest.raises(ConfigError, match=fragment):
            agents.agent_class(name)(env="CartPole-v1", device="cpu", **overrides)


def test_validation_record_keeps_the_first_best_and_counts_streaks():
    record = ValidationRecord()
    assert record.update(10.0, 100, stop_at_return=20.0)
    assert record.update(25.0, 200, stop_at_return=20.0) and record.streak == 1
    assert record.update(25.0, 300, stop_at_return=20.0)  # a tie goes to the newer agent
    assert record.streak == 2 and record.best_step == 300
    assert not record.update(5.0, 400, stop_at_return=20.0) and record.streak == 0
    assert record.best_step == 300 and record.best_mean == 25.0
    copy = ValidationRecord()
    copy.load_state_dict(json.loads(json.dumps(record.state_dict())))
    assert copy == record


# ----------------------------------------------------------------------------- during training


@pytest.mark.parametrize("name", list(SMALL))
def test_evaluations_are_logged_and_the_best_agent_is_the_one_evaluated_best(tmp_path, name):
    interval = 500
    agent = make(name, seed=2, eval_interval=interval, eval_episodes=4)
    weights_at = {}

    def snapshot(a):  # runs after the evaluation of the same step
        weights_at[a.global_step] = {k: v.clone() for k, v in a._state_tensors().items()}

    agent.learn(2_000, run_dir=tmp_path, callback=snapshot, callback_interval=interval)
    scalars = read_scalars(tmp_path)
    means = scalars["eval/mean_return"]
    steps = [step for step, _ in means]
    assert len(steps) == 4 and steps[-1] == agent.global_step
    assert steps == sorted(set(steps))
    for tag in ("eval/std_return", "eval/mean_length", "eval/best_mean_return"):
        assert [step for step, _ in scalars[tag]] == steps
    assert [step for step, _ in scalars["time/eval_seconds"]] == steps
    # CartPole: return = episode length.
    assert [v for _, v in means] == pytest.approx([v for _, v in scalars["eval/mean_length"]])

    best_value = max(v for _, v in means)
    best_step = [step for step, v in means if v == best_value][-1]  # the newest of equals
    assert agent.validation.best_step == best_step
    assert agent.validation.best_mean == pytest.approx(best_value)
    best = agents.load(tmp_path / "best_agent.safetensors")
    assert best.global_step == best_step
    assert best.saved_evaluation["mean_return"] == pytest.approx(best_value)
    assert best.saved_evaluation["step"] == best_step
    expected = weights_at[best_step]
    saved = best._state_tensors()
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)


@pytest.mark.parametrize("name", list(SMALL))
def test_evaluating_does_not_change_the_training_run(tmp_path, name):
    """The evaluations draw no random numbers the training would have drawn: a run with them
    trains exactly as one without."""
    plain = make(name, seed=4).learn(1_500, run_dir=tmp_path / "plain")
    evaluated = make(name, seed=4, eval_interval=300, eval_episodes=3, eval_deterministic=False)
    evaluated.learn(1_500, run_dir=tmp_path / "evaluated")
    weights_a, weights_b = plain._state_tensors(), evaluated._state_tensors()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    a, b = read_scalars(tmp_path / "plain"), read_scalars(tmp_path / "evaluated")
    training = [t for t in a if t.startswith(("train/", "rollout/"))]
    assert training and all(a[t] == b[t] for t in training)


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_same_seed_on_the_same_machine_gives_the_same_curves(tmp_path, name):
    runs = []
    for i in range(2):
        agent = make(name, seed=6, eval_interval=400, eval_episodes=3)
        agent.learn(1_600, run_dir=tmp_path / str(i))
        runs.append({t: v for t, v in read_scalars(tmp_path / str(i)).items() if "time/" not in t})
    assert "eval/mean_return" in runs[0] and "rollout/episodic_return" in runs[0]
    assert runs[0] == runs[1]
    other = make(name, seed=7, eval_interval=400, eval_episodes=3)
    other.learn(1_600, run_dir=tmp_path / "other")
    assert (
        read_scalars(tmp_path / "other")["rollout/episodic_return"]
        != runs[0]["rollout/episodic_return"]
    )


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_stop_at_return_stops_after_patience_evaluations_in_a_row(tmp_path, name):
    # An untrained CartPole agent balances ~10-50 steps: a threshold of 5 is met at once.
    agent = make(
        name, seed=1, eval_interval=256, eval_episodes=2, stop_at_return=5.0, stop_patience=3
    )
    agent.learn(20_000, run_dir=tmp_path, checkpoint_interval=5_000)
    means = read_scalars(tmp_path)["eval/mean_return"]
    assert agent.stopped_early and len(means) == 3
    assert agent.global_step == means[-1][0] < 2_000
    assert all(v >= 5.0 for _, v in means)
    # The run ended there: its checkpoint says so, and resuming trains no further.
    resumed = agents.from_checkpoint(tmp_path)
    assert resumed.global_step == agent.global_step
    resumed.learn(resume=True, run_dir=tmp_path)
    assert resumed.global_step == agent.global_step


def test_stop_at_return_waits_for_consecutive_evaluations(tmp_path):
    agent = make("dqn", seed=1, eval_interval=500, eval_episodes=2, stop_at_return=1e6)
    agent.learn(2_000, run_dir=tmp_path)
    assert not agent.stopped_early and agent.global_step == 2_000


def test_evaluation_time_is_left_out_of_steps_per_second(tmp_path):
    monitor = RunMonitor(tmp_path, end_step=2_000)
    monitor.record_scalars({}, 0)
    time.sleep(0.3)  # an evaluation
    monitor.record_evaluation({"eval/mean_return": 1.0}, 1_000, seconds=0.3)
    monitor.record_scalars({}, 1_000)
    monitor.close(1_000)
    (step, sps), *_ = read_scalars(tmp_path)["time/steps_per_second"]
    assert step == 1_000 and sps > 1_000 / 0.1  # counting the 0.3 s, it would be ~3,300


# ----------------------------------------------------------------------------- command line


def rlkit(*args):
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    result = rlkit(
        "train", "configs/ppo_cartpole.yaml", "--run-dir", run_dir, "--steps", "4096",
        "--no-progress", "--set", "eval_interval=1024", "--set", "eval_episodes=3",
        "--set", "torch_threads=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_train_reports_the_final_and_the_best_agent_on_test_seeds(evaluated_run):
    run_dir, result = evaluated_run
    assert (run_dir / "best_agent.safetensors").is_file()
    assert "final agent: greedy mean return" in result.stderr
    assert "best agent (step " in result.stderr and "validation mean" in result.stderr
    scalars = read_scalars(run_dir)
    assert [step for step, _ in scalars["eval/mean_return"]] == [1024, 2048, 3072, 4096]
    assert scalars["test/mean_return"][0][0] == 4096 and "test_best/mean_return" in scalars


@pytest.mark.parametrize("which", ["final", "best"])
def test_eval_agent_final_or_best_says_which_file(evaluated_run, which):
    run_dir, _ = evaluated_run
    result = rlkit("eval", run_dir, "--agent", which, "--episodes", "2", "--json")
    assert result.returncode == 0, result.stderr
    name = {"final": "agent.safetensors", "best": "best_agent.safetensors"}[which]
    data = json.loads(result.stdout)
    assert data["file"] == str(run_dir / name) and data["episodes"] == 2
    assert f"evaluating {run_dir / name}" in result.stderr
    best = agents.load(run_dir / "best_agent.safetensors")
    assert data["step"] == (best.global_step if which == "best" else 4096)


def test_eval_defaults_to_the_final_agent_on_the_test_seeds(evaluated_run):
    run_dir, _ = evaluated_run
    default = json.loads(rlkit("eval", run_dir, "--episodes", "3", "--json").stdout)
    explicit = rlkit("eval", run_dir, "--agent", "final", "--episodes", "3", "--seed", "10001")
    assert default["file"].endswith("/agent.safetensors")  # ppo_cartpole.yaml trains seed 1
    assert f"{default['mean_return']:.2f}" in explicit.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--agent", "bestest"], "invalid choice: 'bestest'"),
        (["--agent", "best", "--episodes", "0"], "--episodes must be at least 1"),
    ],
)
def test_eval_agent_bad_values_are_one_line_errors(evaluated_run, args, fragment):
    run_dir, _ = evaluated_run
    result = rlkit("eval", run_dir, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def test_eval_agent_best_without_a_best_agent_is_a_one_line_error(evaluated_run, tmp_path):
    run_dir, _ = evaluated_run
    for args, fragment in (
        ([tmp_path, "--agent", "best"], "no best_agent.safetensors in"),
        ([run_dir / "agent.safetensors", "--agent", "best"], "is already an agent file"),
    ):
        result = rlkit("eval", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_the_numpy_greedy_policy_of_evaluations_acts_as_act(name):
    agent = make(name, seed=3, device="cpu")
    agent.learn(1_000)
    greedy = agent._greedy_policy()
    assert greedy is not None  # plain MLPs on the CPU evaluate in numpy
    obs = np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32)
    assert np.array_equal(greedy(obs), agent.act(obs, deterministic=True))
