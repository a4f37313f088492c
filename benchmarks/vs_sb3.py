"""rlkit against Stable-Baselines3 at identical hyperparameters, side by side in one run.

    make bench-setup   # installs the optional `bench` extra (stable-baselines3) into .venv
    .venv/bin/python benchmarks/vs_sb3.py --seeds 1 2 3

For each algorithm (DQN and PPO with RL-Zoo's CartPole-v1 hyperparameters, shipped as
configs/dqn_cartpole_zoo.yaml and configs/ppo_cartpole_zoo.yaml; SAC and TD3 with RL-Zoo's
Pendulum-v1 ones, configs/sac_pendulum.yaml and td3_pendulum.yaml; `--algos a2c td3` for A2C
on CartPole-v1 with configs/a2c_cartpole.yaml; `--algos dqn_minatar ppo_minatar` for 100,000
steps of configs/dqn_minatar_breakout.yaml and ppo_minatar_breakout.yaml on MinAtar Breakout,
SB3 with MinAtar's network as its features extractor; `--algos dqn_atari ppo_atari` for 200,000
steps of configs/dqn_atari.yaml and ppo_atari.yaml on Pong, the Zoo's Atari hyperparameters,
evaluated over 5 whole games) and each seed, runs rlkit then
SB3 (A B A B ...), each in a fresh process, one at a time. Prints each run's training wall time
(agent construction + learn, no imports, no evaluation), the rlkit/SB3 ratio of each pair and
its median, steps/s, and both final greedy evaluation means over 20 episodes.

With --whole-process the clock is what a user waits for, taken from outside the process: on
rlkit's side `rlkit train CONFIG --seed S` as shipped (imports, the thread measurement's cache,
training, checkpoints, TensorBoard, saving, the final test over 20 episodes), on SB3's a script
that imports SB3, trains, saves the model and evaluates it with SB3's evaluate_policy over 20
episodes. A config's periodic evaluations are left out on both sides (`eval_interval=0`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "compare_worker.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_worker import SHORTENED, TOTAL_STEPS, ZOO_CONFIGS  # noqa: E402

ALGOS = ["dqn", "ppo", "a2c", "sac", "td3", "dqn_minatar", "ppo_minatar", "dqn_atari", "ppo_atari"]
FINAL = re.compile(r"final agent: greedy mean return (-?[0-9.]+)")


def run_worker(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(WORKER), *args], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"worker {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def whole_process(library: str, algo: str, seed: int) -> dict:
    """One whole process, timed from outside: train_s is its wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        if library == "rlkit":
            argv = [sys.executable, "-m", "rlkit.cli", "train", ZOO_CONFIGS[algo], "--seed",
                    str(seed), "--set", "eval_interval=0", "--no-progress", "--run-dir",
                    f"{tmp}/run"]  # fmt: skip
            if algo in SHORTENED:
                argv += ["--steps", str(TOTAL_STEPS[algo])]
        else:
            argv = [sys.executable, str(WORKER), "sb3", algo, str(seed), "--save-dir", tmp]
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    if library == "sb3":
        return dict(json.loads(result.stdout.strip().splitlines()[-1]), train_s=wall)
    threads = re.search(r"torch threads (\d+), matmul_precision (\w+)", result.stderr)
    return {
        "train_s": wall,
        "final_eval": float(FINAL.search(result.stderr).group(1)),
        "steps": int(re.search(r"for ([0-9,]+) steps", result.stderr).group(1).replace(",", "")),
        "env_id": re.search(r"training \w+ on (\S+)", result.stderr).group(1),
        "threads": f"{threads.group(1)} ({threads.group(2)})" if threads else "config",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["dqn", "ppo", "sac"],
        choices=ALGOS,
    )
    parser.add_argument(
        "--whole-process", action="store_true", help="time whole processes from outside"
    )
    args = parser.parse_args()
    if args.whole_process:
        run = whole_process
    else:

        def run(library: str, algo: str, seed: int) -> dict:
            return run_worker(library, algo, str(seed))

    from rlkit.base.device import describe_cpu

    clock = "whole processes" if args.whole_process else "agent construction and training"
    print(f"# {describe_cpu()}; the clock: {clock}")
    for algo in args.algos:
        rows = []
        for seed in args.seeds:
            ours = run("rlkit", algo, seed)
            theirs = run("sb3", algo, seed)
            rows.append((seed, ours, theirs))
            print(
                f"# {algo} seed {seed}: rlkit {ours['train_s']:.1f} s, "
                f"SB3 {theirs['train_s']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        first = rows[0][1]
        print(
            f"\n### {algo.upper()} {first['env_id']}, "
            f"{'the config' if algo in SHORTENED else 'zoo'} hyperparameters "
            f"({first['steps']:,} steps)\n"
        )
        print(
            "| seed | rlkit s | SB3 s | rlkit/SB3 | rlkit steps/s | SB3 steps/s "
            "| rlkit eval | SB3 eval |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        ratios = []
        for seed, ours, theirs in rows:
            ratio = ours["train_s"] / theirs["train_s"]
            ratios.append(ratio)
            print(
                f"| {seed} | {ours['train_s']:.1f} | {theirs['train_s']:.1f} | {ratio:.2f} "
                f"| {ours['steps'] / ours['train_s']:,.0f} "
                f"| {theirs['steps'] / theirs['train_s']:,.0f} "
                f"| {ours['final_eval']:.1f} | {theirs['final_eval']:.1f} |"
            )
        mean_ours = statistics.mean(r[1]["final_eval"] for r in rows)
        mean_theirs = statistics.mean(r[2]["final_eval"] for r in rows)
        print(
            f"\nmedian rlkit/SB3 wall time: {statistics.median(ratios):.2f}; "
            f"mean final eval rlkit {mean_ours:.1f}, SB3 {mean_theirs:.1f}; "
            f"torch threads rlkit {rows[0][1]['threads']}, SB3 {rows[0][2]['threads']}"
        )


if __name__ == "__main__":
    main()
