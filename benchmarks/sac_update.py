"""Time per SAC gradient step on Pendulum-v1 at the Zoo's sizes (batch 256, 256x256 actor and
critics), under torch's "highest" and "medium" float32 matmul precision, alternated.

    .venv/bin/python benchmarks/sac_update.py [--threads 2] [--rounds 3]

One agent trains 1,000 steps (so the buffer holds real transitions), then each round times 200
updates under each setting. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import agents
from rlkit.device import describe_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_cpu()}, torch {torch.__version__}, {args.threads} threads")
    agent = agents.SAC(env="Pendulum-v1", seed=1, learning_starts=100, optimizer={"lr": 1e-3})
    agent.learn(1_000)
    times: dict[str, list[float]] = {"highest": [], "medium": []}
    previous = torch.get_float32_matmul_precision()
    try:
        for _ in range(args.rounds):
            for precision in times:
                torch.set_float32_matmul_precision(precision)
                for _ in range(20):
                    agent._update()
                start = time.perf_counter()
                for _ in range(args.updates):
                    agent._update()
                times[precision].append((time.perf_counter() - start) / args.updates * 1e3)
    finally:
        torch.set_float32_matmul_precision(previous)
    print("\n| precision | ms per update (each round) | median |")
    print("|---|---|---:|")
    for precision, values in times.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {precision} | {rounds} | {statistics.median(values):.2f} |")
    ratio = statistics.median(times["medium"]) / statistics.median(times["highest"])
    print(f"\nmedium / highest: {ratio:.2f}")


if __name__ == "__main__":
    main()
