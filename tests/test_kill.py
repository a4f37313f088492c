"""Kill test: a real `rlkit train` subprocess is SIGKILLed at random moments, several times in
the middle of writing a checkpoint; each time `rlkit train --resume` must continue from the
newest good checkpoint, lose at most one checkpoint interval, and leave no stray files."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.io.checkpoint import checkpoint_dir, list_checkpoints, newest_good_checkpoint

from .helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 500
TOTAL = 12_000
SETTINGS = [
    "--set", f"checkpoint_interval={INTERVAL}", "--set", "keep_checkpoints=3",
    "--set", "buffer_size=60000",  # ~3 MB per checkpoint: writes take long enough to hit
    "--set", "learning_starts=500", "--set", "network.hidden_sizes=[32,32]",
    "--set", "torch_threads=1", "--set", "eval_episodes=2", "--set", "log_interval=500",
]  # fmt: skip


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlkit.cli", "train", *map(str, args), "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Poll `condition` every half millisecond; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.0005)
    raise AssertionError("timed out waiting for the training process")


def _temp_files(run_dir: Path) -> set[str]:
    folder = checkpoint_dir(run_dir)
    return (
        {p.name for p in folder.iterdir() if p.name.endswith(".tmp")} if folder.is_dir() else set()
    )


def _stray_files(run_dir: Path) -> list[str]:
    folder = checkpoint_dir(run_dir)
    manifests = {info.data.name for info in list_checkpoints(run_dir)}
    return [
        p.name
        for p in folder.iterdir()
        if p.name.endswith(".tmp") or (p.suffix == ".safetensors" and p.name not in manifests)
    ]


def _check_announced(stderr: str, resumed_from: list[int]) -> None:
    """A resumed process says where it resumed: the newest good checkpoint, seen from here."""
    announced = re.findall(r"resuming dqn .* at step ([\d,]+)", stderr)
    if announced:  # (a process killed while still starting up said nothing)
        assert resumed_from and int(announced[0].replace(",", "")) == resumed_from[-1]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(7)
    run_dir = tmp_path / "run"
    process = _start("configs/dqn_cartpole.yaml", "--run-dir", run_dir, "--steps", TOTAL, *SETTINGS)
    # The first kill waits for a checkpoint: before one exists there is nothing to resume.
    assert _wait_for(lambda: newest_good_checkpoint(run_dir)[0] is not None, process)
    kills = during_write = 0
    resumed_from: list[int] = []
    left_over: set[str] = set()  # temp files of the previous kill, until the resume cleans up
    while True:
        if kills % 2 == 0:  # every other kill lands inside a checkpoint write
            alive = _wait_for(lambda seen=left_over: bool(_temp_files(run_dir) - seen), process)
            during_write += alive
        else:
            time.sleep(rng.uniform(0.2, 2.5))
            alive = process.poll() is None
        if not alive:
            break  # finished before this kill
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
        kills += 1
        _check_announced(stderr, resumed_from)
        left_over = _temp_files(run_dir)

        newest, skipped = newest_good_checkpoint(run_dir)
        assert skipped == []  # atomic writes: a kill never leaves a checkpoint that looks good
        steps = [info.step for info in list_checkpoints(run_dir)]
        # Checkpoints every INTERVAL steps with none missing: the kill lost at most the steps
        # since the newest one, less than one interval (or one, if it hit the next write).
        assert steps == list(
            range(steps[-1] - INTERVAL * (len(steps) - 1), steps[-1] + 1, INTERVAL)
        )
        assert resumed_from == [] or newest.step >= resumed_from[-1]
        process = _start("--resume", run_dir)
        resumed_from.append(newest.step)
        if kills >= 12:
            break

    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert kills >= 10 and during_write >= 4, (kills, during_write)
    _check_announced(stderr, resumed_from)
    assert (run_dir / "agent.safetensors").is_file()
    assert _stray_files(run_dir) == []
    assert list_checkpoints(run_dir)[-1].step == TOTAL
    epsilon_steps = [step for step, _ in read_scalars(run_dir)["train/epsilon"]]
    assert epsilon_steps == list(range(INTERVAL, TOTAL + 1, INTERVAL))  # each step once
    assert os.listdir(run_dir / "checkpoints")  # sanity: the folder is still there
