"""Sample efficiency against Stable-Baselines3 at identical hyperparameters: environment steps
until the greedy policy first solves CartPole-v1, over many seeds.

    make bench-setup
    .venv/bin/python benchmarks/sample_efficiency.py --algo ppo --seeds 1-20

rlkit trains its shipped config (configs/ppo_cartpole.yaml: RL-Zoo's hyperparameters), SB3
the zoo's. Every `--check-every` env steps (a multiple of PPO's 256-step rollout: both sides
are checked right after the update on the same amount of data), training pauses for a greedy
evaluation over 20 episodes on the same evaluation seeds for both (10,000 + seed); the
steps-to-solve is the first check whose mean reaches 475. Wall time does not count here, so
runs go `--jobs` at a time, each in its own process.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

from learning import parse_seeds  # (puts the repository on sys.path)
from vs_sb3 import run_worker

from rlkit.base.device import describe_cpu

CONFIGS = {"dqn": "configs/dqn_cartpole.yaml", "ppo": "configs/ppo_cartpole.yaml"}


def _logged(name: str, seed: int, result: dict) -> dict:
    print(f"# {name} seed {seed}: solved at {result['solved_step']}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=list(CONFIGS), default="ppo")
    parser.add_argument("--seeds", nargs="+", default=["1-20"])
    parser.add_argument("--check-every", type=int, default=2_048)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--rlkit-only", action="store_true", help="skip SB3 (to compare rlkit settings)"
    )
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    # One run per core: more torch threads than cores makes OpenMP's threads wait on each
    # other (steps counted here do not change, but a run can take 10x as long).
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    every = str(args.check_every)
    rlkit_args = ["--config", CONFIGS[args.algo], "--check-every", every]
    for override in args.overrides:
        rlkit_args += ["--set", override]

    with ThreadPoolExecutor(args.jobs) as pool:
        ours = {s: pool.submit(run_worker, "rlkit", args.algo, str(s), *rlkit_args) for s in seeds}
        theirs = {
            s: pool.submit(run_worker, "sb3", args.algo, str(s), "--check-every", every)
            for s in ([] if args.rlkit_only else seeds)
        }
        ours = {s: _logged("rlkit", s, f.result()) for s, f in ours.items()}
        theirs = {s: _logged("SB3", s, f.result()) for s, f in theirs.items()}

    def steps(result: dict) -> float:
        return math.inf if result["solved_step"] is None else result["solved_step"]

    def cell(value: float) -> str:
        return "not solved" if value == math.inf else f"{value:,.0f}"

    overrides = " ".join(f"--set {o}" for o in args.overrides)
    print(f"### {args.algo.upper()} CartPole-v1: rlkit {CONFIGS[args.algo]} {overrides} vs SB3 zoo")
    print(f"CPU: {describe_cpu()}; greedy check every {args.check_every:,} steps, 20 episodes\n")
    if args.rlkit_only:
        theirs = {s: {"solved_step": None, "final_eval": float("nan")} for s in seeds}
    print("| seed | rlkit steps to 475 | SB3 steps to 475 | rlkit final | SB3 final |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for s in seeds:
        print(
            f"| {s} | {cell(steps(ours[s]))} | {cell(steps(theirs[s]))} | "
            f"{ours[s]['final_eval']:.1f} | {theirs[s]['final_eval']:.1f} |"
        )
    print()
    for name, results in (("rlkit", ours), ("SB3", theirs)):
        if name == "SB3" and args.rlkit_only:
            break
        values = [steps(r) for r in results.values()]
        solved = [v for v in values if v != math.inf]
        finals = sum(r["final_eval"] >= 475 for r in results.values())
        mean = f"{statistics.mean(solved):,.0f}" if solved else "n/a"
        print(
            f"{name}: solved {len(solved)}/{len(values)}, median steps to 475 "
            f"{cell(statistics.median(values))}, mean over solved {mean}, "
            f"final >= 475 {finals}/{len(values)}"
        )
    if args.rlkit_only:
        return
    fewer = sum(steps(ours[s]) < steps(theirs[s]) for s in seeds)
    equal = sum(steps(ours[s]) == steps(theirs[s]) for s in seeds)
    print(f"per seed: rlkit needed fewer steps on {fewer}, as many on {equal}, more on "
          f"{len(seeds) - fewer - equal}")  # fmt: skip


if __name__ == "__main__":
    main()
