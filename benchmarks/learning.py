"""Learning results over several seeds: train a config from the CLI, then evaluate greedily.

    .venv/bin/python benchmarks/learning.py configs/dqn_cartpole.yaml --seeds 1 2 3 4 5 6 7 8

Each seed trains in its own process (`--jobs` at a time, one torch thread each), then its final
agent plays `--episodes` greedy episodes on evaluation seeds it never trained on. Prints a
markdown table: per-seed mean and std of the return, training wall time, and a summary line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents  # noqa: E402


def train(config: str, seed: int, run_dir: Path, overrides: list[str]) -> float:
    command = [
        sys.executable, "-m", "rlkit.cli", "train", config, "--seed", str(seed),
        "--run-dir", str(run_dir), "--no-progress",
        "--set", "eval_episodes=0", "--set", "torch_threads=1",
    ]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{result.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(args.config).stem
    run_dirs = {seed: ROOT / args.out / f"{name}_{stamp}" / f"s{seed}" for seed in args.seeds}
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            seed: pool.submit(train, args.config, seed, run_dirs[seed], args.overrides)
            for seed in args.seeds
        }
        wall = {seed: future.result() for seed, future in futures.items()}

    print(f"{args.config} {' '.join('--set ' + o for o in args.overrides)}".strip())
    print(f"greedy evaluation: {args.episodes} episodes per seed, evaluation seeds 10000+seed")
    print("| seed | mean return | std | train wall time (s) |")
    print("| ---: | ---: | ---: | ---: |")
    means = []
    for seed in args.seeds:
        agent = agents.load(run_dirs[seed] / "agent.safetensors", device="cpu")
        result = agent.evaluate(args.episodes, seed=10_000 + seed)
        agent.close()
        means.append(result.mean_return)
        print(f"| {seed} | {result.mean_return:.1f} | {result.std_return:.1f} | {wall[seed]:.0f} |")
    solved = sum(mean >= args.threshold for mean in means)
    print(
        f"\n{solved}/{len(means)} seeds >= {args.threshold:g}; mean over seeds "
        f"{np.mean(means):.1f}; median wall time {np.median(list(wall.values())):.0f} s "
        f"({args.jobs} runs in parallel, 1 torch thread each)"
    )


if __name__ == "__main__":
    main()
