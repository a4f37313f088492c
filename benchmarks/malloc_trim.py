"""What keeping freed memory (rlkit.base.malloc, set when training starts on the CPU) saves per SAC
update: fresh processes alternated, with the setting and without it (the run loop's call
replaced by a no-op), each timing `--updates` updates in rounds after 1,000 training steps.

    .venv/bin/python benchmarks/malloc_trim.py [--pairs 5] [--agent sac|td3]

Prints each process's median ms per update over its rounds and its page faults per update,
then the median of the pairwise ratios (kept / plain). Run nothing else meanwhile.
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
import json, resource, statistics, sys, time
import torch
import agents
import rlkit.agent.run_loop
from rlkit.base.malloc import keep_freed_memory
mode, name, updates = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "plain":
    rlkit.agent.run_loop.keep_freed_memory = lambda: False
torch.set_num_threads(2)
agent = agents.agent_class(name)(env="Pendulum-v1", seed=1, learning_starts=100,
                                 optimizer={"lr": 1e-3})
agent.learn(1_000)
times = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    start = time.perf_counter()
    for _ in range(updates):
        agent._update()
    times.append((time.perf_counter() - start) / updates * 1e3)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (8 * updates)
print(json.dumps({"ms": statistics.median(times), "faults": faults}))
"""


def run(mode: str, agent: str, updates: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, mode, agent, str(updates)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--agent", choices=["sac", "td3"], default="sac")
    parser.add_argument("--updates", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from rlkit.base.device import describe_cpu

    print(f"# {args.agent} at the Zoo's sizes, {describe_cpu()}, 2 threads\n")
    print("| pair | plain ms | plain faults | kept ms | kept faults | kept / plain |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for pair in range(1, args.pairs + 1):
        plain = run("plain", args.agent, args.updates)
        kept = run("kept", args.agent, args.updates)
        ratios.append(kept["ms"] / plain["ms"])
        print(
            f"| {pair} | {plain['ms']:.2f} | {plain['faults']:.1f} | {kept['ms']:.2f} "
            f"| {kept['faults']:.1f} | {ratios[-1]:.2f} |",
            flush=True,
        )
    print(f"\nmedian kept / plain: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
