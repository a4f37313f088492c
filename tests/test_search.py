"""The `search:` block (rlkit.experiments.search) and the scores of `rlkit tune`
(rlkit.experiments.tune): parsing, the one-line errors, drawing values through a real Optuna
trial, and the score arithmetic by hand."""

import math

import optuna
import pytest

from rlkit.base.errors import ConfigError
from rlkit.experiments.search import SearchSpace
from rlkit.experiments.tune import last_third_mean, read_setup, trial_score

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SPACE = {
    "optimizer.lr": {"log_uniform": [1.0e-5, 1.0e-2]},
    "network.hidden_sizes": {"choice": [[64, 64], [256, 256]]},
    "gamma": {"one_minus_log_uniform": [1.0e-3, 0.05]},
    "n_epochs": {"int": [4, 20]},
    "gae_lambda": {"uniform": [0.8, 1.0]},
    "network.activation": {"choice": ["tanh", "relu"]},
}


def test_values_drawn_through_optuna_lie_in_their_ranges():
    space = SearchSpace.parse(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial)
        assert 1e-5 <= values["optimizer.lr"] <= 1e-2
        assert values["network.hidden_sizes"] in ([64, 64], [256, 256])
        assert 0.95 <= values["gamma"] <= 0.999
        assert isinstance(values["n_epochs"], int) and 4 <= values["n_epochs"] <= 20
        assert 0.8 <= values["gae_lambda"] <= 1.0
        # What the study stored reads back as the same config values.
        assert space.values_of(trial.params) == values
        assert trial.params["1-gamma"] == pytest.approx(1 - values["gamma"])
        seen.add(tuple(values["network.hidden_sizes"]))
        study.tell(trial, 0.0)
    assert seen == {(64, 64), (256, 256)}


def test_log_uniform_covers_the_decades_evenly():
    space = SearchSpace.parse({"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    draws = [space.suggest(study.ask())["optimizer.lr"] for _ in range(2000)]
    per_decade = [sum(10.0**-k <= x < 10.0 ** (1 - k) for x in draws) for k in range(1, 5)]
    assert all(400 <= n <= 600 for n in per_decade), per_decade  # 500 each if log-uniform


@pytest.mark.parametrize(
    "block, words",
    [
        ([], "expected a mapping of dotted config keys"),
        ({}, "expected a mapping of dotted config keys"),
        ({"lr": 0.1}, "expected one distribution"),
        ({"lr": {"log_uniform": [1, 2], "uniform": [1, 2]}}, "expected one distribution"),
        ({"lr": {"loguniform": [1e-4, 1e-2]}}, "unknown distribution 'loguniform'"),
        ({"lr": {"loguniform": [1e-4, 1e-2]}}, "did you mean 'log_uniform'"),
        ({"lr": {"gaussian": [0, 1]}}, "unknown distribution 'gaussian'"),
        ({"lr": {"log_uniform": [1e-2, 1e-4]}}, "bounds must be low < high"),
        ({"lr": {"uniform": [0.5, 0.5]}}, "bounds must be low < high"),
        ({"lr": {"log_uniform": [0, 1]}}, "log_uniform needs low > 0"),
        ({"lr": {"log_uniform": [1e-4]}}, "expects [low, high]"),
        ({"lr": {"log_uniform": ["a", 1]}}, "expects [low, high]"),
        ({"lr": {"uniform": [0, "inf"]}}, "expects [low, high]"),
        ({"n": {"int": [1.5, 4]}}, "int expects integer bounds"),
        ({"gamma": {"one_minus_log_uniform": [0.01, 2]}}, "bounds must be in (0, 1]"),
        ({"x": {"choice": []}}, "choice expects a non-empty list"),
        ({"x": {"choice": "ab"}}, "choice expects a non-empty list"),
        ({"x": {"choice": [1, 1]}}, "lists a value twice"),
        ({"a..b": {"uniform": [0, 1]}}, "is not a dotted config key"),
    ],
)
def test_malformed_blocks_are_refused_naming_the_key(block, words):
    with pytest.raises(ConfigError) as error:
        SearchSpace.parse(block)
    assert words in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_1_1_exponent_strings_are_numbers():
    (dimension,) = SearchSpace.parse({"optimizer.lr": {"log_uniform": ["1e-5", "1e-2"]}}).dimensions
    assert (dimension.low, dimension.high) == (1e-5, 1e-2)


def _config(tmp_path, search: str, extra: str = "") -> str:
    path = tmp_path / "tune.yaml"
    path.write_text(
        "agent: ppo\nenv: CartPole-v1\nn_envs: 2\nn_steps: 32\nbatch_size: 32\n"
        f"eval_interval: 256\ntotal_steps: 1024\n{extra}search:\n{search}"
    )
    return str(path)


@pytest.mark.parametrize(
    "search, words",
    [
        ("  optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}\n",
         "search.optimizer.learning_rate: the ppo agent has no such key"),
        ("  clip_rang: {uniform: [0.1, 0.3]}\n", "did you mean 'clip_range'"),
        ("  gamma: {uniform: [0.9, 1.5]}\n", "search.gamma = 1.5 (an end of its range)"),
        ("  batch_size: {int: [0, 64]}\n", "search.batch_size = 0"),
        ("  seed: {int: [0, 9]}\n", "seed is a setting of the run"),
        ("  total_steps: {int: [1000, 9000]}\n", "use --steps"),
        ("  network.hidden_sizes: {choice: [[64], 64]}\n", "search.network.hidden_sizes = 64"),
    ],
)  # fmt: skip
def test_keys_and_ranges_the_agent_refuses_fail_before_any_trial(tmp_path, search, words):
    with pytest.raises(ConfigError) as error:
        read_setup(_config(tmp_path, search), [], 2, None)
    assert words in str(error.value)


def test_setup_reads_the_config_without_its_search_block(tmp_path):
    setup = read_setup(_config(tmp_path, "  optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n",
                               "seed: 7\n"), ["gamma=0.9"], 3, 512)  # fmt: skip
    assert setup.seeds == [7, 8, 9] and setup.steps == 512 and setup.evaluations == 2
    assert "search" not in setup.config and setup.config["gamma"] == 0.9
    trial = setup.trial_config({"optimizer.lr": 0.003}, steps=setup.steps)
    assert trial["optimizer"] == {"lr": 0.003} and trial["total_steps"] == 512
    assert setup.trial_config({})["total_steps"] == 1024  # best.yaml keeps the config's budget


def test_tune_needs_a_search_block_and_periodic_evaluation(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("agent: ppo\nenv: CartPole-v1\neval_interval: 256\n")
    with pytest.raises(ConfigError, match="has no search: block"):
        read_setup(path, [], 1, None)
    search = "  optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}\n"
    with pytest.raises(ConfigError, match="set eval_interval > 0"):
        read_setup(_config(tmp_path, search), ["eval_interval=0"], 1, None)
    with pytest.raises(ConfigError, match="longer than a trial"):
        read_setup(_config(tmp_path, search), [], 1, 100)


def test_last_third_mean_by_hand():
    # Evaluations at 1k..6k steps: the last third of the run is steps >= 4k.
    evaluations = [(1000, 10.0), (2000, 20.0), (3000, 30.0), (4000, 40.0), (5000, 50.0),
                   (6000, 90.0)]  # fmt: skip
    assert last_third_mean(evaluations) == pytest.approx((40 + 50 + 90) / 3)
    assert last_third_mean(evaluations[:3]) == pytest.approx((20 + 30) / 2)  # >= 2k of 3k
    assert last_third_mean([(500, 7.0)]) == 7.0
    with pytest.raises(ValueError):
        last_third_mean([])


def test_trial_score_is_the_iqm_over_seeds():
    per_seed = [[(100, v)] for v in (0.0, 10.0, 20.0, 30.0, 1000.0, 40.0, 50.0, 60.0)]
    # IQM of 8 scores: cut 2 off each end of 0,10,20,30,40,50,60,1000 -> mean of 20..50.
    assert trial_score(per_seed) == pytest.approx(35.0)
    assert trial_score([[(100, 5.0)], [(100, 7.0)]]) == pytest.approx(6.0)
    assert math.isfinite(trial_score([[(100, -3.0), (200, 1.0)]]))
