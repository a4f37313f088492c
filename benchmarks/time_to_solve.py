"""Time to solve CartPole-v1: rlkit's default configs against SB3 with the zoo configs.

    make bench-setup
    .venv/bin/python benchmarks/time_to_solve.py --seeds 1 2 3 4 5

Training pauses every 2,500 env steps (DQN) or 5,000 (PPO) for a greedy evaluation over 20
episodes; the time-to-solve is the training wall time (evaluations excluded) until that mean
first reaches 475. The final evaluation at the end of the budget (50k DQN, 100k PPO) shows
whether the run is still solved: a run that solves and then collapses has not solved. rlkit and
SB3 alternate seed by seed (A B A B), each run in a fresh process, one at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from vs_sb3 import run_worker

DEFAULT_CONFIGS = {"dqn": "configs/dqn_cartpole.yaml", "ppo": "configs/ppo_cartpole.yaml"}
CHECK_EVERY = {"dqn": 2_500, "ppo": 5_000}


def _cell(result: dict) -> str:
    if result["solved_s"] is None:
        return "not solved"
    return f"{result['solved_s']:.1f} s @ {result['solved_step']:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--algos", nargs="+", default=["dqn", "ppo"], choices=["dqn", "ppo"])
    args = parser.parse_args()

    for algo in args.algos:
        every = str(CHECK_EVERY[algo])
        rows = []
        for seed in args.seeds:
            ours = run_worker(
                "rlkit", algo, str(seed), "--config", DEFAULT_CONFIGS[algo], "--check-every", every
            )
            theirs = run_worker("sb3", algo, str(seed), "--check-every", every)
            rows.append((seed, ours, theirs))
            print(
                f"# {algo} seed {seed}: rlkit {_cell(ours)}, SB3 {_cell(theirs)}", file=sys.stderr
            )
        print(
            f"\n### {algo.upper()} time to solve CartPole-v1: rlkit {DEFAULT_CONFIGS[algo]} vs "
            f"SB3 zoo (eval every {CHECK_EVERY[algo]:,} steps)\n"
        )
        print("| seed | rlkit solved | SB3 solved | ratio | rlkit final | SB3 final |")
        print("| --- | --- | --- | --- | --- | --- |")
        ratios = []
        for seed, ours, theirs in rows:
            ratio = None
            if ours["solved_s"] is not None and theirs["solved_s"] is not None:
                ratio = ours["solved_s"] / theirs["solved_s"]
                ratios.append(ratio)
            print(
                f"| {seed} | {_cell(ours)} | {_cell(theirs)} "
                f"| {'-' if ratio is None else f'{ratio:.2f}'} "
                f"| {ours['final_eval']:.1f} | {theirs['final_eval']:.1f} |"
            )

        def summary(index: int, rows=rows) -> str:
            results = [row[index] for row in rows]
            times = [r["solved_s"] for r in results if r["solved_s"] is not None]
            still = sum(r["solved_s"] is not None and r["final_eval"] >= 475 for r in results)
            median = f"{statistics.median(times):.1f} s" if times else "n/a"
            return (
                f"solved {len(times)}/{len(results)}, still solved at the end {still}/"
                f"{len(results)}, median time to solve {median}"
            )

        print(f"\nrlkit: {summary(1)}\nSB3:   {summary(2)}")
        medians = [
            statistics.median(times) if times else None
            for times in (
                [r[i]["solved_s"] for r in rows if r[i]["solved_s"] is not None] for i in (1, 2)
            )
        ]
        if None not in medians:
            print(f"ratio of the median times to solve, rlkit/SB3: {medians[0] / medians[1]:.2f}")
        if ratios:
            print(
                "median of the per-seed ratios (seeds both solved): "
                f"{statistics.median(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
