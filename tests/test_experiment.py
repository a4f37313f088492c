"""`rlkit train --seeds` and `rlkit report` through the real CLI, in real subprocesses: the
parent folder's layout, each seed being exactly a single run, a SIGKILLed seed that the others
survive and `--resume` finishes, Ctrl-C, and the one-line errors for bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rlkit.base.errors import UserError
from rlkit.experiments.seeds import parse_seeds
from rlkit.io.checkpoint import newest_good_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--steps", "3072", "--set", "eval_interval=1024", "--set", "eval_episodes=4",
    "--set", "checkpoint_interval=1024",
]  # fmt: skip


TINY = [
    "--steps", "1024", "--set", "eval_interval=512", "--set", "eval_episodes=2",
    "--set", "checkpoint_interval=0",
]  # fmt: skip


def _rlkit(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert words in lines[0], lines[0]


def test_parse_seeds_forms():
    assert parse_seeds("1-4") == [1, 2, 3, 4]
    assert parse_seeds("1,4,7") == [1, 4, 7]
    assert parse_seeds("1-3, 8") == [1, 2, 3, 8]
    assert parse_seeds("5") == [5]
    for bad in ("", " ", "1,", "a", "1-b", "3-1", "-2", "1,1", "1-3,2"):
        with pytest.raises(UserError):
            parse_seeds(bad)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seeds", ""], "--seeds"),
        (["--seeds", "1-x"], "is not a seed"),
        (["--seeds", "1,2,2"], "listed twice"),
        (["--seeds", "1-3", "--jobs", "0"], "--jobs must be at least 1"),
        (["--jobs", "2"], "give --seeds too"),
        (["--seeds", "1-2", "--seed", "3"], "exclude each other"),
        # Refused by the seeds themselves (the parent does not load torch to check it first):
        # still one line, said once, and the folder is gone.
        (["--seeds", "1-3", "--jobs", "2", "--set", "optimizer.lrr=1"], "unknown config key"),
        (["--seeds", "1-2", "--set", "env=Nope-v0"], "unknown environment"),
    ],
)
def test_bad_seed_arguments_are_one_line_errors(tmp_path, args, words):
    result = _rlkit("train", "configs/ppo_cartpole.yaml", *args, "--run-dir", tmp_path / "x")
    _one_line_error(result, words)
    assert not (tmp_path / "x").exists()  # nothing started


def test_seeds_make_one_single_run_each_and_a_report(tmp_path):
    parent = tmp_path / "ppo"
    result = _rlkit(
        "train", "configs/ppo_cartpole.yaml", "--seeds", "1-3", "--jobs", "2", *QUICK,
        "--run-dir", parent, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for seed in (1, 2, 3):
        run = parent / f"seed_{seed}"
        for name in ("config.yaml", "agent.safetensors", "best_agent.safetensors"):
            assert (run / name).is_file(), name
        assert f"seed: {seed}\n" in (run / "config.yaml").read_text()
        assert (parent / "logs" / f"seed_{seed}.log").is_file()
    # Seed 2 is exactly the single run of seed 2 (same settings, one torch thread each).
    single = tmp_path / "single"
    result = _rlkit(
        "train", "configs/ppo_cartpole.yaml", "--seed", "2", *QUICK, "--run-dir", single,
        "--no-progress", "--set", "torch_threads=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ours, theirs = (
        load_file(parent / "seed_2/agent.safetensors"),
        load_file(single / "agent.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    assert all((ours[k] == theirs[k]).all() for k in ours)
    # The report, written when the seeds finished.
    summary = json.loads((parent / "summary.json").read_text())["configs"][0]
    assert [s["seed"] for s in summary["seeds"]] == [1, 2, 3]
    assert summary["final"]["n"] == 3 and summary["reward_threshold"] == 475.0
    assert (
        summary["final"]["iqm_ci95"][0]
        <= summary["final"]["iqm"]
        <= summary["final"]["iqm_ci95"][1]
    )
    assert "IQM" in (parent / "summary.md").read_text()
    csv = (parent / "curves.csv").read_text().splitlines()
    assert csv[0] == "config,axis,x,runs,iqm,ci95_low,ci95_high"
    assert [line.split(",")[2] for line in csv[1:4]] == ["1024", "2048", "3072"]
    assert (parent / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _child_pid(run_dir: Path) -> int | None:
    """The pid of the `rlkit train` process writing `run_dir`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and b"rlkit.cli" in cmdline:
            return int(entry.name)
    return None


def _wait(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _start_seeds(parent: Path, seeds: str, steps: int, checkpoint_interval: int):
    """`rlkit train --seeds` of the PPO CartPole config, two at a time, running on."""
    return subprocess.Popen(
        [sys.executable, "-m", "rlkit.cli", "train", "configs/ppo_cartpole.yaml",
         "--seeds", seeds, "--jobs", "2", "--steps", str(steps), "--set", "eval_interval=0",
         "--set", f"checkpoint_interval={checkpoint_interval}", "--run-dir", str(parent),
         "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_sigkilled_seed_spares_the_others_and_resume_finishes_it(tmp_path):
    parent = tmp_path / "exp"
    process = _start_seeds(parent, "1,2", steps=30_000, checkpoint_interval=2048)
    victim = parent / "seed_1"
    _wait(lambda: newest_good_checkpoint(victim)[0] is not None)  # a whole one, not a .tmp
    pid = _child_pid(victim)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "seed 1 (killed by SIGKILL" in stderr and "Traceback" not in stderr
    assert (parent / "seed_2" / "agent.safetensors").is_file()  # the other seed finished
    assert json.loads((parent / "experiment.json").read_text())["finished"] == [2]

    result = _rlkit("train", "--resume", parent, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "1 of 2 seeds unfinished (1)" in result.stderr
    summary = json.loads((parent / "summary.json").read_text())["configs"][0]
    assert [s["seed"] for s in summary["seeds"]] == [1, 2]
    assert all(s["final"] is not None for s in summary["seeds"])
    assert "resuming" in (parent / "logs" / "seed_1.log").read_text()


def test_ctrl_c_stops_every_seed_resumably(tmp_path):
    parent = tmp_path / "exp"
    process = _start_seeds(parent, "1-3", steps=20_000, checkpoint_interval=0)
    # Both seeds training (a run writes its config.yaml once its Ctrl-C handler is in place).
    _wait(lambda: all((parent / f"seed_{k}" / "config.yaml").is_file() for k in (1, 2)))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert f"rlkit train --resume {parent}" in stderr
    for seed in (1, 2):  # each running seed saved a checkpoint on the way out
        assert any((parent / f"seed_{seed}" / "checkpoints").iterdir())
    assert not (parent / "seed_3").exists()  # never started
    result = _rlkit("train", "--resume", parent, "--no-progress", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert json.loads((parent / "experiment.json").read_text())["finished"] == [1, 2, 3]


def test_report_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(_rlkit("report", tmp_path / "empty"), "no runs in")
    _one_line_error(_rlkit("report", tmp_path / "missing"), "is not a folder")


def test_report_compares_configs_and_refuses_mixed_envs(tmp_path):
    runs = {}
    for name, config, seeds in (
        ("ppo", "configs/ppo_cartpole.yaml", "1,2"),
        ("a2c", "configs/a2c_cartpole.yaml", "1,2"),
        ("acrobot", "configs/ppo_acrobot.yaml", "1"),
    ):
        runs[name] = tmp_path / name
        result = _rlkit("train", config, "--seeds", seeds, "--jobs", "2", *TINY,
                        "--run-dir", runs[name], "--no-progress")  # fmt: skip
        assert result.returncode == 0, result.stderr
    out = tmp_path / "cmp"
    result = _rlkit("report", runs["ppo"], runs["a2c"], "--out", out)
    assert result.returncode == 0, result.stderr
    labels = [c["label"] for c in json.loads((out / "summary.json").read_text())["configs"]]
    assert labels == ["ppo", "a2c"]
    rows = (out / "curves.csv").read_text().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == {"ppo", "a2c"}
    assert (out / "curves.png").is_file()
    _one_line_error(
        _rlkit("report", runs["ppo"], runs["acrobot"], "--out", tmp_path / "mixed"),
        "different envs",
    )
    result = _rlkit("report", runs["ppo"], runs["acrobot"], "--out", tmp_path / "mixed",
                    "--allow-mixed")  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_seed_refused_alone_fails_alone(tmp_path):
    # eval_seed 20 overlaps seed 15's training env seeds (15-22) but not seed 1's (1-8):
    # seed 15 is refused, seed 1 trains; that is a failed seed, not a bad config.
    parent = tmp_path / "exp"
    result = _rlkit(
        "train", "configs/ppo_cartpole.yaml", "--seeds", "1,15", "--jobs", "2", *TINY,
        "--set", "eval_seed=20", "--run-dir", parent, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "seed 15 FAILED (eval_seed 20 overlaps the training env seeds 15-22" in result.stderr
    assert (parent / "seed_1" / "agent.safetensors").is_file()
    assert json.loads((parent / "experiment.json").read_text())["finished"] == [1]
