"""Exact resume: N steps straight through equal N/2 steps, a checkpoint, and N/2 more in a fresh
process (`rlkit train --resume`): weights, optimizer state, buffers, random states, env state
and every logged scalar (time/* aside) are identical, compared with torch.equal."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import agents
from rlkit.io.checkpoint import list_checkpoints, read_checkpoint

from .helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
RUN_SETTINGS = {"torch_threads": 1}
# Periodic evaluation on, across the cut: the best agent and its score must survive a resume.
EVAL = dict(eval_episodes=2)

CASES = {
    # n-step collector pending across the cut, linear lr decay, 2 env copies.
    "dqn_nstep": (
        "dqn",
        2000,
        dict(
            n_envs=2, n_steps=3, learning_starts=300, buffer_size=5000, batch_size=32,
            train_freq=4, target_update_interval=200, log_interval=250,
            network={"hidden_sizes": [32, 32]}, lr_schedule={"name": "linear"},
        ),
    ),
    # a Discrete observation made one-hot by the wrappers envs.make adds, the env's kwargs.
    "dqn_frozenlake": (
        "dqn",
        1200,
        dict(
            env="FrozenLake-v1", env_kwargs={"map_name": "8x8"}, learning_starts=200,
            buffer_size=2000, batch_size=32, log_interval=200, network={"hidden_sizes": [32]},
        ),
    ),
    # prioritized replay (sum tree), Monte Carlo episode collector, double + dueling, Polyak.
    "dqn_family": (
        "dqn",
        2000,
        dict(
            prioritized_replay=True, beta_mc=0.5, double_q=True, tau=0.1, learning_starts=300,
            buffer_size=5000, batch_size=32, log_interval=250,
            network={"hidden_sizes": [32, 32], "dueling": True},
        ),
    ),
    # a CNN on uint8 frames (the MinAtar network, a dueling head), frames stored as uint8.
    "dqn_pixels": (
        "dqn",
        1200,
        dict(
            env="rlkit/CatchPixels-v0", learning_starts=300, buffer_size=2000, batch_size=32,
            train_freq=4, target_update_interval=200, log_interval=200,
            network={"hidden_sizes": [32], "dueling": True},
        ),
    ),
    # frame stacks stored once (rings that wrap), 2 copies, n-step collector pending, PER.
    "dqn_frame_stack": (
        "dqn",
        1200,
        dict(
            env="rlkit/CatchPixelStack-v0", n_envs=2, n_steps=3, prioritized_replay=True,
            learning_starts=300, buffer_size=400, batch_size=32, train_freq=4,
            target_update_interval=200, log_interval=200, network={"hidden_sizes": [32]},
        ),
    ),
    # MinAtar (nested lists and a legacy RandomState in the env state), bool frames in replay,
    # the paper's network (no hidden layer after the CNN), centered RMSprop.
    "dqn_minatar": (
        "dqn",
        1000,
        dict(
            env="MinAtar/SpaceInvaders-v1", learning_starts=200, buffer_size=2000,
            batch_size=32, log_interval=200, network={"hidden_sizes": []},
            optimizer={"name": "rmsprop", "lr": 2.5e-4, "alpha": 0.95, "eps": 0.01,
                       "centered": True},
        ),
    ),
    # a Dict observation with a frame among its keys: stored flattened, read key by key.
    "ppo_dict": (
        "ppo",
        1024,
        dict(
            env="rlkit/CatchDict-v0", n_envs=4, n_steps=64, batch_size=64, n_epochs=2,
            network={"hidden_sizes": [32]},
        ),
    ),
    "ppo": (
        "ppo",
        2048,
        dict(
            n_envs=4, n_steps=64, batch_size=64, n_epochs=4, clip_range_schedule="linear",
            lr_schedule={"name": "linear"}, network={"hidden_sizes": [32, 32]},
        ),
    ),
    # a CNN shared by the policy and the value, uint8 frames in the rollout.
    "ppo_pixels": (
        "ppo",
        1024,
        dict(
            env="rlkit/CatchPixels-v0", n_envs=4, n_steps=64, batch_size=64, n_epochs=2,
            network={"hidden_sizes": [32]},
        ),
    ),
    # Gaussian policy over Box actions, observation and reward statistics across the cut.
    "ppo_continuous": (
        "ppo",
        2048,
        dict(
            env="Pendulum-v1", n_envs=2, n_steps=128, batch_size=64, n_epochs=2,
            normalize_obs=True, normalize_reward=True, network={"hidden_sizes": [32, 32]},
        ),
    ),
    "a2c": ("a2c", 2000, dict(n_envs=4, n_steps=5, network={"hidden_sizes": [32, 32]})),
    # An Atari game cut mid-game: the emulator's state (ALE's own bytes), the wrappers' lives,
    # max-pool frames, no-op draws and game score, and the frame stacks stored once.
    "dqn_atari": (
        "dqn",
        400,
        dict(
            env="ALE/Breakout-v5", learning_starts=200, buffer_size=1000, batch_size=32,
            train_freq=4, target_update_interval=100, log_interval=100,
        ),
    ),
    # A2C's CNN and uint8 frames in its short rollouts.
    "a2c_pixels": (
        "a2c",
        600,
        dict(env="rlkit/CatchPixels-v0", n_envs=2, n_steps=5, network={"hidden_sizes": [32]}),
    ),
    "reinforce": (
        "reinforce",
        3000,
        dict(n_envs=2, batch_episodes=4, network={"hidden_sizes": [32, 32]}),
    ),
    # unfinished episodes of uint8 frames across the cut.
    "reinforce_pixels": (
        "reinforce",
        1000,
        dict(
            env="rlkit/CatchPixels-v0", n_envs=2, batch_episodes=4,
            network={"hidden_sizes": [32]},
        ),
    ),
    # continuous actions: float actions in the buffer, the actor's noise, alpha tuned.
    "sac": (
        "sac",
        800,
        dict(
            env="Pendulum-v1", n_envs=2, learning_starts=200, buffer_size=2000, batch_size=32,
            log_interval=100, network={"hidden_sizes": [32, 32]},
        ),
    ),
    # the delayed actor and its target, the exploration noise from the agent's numpy draws.
    "td3": (
        "td3",
        800,
        dict(
            env="Pendulum-v1", n_envs=2, learning_starts=200, buffer_size=2000, batch_size=32,
            log_interval=100, policy_delay=3, network={"hidden_sizes": [32, 32]},
        ),
    ),
    # frames through the actor's and the critics' own CNNs, uint8 frames in replay.
    "sac_pixels": (
        "sac",
        600,
        dict(
            env="rlkit/CatchPixelsContinuous-v0", n_envs=2, learning_starts=200,
            buffer_size=1000, batch_size=32, log_interval=100, network={"hidden_sizes": [32]},
        ),
    ),
    # frame stacks stored once in a continuous-action replay (rings that wrap), 2 copies.
    "td3_frame_stack": (
        "td3",
        800,
        dict(
            env="rlkit/CatchPixelStack-v0", env_kwargs={"continuous": True}, n_envs=2,
            learning_starts=200, buffer_size=300, batch_size=32, log_interval=100,
            network={"hidden_sizes": [32]},
        ),
    ),
    # SB3's train_freq in episodes with gradient_steps -1: the cut falls mid-episode, so the
    # first call after it trains on the steps since the call before the cut.
    "td3_episodes": (
        "td3",
        700,
        dict(
            env="Pendulum-v1", learning_starts=100, buffer_size=2000, batch_size=32,
            log_interval=100, train_freq=[1, "episode"], gradient_steps=-1,
            network={"hidden_sizes": [32, 32]},
        ),
    ),
}  # fmt: skip


def _train(
    name: str,
    steps: int,
    overrides: dict,
    run_dir: Path,
    stop_at: int | None,
    every: int = 2,
    device: str = "cpu",
):
    overrides = dict(overrides)
    env = overrides.pop("env", "CartPole-v1")
    agent = agents.agent_class(name)(
        env=env, seed=3, device=device, eval_interval=steps // 4, **EVAL, **overrides
    )
    agent.learn(
        steps,
        run_dir=run_dir,
        checkpoint_interval=steps // 2,
        extra_config=RUN_SETTINGS,
        callback=None if stop_at is None else (lambda a: a.global_step < stop_at),
        callback_interval=steps // every,
    )
    agent.close()
    return agent


def _final_checkpoint(run_dir: Path):
    return read_checkpoint(list_checkpoints(run_dir)[-1])


def _scalars(run_dir: Path) -> dict:
    """Every scalar but wall-clock times, and the test evaluation that only the CLI's resumed
    run does after training."""
    return {
        tag: v for tag, v in read_scalars(run_dir).items() if not tag.startswith(("time/", "test"))
    }


# Every case on the CPU; on a CUDA machine, DQN and PPO on the GPU as well (same device type:
# bit-exact there too).
RUNS = [(case, "cpu") for case in CASES]
if torch.cuda.is_available():
    RUNS += [("dqn_nstep", "cuda"), ("ppo", "cuda")]


@pytest.mark.parametrize(("case", "device"), RUNS, ids=[f"{c}-{d}" for c, d in RUNS])
def test_resumed_run_equals_uninterrupted_run(tmp_path, case, device):
    name, steps, overrides = CASES[case]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    _train(name, steps, overrides, straight, stop_at=None, device=device)
    half = _train(name, steps, overrides, cut, stop_at=steps // 2, device=device)
    assert steps // 2 <= half.global_step < steps  # stopped at the checkpoint, half way
    resumed = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", "--resume", str(cut), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr

    tensors_a, state_a = _final_checkpoint(straight)
    tensors_b, state_b = _final_checkpoint(cut)
    assert state_a["counters"]["global_step"] >= steps
    assert json.dumps(state_a, sort_keys=True) == json.dumps(state_b, sort_keys=True)
    assert tensors_a.keys() == tensors_b.keys()
    groups = {key.split(".")[0] for key in tensors_a}
    assert {"model", "optimizer", "rng", "env"} <= groups
    if name in ("dqn", "sac", "td3"):
        assert any(key.startswith("extra.buffer.obs") for key in tensors_a)
    # Wall-clock times (the episode statistics' start times) are the one thing that differs.
    compared = [key for key in tensors_a if not key.endswith("episode_start_times")]
    different = [key for key in compared if not torch.equal(tensors_a[key], tensors_b[key])]
    assert different == []

    assert state_a["validation"]["best_step"] is not None  # (compared above with the rest)
    best_a = agents.load(straight / "best_agent.safetensors")._state_tensors()
    best_b = agents.load(cut / "best_agent.safetensors")._state_tensors()
    assert all(torch.equal(best_a[key], best_b[key]) for key in best_a)

    scalars_a, scalars_b = _scalars(straight), _scalars(cut)
    assert "rollout/episodic_return" in scalars_a
    assert len(scalars_a["eval/mean_return"]) >= 4
    assert scalars_a.keys() == scalars_b.keys()
    for tag in scalars_a:
        assert scalars_a[tag] == scalars_b[tag], tag  # same steps, same values, no duplicates


def test_resume_supersedes_what_was_logged_after_the_checkpoint(tmp_path):
    """A run that went on past its last checkpoint (then died) logged steps that the resumed
    run logs again: TensorBoard shows each once, exactly as in an uninterrupted run."""
    name, steps, overrides = CASES["dqn_nstep"]
    straight, run_dir = tmp_path / "straight", tmp_path / "run"
    _train(name, steps, overrides, straight, stop_at=None)
    agent = _train(name, steps, overrides, run_dir, stop_at=3 * steps // 4, every=4)
    assert agent.global_step > list_checkpoints(run_dir)[-1].step  # logged past the checkpoint
    resumed = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", "--resume", str(run_dir), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert _scalars(run_dir) == _scalars(straight)


def _eval_json(run_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "eval", str(run_dir), "--episodes", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_eval_uses_the_newest_checkpoint_of_an_unfinished_run(tmp_path):
    name, steps, overrides = CASES["dqn_nstep"]
    _train(name, steps, overrides, tmp_path, stop_at=steps // 2)
    assert not (tmp_path / "agent.safetensors").exists()
    evaluated = _eval_json(tmp_path)
    assert evaluated["episodes"] == 2 and evaluated["step"] == list_checkpoints(tmp_path)[-1].step
    # A run resumed after a Ctrl-C (which saved agent.safetensors) and checkpointed since: its
    # agent file is the older one; eval takes the newer checkpoint, as it was before the agent
    # file existed.
    agent = agents.from_checkpoint(tmp_path)
    agent.save(tmp_path / "agent.safetensors")
    agent.learn(
        resume=True,
        run_dir=tmp_path,
        checkpoint_interval=steps // 4,
        callback=lambda a: a.global_step < 3 * steps // 4,
        callback_interval=steps // 4,
    )
    newest = list_checkpoints(tmp_path)[-1].step
    assert newest > agents.load(tmp_path / "agent.safetensors").global_step
    evaluated = _eval_json(tmp_path)
    assert evaluated["step"] == newest and evaluated["file"].endswith(".safetensors")
    assert "checkpoints" in evaluated["file"]
    agent.save(tmp_path / "agent.safetensors")  # the run's end: its agent file is the newest
    evaluated = _eval_json(tmp_path)
    assert evaluated["file"] == str(tmp_path / "agent.safetensors")


def test_resume_from_a_checkpoint_taken_before_the_first_step(tmp_path):
    # Ctrl-C can land before a run's first step (a seed of --seeds stopped at once): gymnasium's
    # env checker then still wants the data of the reset, which no checkpoint holds.
    agent = agents.PPO(env="CartPole-v1", seed=1, n_envs=2, n_steps=16, batch_size=32)
    agent.stop_requested = True
    agent.learn(512, run_dir=tmp_path)
    assert agent.global_step == 0
    agent.save_checkpoint(tmp_path)
    resumed = agents.from_checkpoint(tmp_path)
    resumed.learn(resume=True, run_dir=tmp_path)
    assert resumed.global_step >= 512


def test_non_finite_floats_anywhere_in_the_state_survive_the_strict_json(tmp_path):
    # Strict JSON has no inf or nan; the writer encodes each, wherever it sits, and the reader
    # turns them back into floats (Hopper's healthy z range, (0.7, inf), is one in the wild).
    from rlkit.io.checkpoint import CHECKPOINT_FORMAT, newest_good_checkpoint, write_checkpoint

    state = {
        "format": CHECKPOINT_FORMAT,
        "env": {"env0.1": {"_healthy_z_range": {"sequence": [0.7, float("inf")], "tuple": True}}},
        "validation": {"best_mean": float("nan"), "streak": 0},
        "deep": [[-float("inf"), 1.5], {"x": float("inf")}],
        "user": {"__float__": "not ours", "other": 1},  # two keys: not an encoded float
    }
    write_checkpoint(tmp_path, 5, {"w": torch.zeros(2)}, state)
    info, skipped = newest_good_checkpoint(tmp_path)
    assert skipped == []
    _, read = read_checkpoint(info)
    assert read["env"]["env0.1"]["_healthy_z_range"]["sequence"] == [0.7, float("inf")]
    assert read["validation"]["best_mean"] != read["validation"]["best_mean"]  # nan
    assert read["deep"] == [[-float("inf"), 1.5], {"x": float("inf")}]
    assert read["user"] == {"__float__": "not ours", "other": 1}


def test_a_corrupt_encoded_float_is_a_clear_error(tmp_path):
    import hashlib

    from rlkit.base.errors import AgentFileError
    from rlkit.io.checkpoint import CHECKPOINT_FORMAT, newest_good_checkpoint, write_checkpoint

    manifest = write_checkpoint(tmp_path, 5, {"w": torch.zeros(2)}, {"format": CHECKPOINT_FORMAT})
    info, _ = newest_good_checkpoint(tmp_path)
    # A tensor file whose state holds {"__float__": "1e999"}, with a manifest that matches it.
    inserted = b'\\"x\\": {\\"__float__\\": \\"1e999\\"}, '
    payload = info.data.read_bytes().replace(b'\\"format', inserted + b'\\"format')
    size = int.from_bytes(payload[:8], "little") + len(inserted)
    payload = size.to_bytes(8, "little") + payload[8:]
    info.data.write_bytes(payload)
    data = json.loads(manifest.read_text())
    data.update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    manifest.write_text(json.dumps(data))
    with pytest.raises(AgentFileError, match="not a readable rlkit checkpoint: '1e999'"):
        read_checkpoint(info)
