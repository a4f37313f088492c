"""Every agent on a small image env, through what a user runs: `rlkit train --seeds` with
periodic evaluation and the best agent, TensorBoard read back, `rlkit report`, `rlkit eval
--video` of the best agent, `agents.load`; the divergence guard on frames; one `rlkit tune` study.
Real subprocesses, real envs (rlkit's Catch seen as 10x5 uint8 frames). Whether the agents
learn from frames is in test_encoders.py; exact resume in test_resume.py."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import optuna
import pytest
import torch
from optuna.trial import TrialState

import agents
from rlkit.agent.guard import DivergenceError
from rlkit.nn.encoders import ConvEncoder

from .helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
DISCRETE, CONTINUOUS = "rlkit/CatchPixels-v0", "rlkit/CatchPixelsContinuous-v0"
# (config, env, settings that make a run of --steps short but complete)
CASES = {
    "dqn": ("dqn_catch.yaml", DISCRETE, ["learning_starts=100", "buffer_size=1000"]),
    "reinforce": ("reinforce_cartpole.yaml", DISCRETE, ["n_envs=2", "batch_episodes=2"]),
    "a2c": ("a2c_cartpole.yaml", DISCRETE, ["n_envs=2"]),
    "ppo": ("ppo_cartpole.yaml", DISCRETE, ["n_envs=2", "n_steps=32", "batch_size=32"]),
    "sac": ("sac_pendulum.yaml", CONTINUOUS, ["learning_starts=100", "batch_size=32"]),
    "td3": ("td3_pendulum.yaml", CONTINUOUS, ["learning_starts=100", "batch_size=32"]),
}
SMALL = ["network.hidden_sizes=[32]", "eval_interval=200", "eval_episodes=2"]


def _rlkit(*args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _cnn(agent) -> torch.nn.Module:
    """The CNN that reads the agent's frames (the critics' for SAC and TD3)."""
    if hasattr(agent, "q_net"):
        return agent.q_net.encoder
    return agent.critic.encoder if hasattr(agent, "critic") else agent.model.encoder


def _settings(name: str) -> list[str]:
    _, env, extra = CASES[name]
    pairs = [f"env={env}", *SMALL, *extra]
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.mark.parametrize("name", list(CASES))
def test_seeds_evaluation_best_agent_tensorboard_report_and_video(tmp_path, name):
    parent = tmp_path / name
    config = ROOT / "configs" / CASES[name][0]
    result = _rlkit(
        "train", config, "--seeds", "1,2", "--jobs", "2", "--steps", "400", *_settings(name),
        "--run-dir", parent, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for seed in (1, 2):
        run = parent / f"seed_{seed}"
        scalars = read_scalars(run)
        steps = [step for step, _ in scalars["eval/mean_return"]]  # (at rollout ends: PPO)
        assert len(steps) == 2 and 200 <= steps[0] < steps[1] and steps[1] >= 400
        assert "eval/best_mean_return" in scalars
        assert (run / "best_agent.safetensors").is_file()
    assert json.loads((parent / "summary.json").read_text())["configs"][0]["final"]["n"] == 2
    best = parent / "seed_1" / "best_agent.safetensors"
    assert isinstance(_cnn(agents.load(best)), ConvEncoder)
    report = _rlkit("report", parent)
    assert report.returncode == 0, report.stderr
    videos = tmp_path / "videos"
    shown = _rlkit("eval", best, "--episodes", "1", "--video", videos, "--json")
    assert shown.returncode == 0, shown.stderr
    (video,) = videos.glob("*.mp4")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 10  # Catch's reset frame and its 9 steps


ABSURD = dict(optimizer={"name": "sgd", "lr": 1e6}, divergence={"max_rollbacks": 100})


@pytest.mark.parametrize("name", list(CASES))
def test_the_guard_keeps_a_cnn_finite_at_an_absurd_learning_rate(tmp_path, name):
    _, env, extra = CASES[name]
    settings = dict(item.split("=") for item in extra)
    settings = {key: int(value) for key, value in settings.items()}
    if name == "dqn":
        settings.update(loss="mse", max_grad_norm=None)
    if name in ("a2c", "ppo", "reinforce"):
        settings.update(max_grad_norm=None)
    agent = agents.agent_class(name)(
        env=env, seed=0, network={"hidden_sizes": [32]}, **ABSURD, **settings
    )
    with contextlib.suppress(DivergenceError):  # allowed: what matters is what was kept
        agent.learn(500, run_dir=tmp_path, checkpoint_interval=250)
    assert agent.guard.skipped_updates >= 1
    for network in agent.networks.values():
        assert all(bool(torch.isfinite(p).all()) for p in network.parameters())


def test_tune_searches_an_agent_on_frames(tmp_path):
    result = _rlkit(
        "tune", ROOT / "configs" / "ppo_cartpole.yaml", "--trials", "2", "--seeds-per-trial",
        "1", "--jobs", "1", "--study", "frames", "--pruner", "none", "--steps", "256",
        *_settings("ppo"), "--set", "checkpoint_interval=0", "--set", "eval_interval=128",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    storage = f"sqlite:///{tmp_path}/runs/frames/study.db"
    study = optuna.load_study(study_name="frames", storage=storage)
    trials = study.get_trials(states=[TrialState.COMPLETE])
    assert len(trials) == 2 and all(trial.value is not None for trial in trials)
