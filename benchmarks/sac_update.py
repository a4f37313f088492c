"""Time per SAC gradient step on Pendulum-v1 at the Zoo's sizes (batch 256, 256x256 actor and
critics): autograd (fast_mlp=false) and the written-out gradients (rlkit.sac_grad, the
default), each under torch's "highest" and "medium" float32 matmul precision, alternated.

    .venv/bin/python benchmarks/sac_update.py [--threads 2] [--rounds 3]

One agent per path trains 1,000 steps (so the buffer holds real transitions), then each round
times 200 updates under each setting. Run nothing else meanwhile.
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
    paths = {}
    for name, fast in (("autograd", False), ("written-out", True)):
        paths[name] = agents.SAC(
            env="Pendulum-v1", seed=1, learning_starts=100, optimizer={"lr": 1e-3}, fast_mlp=fast
        )
        paths[name].learn(1_000)
    settings = [(path, precision) for path in paths for precision in ("highest", "medium")]
    times: dict[tuple[str, str], list[float]] = {setting: [] for setting in settings}
    previous = torch.get_float32_matmul_precision()
    try:
        for _ in range(args.rounds):
            for path, precision in settings:
                torch.set_float32_matmul_precision(precision)
                agent = paths[path]
                for _ in range(20):
                    agent._update()
                start = time.perf_counter()
                for _ in range(args.updates):
                    agent._update()
                times[path, precision].append((time.perf_counter() - start) / args.updates * 1e3)
    finally:
        torch.set_float32_matmul_precision(previous)
    print("\n| gradients | precision | ms per update (each round) | median |")
    print("|---|---|---|---:|")
    for (path, precision), values in times.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {path} | {precision} | {rounds} | {statistics.median(values):.2f} |")
    base = statistics.median(times["autograd", "highest"])
    for setting in settings[1:]:
        ratio = statistics.median(times[setting]) / base
        print(f"{setting[0]}, {setting[1]} / autograd, highest: {ratio:.2f}")


if __name__ == "__main__":
    main()
