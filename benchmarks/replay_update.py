"""Time per SAC or TD3 gradient step on Pendulum-v1 (batch 256; networks of the Zoo's sizes
unless --hidden: SAC 256x256, TD3 400x300): autograd (fast_mlp=false) and the written-out
gradients (rlkit.nn.sac_grad, rlkit.nn.td3_grad; the default), each under torch's "highest" and
"medium" float32 matmul precision, alternated.

    .venv/bin/python benchmarks/replay_update.py [--agent sac|td3] [--hidden 64 64] \
        [--threads 2] [--rounds 3]

One agent per path trains 1,000 steps (so the buffer holds real transitions), then each round
times 200 updates under each setting (TD3: an actor step every second update, as in training).
Run nothing else meanwhile.
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
from rlkit.base.device import describe_cpu

ZOO_HIDDEN = {"sac": [256, 256], "td3": [400, 300]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=["sac", "td3"], default="sac")
    parser.add_argument("--hidden", type=int, nargs="+", help="hidden sizes (default: Zoo's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hidden = args.hidden or ZOO_HIDDEN[args.agent]
    print(
        f"# {args.agent} {hidden}, {describe_cpu()}, torch {torch.__version__}, "
        f"{args.threads} threads"
    )
    paths = {}
    for name, fast in (("autograd", False), ("written-out", True)):
        paths[name] = agents.agent_class(args.agent)(
            env="Pendulum-v1", seed=1, learning_starts=100, optimizer={"lr": 1e-3},
            fast_mlp=fast, network={"hidden_sizes": hidden},
        )  # fmt: skip
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
