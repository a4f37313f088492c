"""Learning results over many seeds: train a config from the CLI, then evaluate greedily.

    .venv/bin/python benchmarks/learning.py configs/dqn_cartpole.yaml --seeds 1-20

Each seed trains in its own process (`--jobs` at a time, one torch thread each) with the
config's periodic evaluation, which keeps the best agent. Then the final agent and the best
agent each play `--episodes` greedy episodes on the run's test seeds (training seed + 10,000),
which neither training nor the choice of the best agent saw. Prints the CPU model (float
rounding, and so the learning curve, differs between CPUs), a markdown table per seed and
"k/N seeds >= threshold" with mean +/- std over seeds, for the final and the best agent.

`--metric nonnegative` scores the share of episodes with a return >= 0 (wins or draws in
tic-tac-toe) instead of the mean return.
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
from rlkit.agent.evaluation import seed_for_testing  # noqa: E402
from rlkit.base.device import describe_cpu  # noqa: E402
from rlkit.experiments import seeds as experiment  # noqa: E402


def parse_seeds(text: list[str]) -> list[int]:
    """`1-20`, `1 2 3` or `1,4,7` (the words of `--seeds`), as `rlkit train --seeds` reads
    them."""
    return experiment.parse_seeds(",".join(text))


def train(config: str, seed: int, run_dir: Path, overrides: list[str]) -> float:
    command = [
        sys.executable, "-m", "rlkit.cli", "train", config, "--seed", str(seed),
        "--run-dir", str(run_dir), "--no-progress", "--set", "torch_threads=1",
    ]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{result.stderr}")
    return time.perf_counter() - start


def score(path: Path, seed: int, episodes: int, metric: str) -> tuple[float, float, int]:
    """(score, std of the returns, the agent's step) on the test seeds."""
    agent = agents.load(path, device="cpu")
    result = agent.evaluate(episodes, seed=seed_for_testing(seed))
    agent.close()
    returns = np.asarray(result.returns)
    value = float(np.mean(returns >= 0)) if metric == "nonnegative" else float(returns.mean())
    return value, float(returns.std()), agent.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", nargs="+", default=["1-3"], help="1-20, 1 2 3 or 1,4,7")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=475.0)
    parser.add_argument("--metric", choices=("mean", "nonnegative"), default="mean")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(args.config).stem
    run_dirs = {seed: ROOT / args.out / f"{name}_{stamp}" / f"s{seed}" for seed in seeds}
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            seed: pool.submit(train, args.config, seed, run_dirs[seed], args.overrides)
            for seed in seeds
        }
        wall = {seed: future.result() for seed, future in futures.items()}

    label = "win-or-draw rate" if args.metric == "nonnegative" else "mean return"
    print(f"{args.config} {' '.join('--set ' + o for o in args.overrides)}".strip())
    print(f"CPU: {describe_cpu()}")
    print(
        f"greedy evaluation: {args.episodes} episodes per agent on the test seeds "
        f"(training seed + 10,000); score: {label}"
    )
    print("| seed | final | final std | best agent's step | best | best std | wall time (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    finals, bests = [], []
    for seed in seeds:
        final, final_std, _ = score(
            run_dirs[seed] / "agent.safetensors", seed, args.episodes, args.metric
        )
        best_file = run_dirs[seed] / "best_agent.safetensors"
        best, best_std, best_step = (
            score(best_file, seed, args.episodes, args.metric)
            if best_file.exists()
            else (float("nan"), float("nan"), -1)
        )
        finals.append(final)
        bests.append(best)
        print(
            f"| {seed} | {final:.3g} | {final_std:.1f} | {best_step:,} | {best:.3g} | "
            f"{best_std:.1f} | {wall[seed]:.0f} |"
        )
    print()
    for which, values in (("final", finals), ("best", bests)):
        values = np.asarray(values)
        reached = int(np.sum(values >= args.threshold))
        print(
            f"{which} agent: {reached}/{len(values)} seeds >= {args.threshold:g}; "
            f"{label} over seeds {np.mean(values):.4g} +/- {np.std(values):.3g} "
            f"(min {np.min(values):.4g})"
        )
    print(
        f"median wall time {np.median(list(wall.values())):.0f} s per run "
        f"({args.jobs} runs in parallel, 1 torch thread each)"
    )


if __name__ == "__main__":
    main()
