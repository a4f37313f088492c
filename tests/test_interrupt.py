"""Ctrl-C, for real: SIGINT sent to a training subprocess. The first one saves a checkpoint and
the agent and exits 130; a second one during that save aborts it without damaging anything."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit.base.files import atomic_write_bytes
from rlkit.io.checkpoint import checkpoint_dir, list_checkpoints, verify_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    "--steps", "8000", "--no-progress", "--set", "checkpoint_interval=1000",
    "--set", "buffer_size=200000",  # ~10 MB checkpoints: a save takes long enough to hit
    "--set", "network.hidden_sizes=[32,32]", "--set", "torch_threads=1",
    "--set", "eval_episodes=2",
]  # fmt: skip


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlkit.cli", "train", *map(str, args)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _poll(condition, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.0005)
    return False


def _temp_files(run_dir: Path) -> list[str]:
    return [p.name for p in checkpoint_dir(run_dir).iterdir() if p.name.endswith(".tmp")]


def _all_intact(run_dir: Path) -> bool:
    infos = list_checkpoints(run_dir)
    return bool(infos) and all(verify_checkpoint(info) is None for info in infos)


@pytest.mark.slow
def test_first_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    process = _start("configs/dqn_cartpole.yaml", "--run-dir", run_dir, *SETTINGS)
    assert _poll(lambda: bool(list_checkpoints(run_dir)))  # training is under way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"continue with: rlkit train --resume {run_dir}" in stderr
    assert (run_dir / "agent.safetensors").is_file()
    newest = list_checkpoints(run_dir)[-1]
    assert f"interrupted at step {newest.step:,};" in stderr  # saved where it stopped
    assert _all_intact(run_dir) and _temp_files(run_dir) == []

    resumed = _start("--resume", run_dir, "--no-progress")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"at step {newest.step:,} of 8,000" in stderr
    assert list_checkpoints(run_dir)[-1].step == 8_000


@pytest.mark.slow
def test_second_ctrl_c_during_the_save_corrupts_nothing(tmp_path):
    run_dir = tmp_path / "run"
    process = _start("configs/dqn_cartpole.yaml", "--run-dir", run_dir, *SETTINGS)
    assert _poll(lambda: bool(list_checkpoints(run_dir)))
    before = {info.step for info in list_checkpoints(run_dir)}
    process.send_signal(signal.SIGINT)
    assert _poll(lambda: bool(_temp_files(run_dir)), timeout=60)  # the save has begun
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert _temp_files(run_dir) == []  # the aborted write cleaned up after itself
    assert _all_intact(run_dir)  # old checkpoints intact (and the new one, if it made it)
    assert before & {info.step for info in list_checkpoints(run_dir)}

    resumed = _start("--resume", run_dir, "--no-progress", "--device", "cpu")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr


def _limit_file_size() -> None:
    """In the child: no file may grow beyond 1 MB, as on a disk that is full. Writes past the
    limit fail with EFBIG (SIGXFSZ, which would kill the process instead, is ignored)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_checkpoint_writes_failing_for_lack_of_space_do_not_end_the_run(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "configs/dqn_cartpole.yaml", "--run-dir", run_dir, "--steps", "3000", "--no-progress",
        "--set", "checkpoint_interval=1000", "--set", "buffer_size=50000",  # ~2.6 MB each
        "--set", "network.hidden_sizes=[32,32]", "--set", "eval_episodes=2",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("not written ([Errno 27] File too large)") == 3
    assert list_checkpoints(run_dir) == [] and _temp_files(run_dir) == []
    assert (run_dir / "agent.safetensors").is_file()  # small files still fit


@pytest.mark.parametrize("when", ["as the file is created", "while it is written"])
def test_a_ctrl_c_anywhere_in_a_write_leaves_no_temporary_file(tmp_path, monkeypatch, when):
    # The window the test above hits by chance (once in CI: the second Ctrl-C landed just after
    # tempfile.mkstemp had created its file, before it returned the name), made certain.
    (tmp_path / "f").write_bytes(b"old")
    real_open, real_fsync = os.open, os.fsync

    def open_then_interrupt(file, flags, *args):
        fd = real_open(file, flags, *args)
        if str(file).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    def fsync_then_interrupt(fd):
        real_fsync(fd)
        raise KeyboardInterrupt

    if when == "as the file is created":
        monkeypatch.setattr(os, "open", open_then_interrupt)
    else:
        monkeypatch.setattr(os, "fsync", fsync_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "f", b"new")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    assert (tmp_path / "f").read_bytes() == b"old"
    atomic_write_bytes(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"new"
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
