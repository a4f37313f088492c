"""Terminal-reward targets: environment steps until DQN first reaches a win-or-draw rate.

    .venv/bin/python benchmarks/terminal_reward.py --betas 0 0.5 --seeds 1 2 3 4 5

Trains `configs/dqn_tictactoe.yaml` (tic-tac-toe against the random opponent) once per beta_mc
and seed, every other setting equal. Every `--check` steps the greedy agent plays `--games`
games on fixed evaluation seeds; the first step at which its win-or-draw rate reaches each
threshold is recorded. Runs `--jobs` trainings in parallel (one torch thread each) and prints a
markdown table per threshold plus the final rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def win_or_draw_rate(agent, games: int) -> float:
    result = agent.evaluate(games, seed=50_000)
    return sum(r >= 0 for r in result.returns) / len(result.returns)


def run(config: str, beta_mc: float, seed: int, steps: int, check: int, games: int, thresholds):
    import torch

    import agents
    from rlkit.experiments.run_config import load_run_config

    torch.set_num_threads(1)
    _, agent_config = load_run_config(config, [f"beta_mc={beta_mc}", f"seed={seed}"])
    agent = agents.DQN(config=agent_config)
    first: dict[float, int | None] = dict.fromkeys(thresholds)
    curve: list[float] = []

    def on_check(agent) -> None:
        rate = win_or_draw_rate(agent, games)
        curve.append(rate)
        for threshold in thresholds:
            if first[threshold] is None and rate >= threshold:
                first[threshold] = agent.global_step

    agent.learn(steps, callback=on_check, callback_interval=check)
    final = win_or_draw_rate(agent, 500)
    return beta_mc, seed, first, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/dqn_tictactoe.yaml")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--check", type=int, default=500)
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.9, 0.97])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    jobs = [(b, s) for b in args.betas for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run, args.config, b, s, args.steps, args.check, args.games, args.thresholds)
            for b, s in jobs
        ]
        results = [f.result() for f in futures]

    print(
        f"{args.config}: steps until the greedy win-or-draw rate over {args.games} games "
        f"first reaches the threshold (checked every {args.check} steps, budget {args.steps})"
    )
    for threshold in args.thresholds:
        print(f"\nthreshold {threshold:.0%}")
        print(
            "| beta_mc | " + " | ".join(f"seed {s}" for s in args.seeds) + " | median | reached |"
        )
        print("| ---: |" + " ---: |" * (len(args.seeds) + 2))
        for beta in args.betas:
            firsts = [first[threshold] for b, _, first, _ in results if b == beta]
            cells = [str(f) if f is not None else "-" for f in firsts]
            reached = [f for f in firsts if f is not None]
            # Seeds that never reach the threshold count as the budget in the median.
            median = statistics.median([f if f is not None else args.steps for f in firsts])
            print(
                f"| {beta:g} | "
                + " | ".join(cells)
                + f" | {median:g} | {len(reached)}/{len(firsts)} |"
            )
    print("\nfinal win-or-draw rate over 500 games")
    print("| beta_mc | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("| ---: |" + " ---: |" * len(args.seeds))
    for beta in args.betas:
        finals = [final for b, _, _, final in results if b == beta]
        print(f"| {beta:g} | " + " | ".join(f"{f:.3f}" for f in finals) + " |")


if __name__ == "__main__":
    main()
