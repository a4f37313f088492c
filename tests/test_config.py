from pathlib import Path

import pytest

from agents import DQN, DQNConfig
from rlkit.base.config import apply_overrides, config_from_dict, load_yaml
from rlkit.base.errors import ConfigError, ConfigTypeError, EnvError, UserError
from rlkit.experiments.run_config import load_run_config


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_config_loads():
    run, cfg = load_run_config("configs/dqn_cartpole.yaml")
    assert run.agent == "dqn" and cfg.env == "CartPole-v1"


def test_yaml_11_exponent_strings_are_numbers(tmp_path):
    # PyYAML reads 1e-3 (no dot) as a string; we accept it as the number the user meant.
    path = write(tmp_path, "agent: dqn\noptimizer: {name: adam, lr: 1e-3}\nbuffer_size: 5e4\n")
    _, cfg = load_run_config(path)
    assert cfg.optimizer.lr == 0.001 and cfg.buffer_size == 50_000


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        ({"gama": 0.9}, ConfigError, "did you mean 'gamma'"),
        ({"network": {"hiden_sizes": [8]}}, ConfigError, "did you mean 'hidden_sizes'"),
        ({"optimizer": {"name": "adam", "betas1": 0.9}}, ConfigError, "did you mean 'betas'"),
        ({"gamma": "high"}, ConfigTypeError, "gamma: expected a number, got str 'high'"),
        ({"batch_size": 32.5}, ConfigTypeError, "batch_size: expected an integer"),
        ({"batch_size": True}, ConfigTypeError, "batch_size: expected an integer, got bool"),
        ({"double_q": "yes"}, ConfigTypeError, "double_q: expected true or false"),
        ({"network": {"hidden_sizes": 64}}, ConfigTypeError, "hidden_sizes: expected a list"),
        ({"network": [64, 64]}, ConfigTypeError, "network: expected a mapping"),
        ({"gamma": 1.5}, ConfigError, "gamma must be in [0, 1], got 1.5"),
        ({"matmul_precision": "low"}, ConfigError, "matmul_precision: unknown value 'low'"),
        ({"gamma": -0.1}, ConfigError, "gamma must be in [0, 1]"),
        (
            {"optimizer": {"lr": -0.1}},
            ConfigError,
            "optimizer.lr must be a finite number > 0, got -0.1",
        ),
        (
            {"optimizer": {"lr": float("nan")}},
            ConfigError,
            "optimizer.lr: expected a finite number, got nan",
        ),
        ({"optimizer": {"name": "adamm"}}, ConfigError, "did you mean 'adam'"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, ConfigError, "Invalid beta parameter at index 1"),
        (
            {"buffer_size": 32, "batch_size": 64},
            ConfigError,
            "batch_size (64) is larger than buffer_size (32)",
        ),
        ({"loss": "hubber"}, ConfigError, "did you mean 'huber'"),
        ({"tau": 0.0}, ConfigError, "tau must be in (0, 1]"),
        ({"exploration_fraction": 2.0}, ConfigError, "exploration_fraction must be in [0, 1]"),
        ({"max_grad_norm": 0.0}, ConfigError, "max_grad_norm must be > 0 or null"),
        ({"env": "CartPole-v9"}, EnvError, "CartPole-v9"),
        ({"env": "Cartpole-v1"}, EnvError, "Did you mean: `CartPole`"),
        (
            {"lr_schedule": {"name": "cosine"}},
            ConfigError,
            "lr_schedule.name: unknown value 'cosine'",
        ),
    ],
)
def test_bad_values_raise_clear_errors(data, error, fragment):
    with pytest.raises(error) as info:
        config_from_dict(DQNConfig, data)
    assert fragment in str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_same_checks_apply_to_python_keyword_arguments():
    with pytest.raises(ConfigError, match="did you mean 'learning_starts'"):
        DQN(env="CartPole-v1", learning_start=10)
    with pytest.raises(ConfigError, match=r"optimizer\.lr must be a finite number > 0"):
        DQN(env="CartPole-v1", optimizer={"name": "adam", "lr": -1})


def test_run_keys_are_suggested_too(tmp_path):
    path = write(tmp_path, "agent: dqn\ntotal_step: 100\n")
    with pytest.raises(ConfigError, match="did you mean 'total_steps'"):
        load_run_config(path)


def test_unknown_agent(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'dqn'"):
        load_run_config(write(tmp_path, "agent: dqnn\n"))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+: expected"):
        load_yaml(write(tmp_path, "agent: dqn\ngamma: [0.9\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_yaml(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(write(tmp_path, "- 1\n- 2\n"))


def test_an_rl_zoo_hyperparameter_file_is_named_as_one(tmp_path):
    zoo = Path(__file__).parent / "fixtures" / "zoo_sac.yml"
    with pytest.raises(ConfigError) as raised:
        load_yaml(zoo)
    assert str(raised.value) == (
        f"{zoo} is an RL Zoo hyperparameter file (a section per env: Pendulum-v1, "
        "LunarLanderContinuous-v3); an rlkit config is one flat mapping with agent: and env: "
        "keys, as configs/dqn_cartpole_zoo.yaml writes the Zoo's CartPole-v1 DQN"
    )
    # rlkit's own configs hold mappings too, and a key that merely ends like an env id.
    for text in ("agent: sac\nenv: Pendulum-v1\noptimizer: {lr: 0.001}\n",
                 "optimizer: {lr: 0.001}\nnetwork: {hidden_sizes: [64]}\n",
                 "CartPole-v1: 3\n"):  # fmt: skip
        assert load_yaml(write(tmp_path, text))


def test_python_object_tags_are_refused_and_never_run(tmp_path):
    sentinel = tmp_path / "pwned"
    text = f"agent: dqn\ngamma: !!python/object/apply:os.system ['touch {sentinel}']\n"
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(write(tmp_path, text))
    assert not sentinel.exists()


def test_overrides():
    data = apply_overrides(
        {"optimizer": {"name": "adam"}},
        ["optimizer.lr=3e-4", "network.hidden_sizes=[32, 32]", "double_q=true"],
    )
    assert data == {
        "optimizer": {"name": "adam", "lr": "3e-4"},
        "network": {"hidden_sizes": [32, 32]},
        "double_q": True,
    }
    cfg = config_from_dict(DQNConfig, data)
    assert cfg.optimizer.lr == 3e-4 and cfg.network.hidden_sizes == [32, 32]
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        apply_overrides({}, ["gamma"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"gamma": 0.9}, ["gamma.x=1"])


def test_to_dict_round_trips():
    cfg = config_from_dict(DQNConfig, {"optimizer": {"name": "adam", "lr": 5e-4, "eps": 1e-6}})
    data = cfg.to_dict()
    assert data["optimizer"] == {"name": "adam", "lr": 5e-4, "eps": 1e-6}
    assert config_from_dict(DQNConfig, data) == cfg


def test_matmul_precision_holds_while_learning_and_is_put_back():
    import torch

    seen = []
    agent = DQN(env="CartPole-v1", learning_starts=10, matmul_precision="medium")
    before = torch.get_float32_matmul_precision()
    agent.learn(40, callback=lambda a: seen.append(torch.get_float32_matmul_precision()),
                callback_interval=20)  # fmt: skip
    assert seen == ["medium", "medium"]
    assert torch.get_float32_matmul_precision() == before == "highest"
    # Put back after a run that ends in an error, too.
    with pytest.raises(RuntimeError, match="stop"):
        agent.learn(
            40, callback=lambda a: (_ for _ in ()).throw(RuntimeError("stop")), callback_interval=10
        )
    assert torch.get_float32_matmul_precision() == "highest"
