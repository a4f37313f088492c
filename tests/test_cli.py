"""The command line as a user runs it: real subprocesses, real run folders, real event files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .helpers import read_accumulator, read_scalars

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--steps", "1500", "--no-progress",
    "--set", "learning_starts=300", "--set", "log_interval=250", "--set", "eval_episodes=3",
    "--set", "network.hidden_sizes=[32,32]", "--set", "torch_threads=1",
    "--set", "exploration_fraction=0.5",
]  # fmt: skip


def rlkit(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "cartpole"
    result = rlkit("train", "configs/dqn_cartpole.yaml", "--run-dir", run_dir, "--seed", "4", *TINY)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_train_writes_a_complete_run_folder(trained_run):
    run_dir, result = trained_run
    assert (run_dir / "agent.safetensors").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["agent"] == "dqn" and config["seed"] == 4 and config["total_steps"] == 1500
    assert config["network"]["hidden_sizes"] == [32, 32]
    assert "final agent: greedy mean return" in result.stderr
    assert "over 3 test episodes (seed 10004)" in result.stderr


def test_event_files_hold_the_scalars(trained_run):
    run_dir, _ = trained_run
    scalars = read_scalars(run_dir)
    for tag in (
        "rollout/episodic_return", "rollout/episodic_length", "train/td_loss", "train/mean_q",
        "train/epsilon", "train/learning_rate", "train/grad_norm", "time/steps_per_second",
        "eval/mean_return", "eval/std_return", "eval/mean_length", "time/eval_seconds",
        "test/mean_return",
    ):  # fmt: skip
        assert scalars.get(tag), f"missing scalar {tag}"
    assert [step for step, _ in scalars["train/epsilon"]] == [250, 500, 750, 1000, 1250, 1500]
    assert scalars["train/epsilon"][0][1] > scalars["train/epsilon"][-1][1]
    # Episode returns of CartPole equal their lengths (reward 1 per step).
    returns = [v for _, v in scalars["rollout/episodic_return"]]
    lengths = [v for _, v in scalars["rollout/episodic_length"]]
    assert returns == lengths and sum(lengths) <= 1500
    accumulator = read_accumulator(run_dir)
    assert accumulator.PluginTagToContent("hparams")  # the config as TensorBoard hparams
    text = accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "optimizer" in text and "CartPole-v1" in text


def test_eval_prints_mean_and_json(trained_run):
    run_dir, _ = trained_run
    plain = rlkit("eval", run_dir, "--episodes", "3")
    assert plain.returncode == 0, plain.stderr
    assert "mean return" in plain.stdout and "over 3 episodes" in plain.stdout
    as_json = rlkit(
        "eval", run_dir / "agent.safetensors", "--episodes", "4", "--seed", "1", "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["episodes"] == 4 and len(data["returns"]) == 4
    assert data["mean_return"] == pytest.approx(sum(data["returns"]) / 4)
    assert data["std_return"] >= 0


def _bad_config(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


USER_ERRORS = [
    (["train", "missing.yaml"], "config file not found"),
    (["train", "{tmp}/bad.yaml"], "invalid YAML", "agent: dqn\ngamma: [0.9\n"),
    (["train", "{tmp}/bad.yaml"], "did you mean 'gamma'", "agent: dqn\ngama: 0.9\n"),
    (["train", "{tmp}/bad.yaml"], "gamma: expected a number", "agent: dqn\ngamma: high\n"),
    (["train", "{tmp}/bad.yaml"], "Did you mean: `CartPole`", "agent: dqn\nenv: Cartpole-v1\n"),
    (
        ["train", "{tmp}/bad.yaml"],
        "DQN needs a Discrete action space",
        "agent: dqn\nenv: Pendulum-v1\n",
    ),
    (
        ["train", "{tmp}/bad.yaml"],
        "optimizer.lr must be a finite number > 0",
        "agent: dqn\noptimizer: {lr: -0.001}\n",
    ),
    (
        ["train", "{tmp}/bad.yaml"],
        "is larger than buffer_size",
        "agent: dqn\nbuffer_size: 16\nbatch_size: 64\n",
    ),
    (
        ["train", "{tmp}/bad.yaml"],
        "could not determine a constructor",
        "agent: dqn\ngamma: !!python/object/apply:os.getcwd []\n",
    ),
    (["train", "configs/dqn_cartpole.yaml", "--set", "gamma"], "dotted.key=value"),
    (["train", "configs/dqn_cartpole.yaml", "--steps", "0"], "total_steps must be >= 1"),
    (
        ["train", "configs/dqn_cartpole.yaml", "--set", "observation_mask=[9]"],
        "outside the observation's 4 entries",
    ),
    (["train", "configs/dqn_cartpole.yaml", "--steps", "ten"], "invalid int value"),
    (["eval", "{tmp}/nothing"], "no such file"),
    (["eval", "{tmp}/bad.yaml"], "not a readable rlkit file", "just text"),
    (["eval", "configs/dqn_cartpole.yaml", "--episodes", "0"], "--episodes must be at least 1"),
    (["fly"], "invalid choice"),
]
if not torch.cuda.is_available():
    USER_ERRORS.append(
        (["train", "configs/dqn_cartpole.yaml", "--device", "cuda"], "CUDA is not available")
    )


@pytest.mark.parametrize(
    "case", USER_ERRORS, ids=[" ".join(c[0]) + " " + c[1] for c in USER_ERRORS]
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, case):
    args, fragment, *content = case
    if content:
        _bad_config(tmp_path, content[0])
    # Run from tmp_path, where a default run folder (runs/...) would be made.
    args = [str(ROOT / a) if a.startswith("configs/") else a.format(tmp=tmp_path) for a in args]
    result = rlkit(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert not list(tmp_path.glob("runs"))  # nothing half-made


@pytest.mark.parametrize(
    "args",
    [
        ["train", "missing.yaml"],
        ["train", "configs/dqn_cartpole.yaml", "--set", "gamma"],
        ["train", "configs/dqn_cartpole.yaml", "--steps", "0"],
        ["eval", "missing.safetensors"],
        ["tune", "configs/dqn_cartpole.yaml", "--trials", "2"],
        ["train", "tests/fixtures/zoo_sac.yml"],
    ],
)
def test_mistakes_in_the_command_line_are_answered_before_torch_loads(args):
    # A typo gets its answer in a tenth of a second, not after torch's two-second import.
    code = (
        "import sys; from rlkit.cli import main; code = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_resuming_a_run_without_checkpoints_says_why_there_is_none(trained_run):
    run_dir, _ = trained_run  # 1,500 steps, checkpoint_interval 10,000: none written
    result = rlkit("train", "--resume", run_dir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "has no checkpoint to resume from" in lines[0]
    assert "(10,000 in its config.yaml, of 1,500; 0: never)" in lines[0]


def test_existing_run_folder_is_not_overwritten(trained_run):
    run_dir, _ = trained_run
    before = sorted(p.name for p in run_dir.iterdir())
    result = rlkit("train", "configs/dqn_cartpole.yaml", "--run-dir", run_dir, *TINY)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_torch_threads_limits_numpys_blas_pool_too():
    # The policy-gradient agents act through numpy; OpenBLAS's own pool must follow
    # torch_threads, or side-by-side seeds fight over the cores (docs/guide/seeds.md).
    import numpy as np  # noqa: F401  (BLAS loaded)
    import threadpoolctl
    import torch

    from rlkit.base.threads import limit_threads

    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas, "numpy's BLAS not found"
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # restored afterwards
        threads = torch.get_num_threads()
        try:
            limit_threads(1)
            assert torch.get_num_threads() == 1
            assert all(
                p["num_threads"] == 1
                for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"
            )
        finally:
            torch.set_num_threads(threads)


def test_an_env_from_a_module_next_to_the_user_trains_and_evaluates(tmp_path):
    """`--set env=module:Name-v0` (gymnasium's form) with the module in the folder `rlkit` runs
    from, through the installed console script: Python searches the script's folder, not the
    current one, so rlkit looks there itself."""
    script = Path(sys.executable).parent / "rlkit"
    (tmp_path / "my_cartpoles.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('ShortCartPole-v0', entry_point="
        "'gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=40)\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)

    def user(*args, cwd=tmp_path):
        return subprocess.run([script, *map(str, args)], cwd=cwd, capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip

    result = user("train", ROOT / "configs" / "dqn_cartpole.yaml", "--run-dir", "run", *TINY,
                  "--steps", "600", "--set", "env=my_cartpoles:ShortCartPole-v0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["env"] == "my_cartpoles:ShortCartPole-v0"
    lengths = read_scalars(tmp_path / "run")["rollout/episodic_length"]
    assert max(v for _, v in lengths) <= 40  # the module's env, with its own time limit
    evaluated = user("eval", "run", "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["episodes"] == 2
    # From a folder without the module: one line naming it.
    elsewhere = user("eval", tmp_path / "run", cwd=ROOT)
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.strip() == (
        "rlkit eval: error: env 'my_cartpoles:ShortCartPole-v0': no module named "
        "'my_cartpoles' in the current folder and PYTHONPATH"
    )


def test_env_kwargs_reach_training_evaluation_and_the_agent_file(tmp_path):
    """SB3's env_kwargs: CartPole's sutton_barto_reward gives -1 at the fall and 0 before, which
    every return logged in training, validation and `rlkit eval` shows; a keyword the env does
    not take is one line, and gymnasium's coloured warnings come out plain."""
    run_dir = tmp_path / "run"
    result = rlkit("train", "configs/dqn_cartpole.yaml", "--run-dir", run_dir, *TINY,
                   "--set", "env_kwargs.sutton_barto_reward=true", "--steps", "1000",
                   "--set", "env_kwargs.render_mode=ascii",  # (a mode CartPole warns about)
                   "--set", "eval_interval=500")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "rlkit: warning: The environment is being initialised with render_mode='ascii' that is "
        "not in the possible render_modes (['human', 'rgb_array']).\n"
    ) in result.stderr
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env_kwargs"] == {
        "sutton_barto_reward": True,
        "render_mode": "ascii",
    }
    scalars = read_scalars(run_dir)
    for tag in ("rollout/episodic_return", "eval/mean_return", "test/mean_return"):
        assert {v for _, v in scalars[tag]} <= {-1.0, 0.0}, tag  # CartPole's own: >= 8
    evaluated = rlkit("eval", run_dir, "--episodes", "3", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert set(json.loads(evaluated.stdout)["returns"]) <= {-1.0, 0.0}

    bad = rlkit("train", "configs/dqn_cartpole.yaml", "--set", "env_kwargs.gravity=3", *TINY)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unexpected keyword argument 'gravity'" in bad.stderr


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    # A page of commands (or a script) starting the same config twice within one second: the
    # default folder name is taken by the first, so the second gets -2 instead of an error.
    from rlkit.cli import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train.time, "strftime", lambda fmt: "20261207-120000")
    folders = [train._default_run_dir("configs/dqn_catch.yaml", 1) for _ in range(3)]
    assert [f.name for f in folders] == [
        "dqn_catch_s1_20261207-120000",
        "dqn_catch_s1_20261207-120000-2",
        "dqn_catch_s1_20261207-120000-3",
    ]
    assert all(f.is_dir() and not any(f.iterdir()) for f in folders)
