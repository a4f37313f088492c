"""Agent files and checkpoints move between CPU and GPU, both ways.

tests/fixtures/ holds tiny unfinished runs written by tests/fixtures/make_device_fixtures.py
on a CPU and on a CUDA GPU. Each one must load, evaluate and resume on every device type this
machine has: on its own device type exactly as before, on another one deterministically and
with a one-line notice. The CUDA-written fixtures are what a GPU run writes, so this runs on
CPU-only machines too.
"""

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import agents
from rlkit.agent.files import DeviceChangeWarning, generator_state, restore_generator
from rlkit.io.checkpoint import list_checkpoints, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUNS = sorted(path.name for path in FIXTURES.glob("*_run"))
DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def test_the_cuda_fixtures_are_shipped():
    assert {"cuda_dqn_run", "cuda_ppo_run", "cpu_dqn_run", "cpu_ppo_run"} <= set(RUNS)


def _copy(run: str, tmp_path: Path) -> Path:
    target = tmp_path / run
    shutil.copytree(FIXTURES / run, target)
    return target


def _resume(run_dir: Path, device: str):
    written_on = run_dir.name.split("_")[0]  # cpu_dqn_run -> cpu
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent = agents.from_checkpoint(run_dir, device=device)
    notices = [w for w in caught if issubclass(w.category, DeviceChangeWarning)]
    assert len(notices) == (written_on != device), [str(w.message) for w in caught]
    assert agent.device.type == device
    agent.learn(resume=True, run_dir=run_dir, checkpoint_interval=400)
    agent.close()
    return agent


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("run", RUNS)
def test_agent_files_load_and_act_on_any_device(run, device):
    for name in ("agent.safetensors", "best_agent.safetensors"):
        agent = agents.load(FIXTURES / run / name, device=device)
        assert agent.device.type == device
        result = agent.evaluate(2)
        assert len(result.returns) == 2 and min(result.returns) >= 1
        agent.close()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("run", RUNS)
def test_checkpoints_resume_on_any_device_deterministically(run, device, tmp_path):
    first = _resume(_copy(run, tmp_path / "a"), device)
    second = _resume(_copy(run, tmp_path / "b"), device)
    assert first.global_step == second.global_step == 800  # the run's end
    weights_a, weights_b = first._state_tensors(), second._state_tensors()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    _, state = read_checkpoint(list_checkpoints(tmp_path / "a" / run)[-1])
    assert state["device_type"] == device and state["counters"]["global_step"] == 800
    # The best score came through the device change with the rest.
    assert state["validation"]["best_mean"] is not None


@pytest.mark.parametrize("run", [r for r in RUNS if not r.startswith("cpu")] or ["none"])
def test_cli_resumes_a_gpu_run_on_the_cpu_with_a_one_line_notice(run, tmp_path):
    if run == "none":
        pytest.skip("no fixture written on a GPU")
    run_dir = _copy(run, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "train", "--resume", str(run_dir), "--device", "cpu",
         "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(notices) == 1 and "written on cuda and resumes on cpu" in notices[0]
    assert "Traceback" not in result.stderr
    evaluated = subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "eval", str(run_dir), "--episodes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize("device", DEVICES)
def test_generator_states_round_trip_or_reseed_across_device_types(device):
    generator = torch.Generator(device=device).manual_seed(7)
    saved = generator_state(generator)
    expected = torch.randint(0, 10**6, (8,), generator=generator, device=device)
    same = torch.Generator(device=device)
    restore_generator(same, saved)
    assert torch.equal(torch.randint(0, 10**6, (8,), generator=same, device=device), expected)
    # A state saved on another device type re-seeds, deterministically.
    other = {"device_type": "cuda" if device == "cpu" else "cpu", "state": saved["state"]}
    draws = []
    for _ in range(2):
        fresh = torch.Generator(device=device)
        restore_generator(fresh, other)
        draws.append(torch.randint(0, 10**6, (8,), generator=fresh, device=device))
    assert torch.equal(draws[0], draws[1])
