"""Where a whole `rlkit train` process spends its time, from the moment it starts to its exit.

    python benchmarks/process_breakdown.py configs/dqn_cartpole.yaml
    python benchmarks/process_breakdown.py configs/ppo_cartpole_zoo.yaml --set torch_threads=1

Runs `rlkit train CONFIG` (the CLI's own `main`, with the config's evaluations, checkpoints and
TensorBoard files, in a temporary run folder) in a fresh process whose phases are timed by
wrapping the functions that do them: importing torch and the rest, making the agent (its
environments included), then inside `learn` the agent's updates (`_update`), the environment
steps (`env.step`), the periodic evaluations, checkpoints and TensorBoard writes, and what is
left of the loop (choosing actions, storing transitions, Python); then the final save and the
test of the final and best agents. The wrappers cost about a microsecond a call. Prints one
table per run with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, os, sys, time
started = float(os.environ["BREAKDOWN_START"])
t_python = time.time()
import torch
t_torch = time.time()
import agents, rlkit.agent.core as core, rlkit.agent.run_loop as run_loop, rlkit.cli.train as train
from rlkit.io.recorder import RunMonitor
t_imports = time.time()
spent = {}

def timed(owner, name, key):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
    setattr(owner, name, wrapper)

init = core.Agent.__init__
def agent_init(self, *args, **kwargs):  # the trained agent (the best one is made in its test)
    start = time.perf_counter()
    init(self, *args, **kwargs)
    if "making the agent and its envs" not in spent:
        timed(self.env, "step", "env steps")
        spent["making the agent and its envs"] = time.perf_counter() - start
core.Agent.__init__ = agent_init
for cls in agents.AGENTS.values():
    timed(cls, "_update", "updates")
timed(core.Agent, "learn", "learn")
timed(run_loop.RunLoop, "_validate", "periodic evaluations")
timed(core.Agent, "save_checkpoint", "checkpoints")
for name in ("record_scalars", "record_episodes", "record_evaluation"):
    timed(RunMonitor, name, "TensorBoard writes")
timed(train, "_test_final_and_best", "final and best agents' test")

from rlkit.cli import main
code = main(sys.argv[1:])
t_end = time.time()
print(json.dumps({"code": code, "spent": spent, "python": t_python - started,
                  "torch": t_torch - t_python, "imports": t_imports - t_torch,
                  "total": t_end - started, "threads": torch.get_num_threads()}))
"""


def breakdown(config: str, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", RUNNER, "train", config, "--run-dir",
                   f"{folder}/run", "--no-progress"]  # fmt: skip
        for override in overrides:
            command += ["--set", override]
        env = {**os.environ, "BREAKDOWN_START": repr(time.time())}
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rlkit.base.device import describe_cpu

    print(f"CPU: {describe_cpu()}")
    for config in args.configs:
        data = breakdown(config, args.overrides)
        spent = data["spent"]
        inside = ("updates", "env steps", "periodic evaluations", "checkpoints",
                  "TensorBoard writes")  # fmt: skip
        rows = [
            ("Python start", data["python"]),
            ("import torch", data["torch"]),
            ("import rlkit and the rest", data["imports"]),
            ("making the agent and its envs", spent.get("making the agent and its envs", 0.0)),
            *[(f"learn: {key}", spent.get(key, 0.0)) for key in inside],
            ("learn: the rest (acting, storing, the loop)",
             spent.get("learn", 0.0) - sum(spent.get(key, 0.0) for key in inside)),
            ("final and best agents' test", spent.get("final and best agents' test", 0.0)),
        ]  # fmt: skip
        accounted = sum(seconds for _, seconds in rows)
        rows.append(("the rest (config, saving, exit)", data["total"] - accounted))
        print(f"\n{config} {' '.join('--set ' + o for o in args.overrides)}".rstrip())
        print(f"torch threads {data['threads']}; whole process {data['total']:.1f} s\n")
        print("| phase | seconds | share |\n| --- | ---: | ---: |")
        for phase, seconds in rows:
            print(f"| {phase} | {seconds:.2f} | {seconds / data['total']:.0%} |")


if __name__ == "__main__":
    main()
