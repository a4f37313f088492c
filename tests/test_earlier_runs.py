"""Run folders written by an earlier rlkit still load, evaluate, resume and report.

tests/fixtures/earlier_runs/ holds a DQN, a PPO and a SAC run that rlkit 0490a39 (the flat
rlkit/ package, before the layered one) wrote through `rlkit train` and that a Ctrl-C stopped
half way (tests/fixtures/make_earlier_runs.py). A user upgrading rlkit has such folders on disk.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import agents
from rlkit.io.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
EARLIER = Path(__file__).resolve().parent / "fixtures" / "earlier_runs"
RUNS = ["dqn", "ppo", "sac"]


def rlkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlkit.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_fixtures_are_shipped():
    assert sorted(p.name for p in EARLIER.iterdir() if p.is_dir()) == RUNS


@pytest.mark.parametrize("run", RUNS)
def test_agent_files_load_every_tensor_and_agree_with_the_checkpoint(run):
    folder = EARLIER / run
    for name in ("agent.safetensors", "best_agent.safetensors"):
        agent = agents.load(folder / name, device="cpu")
        saved = load_file(folder / name)
        loaded = agent._state_tensors()
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)
        agent.close()
    # The Ctrl-C saved the agent and a checkpoint at the same step: the two loaders agree.
    final = agents.load(folder / "agent.safetensors", device="cpu")
    restored = agents.from_checkpoint(folder, device="cpu")
    assert restored.global_step == final.global_step > 0
    weights = final._state_tensors()
    assert all(torch.equal(weights[k], v) for k, v in restored._state_tensors().items())
    final.close()
    restored.close()


@pytest.mark.parametrize("run", RUNS)
def test_the_cli_evaluates_resumes_and_reports_an_earlier_run(run, tmp_path):
    evaluated = rlkit("eval", str(EARLIER / run), "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert len(json.loads(evaluated.stdout)["returns"]) == 2

    copies = []
    for name in ("a", "b"):
        copy = tmp_path / name / run
        shutil.copytree(EARLIER / run, copy)
        resumed = rlkit("train", "--resume", str(copy), "--no-progress")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming" in resumed.stderr and "Traceback" not in resumed.stderr
        copies.append(copy)
    # The run went on to its end, as the uninterrupted one would, and the same way twice.
    assert list_checkpoints(copies[0])[-1].step == 2_000
    files = [load_file(c / "agent.safetensors") for c in copies]
    assert all(torch.equal(files[0][k], files[1][k]) for k in files[0])

    reported = rlkit("report", str(copies[0]), "--out", str(tmp_path / "report"))
    assert reported.returncode == 0, reported.stderr
    (seed,) = json.loads((tmp_path / "report" / "summary.json").read_text())["configs"][0]["seeds"]
    assert seed["seed"] == 3 and seed["last_eval_step"] == 2_000
    assert seed["final"] is not None and seed["best"] is not None
    # The untouched earlier run reports too (unfinished: no test returns yet).
    unfinished = rlkit("report", str(EARLIER / run), "--out", str(tmp_path / "unfinished"))
    assert unfinished.returncode == 0, unfinished.stderr
