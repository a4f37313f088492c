"""What numpy's BLAS on one thread during `learn` (rlkit.base.threads) saves: fresh processes
alternated, with the setting and without it (the run loop's context replaced by a no-op, numpy's
OpenBLAS pool left at torch_threads, as `rlkit train` set it before), each timing a whole
`learn` of a shipped config, and a hash of the trained weights to show the two train the same
agent.

    .venv/bin/python benchmarks/numpy_blas_threads.py [--pairs 3] \
        [--config configs/sac_pendulum.yaml] [--steps 4000]

Prints each pair's seconds and ms per env step, then the median of the pairwise ratios
(one thread / pool). Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import contextlib, hashlib, json, sys, tempfile, time
import torch
from threadpoolctl import threadpool_limits
import agents
import rlkit.agent.core
import rlkit.agent.run_loop
from rlkit.experiments.run_config import load_run_config
mode, config, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
run, agent_config = load_run_config(config, ["eval_interval=0"], seed=1, device="cpu")
threads = run.torch_threads or torch.get_num_threads()
torch.set_num_threads(threads)
threadpool_limits(limits=threads, user_api="blas")
if mode == "pool":
    rlkit.agent.core.single_threaded_numpy_blas = contextlib.nullcontext
    rlkit.agent.run_loop.single_threaded_numpy_blas = contextlib.nullcontext
agent = agents.agent_class(run.agent)(config=agent_config)
start = time.perf_counter()
agent.learn(steps)
seconds = time.perf_counter() - start
with tempfile.TemporaryDirectory() as folder:  # the saved agent: every weight and setting
    agent.save(f"{folder}/agent.safetensors")
    digest = hashlib.sha256(open(f"{folder}/agent.safetensors", "rb").read())
print(json.dumps({"s": seconds, "steps": agent.global_step, "threads": threads,
                  "weights": digest.hexdigest()[:16]}))
"""


def run(mode: str, config: str, steps: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, mode, config, str(steps)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--config", default="configs/sac_pendulum.yaml")
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rlkit.base.device import describe_cpu

    print(f"# {describe_cpu()}; {args.config}, {args.steps} steps, seed 1")
    print(
        "| pair | one thread s | pool s | one thread ms/step | pool ms/step | ratio | same agent |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for pair in range(1, args.pairs + 1):
        one, pool = run("one", args.config, args.steps), run("pool", args.config, args.steps)
        ratios.append(one["s"] / pool["s"])
        per_step = [r["s"] / r["steps"] * 1e3 for r in (one, pool)]
        print(f"| {pair} | {one['s']:.1f} | {pool['s']:.1f} | {per_step[0]:.2f} | "
              f"{per_step[1]:.2f} | {ratios[-1]:.3f} | {one['weights'] == pool['weights']} |",
              flush=True)  # fmt: skip
    print(f"\nmedian one-thread / pool time: {statistics.median(ratios):.3f} "
          f"(torch threads {one['threads']})")  # fmt: skip


if __name__ == "__main__":
    main()
