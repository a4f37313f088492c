"""What `rlkit train --seeds` costs over running the seeds by hand: the wall time of

    A: rlkit train CONFIG --seeds 1-4 --jobs 2          (one command, its report included)
    B: rlkit train CONFIG --seed k, k = 1..4, two at a time, by hand (torch_threads 1 each,
       as --seeds gives each of its 2 jobs on 2 cores)

alternating A B A B, each a fresh set of processes, timed from launch to the last exit (what a
user waits for). Prints a table and the ratio A/B.

    .venv/bin/python benchmarks/seeds.py [--config configs/ppo_cartpole.yaml] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from learning import parse_seeds  # (puts the repository on sys.path)

from rlkit.base.device import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
RLKIT = [sys.executable, "-m", "rlkit.cli", "train"]


def run_orchestrated(config: str, seeds: list[int], jobs: int, folder: Path) -> float:
    spec = ",".join(map(str, seeds))
    start = time.perf_counter()
    subprocess.run(
        [*RLKIT, config, "--seeds", spec, "--jobs", str(jobs), "--run-dir", str(folder),
         "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def run_by_hand(config: str, seeds: list[int], jobs: int, folder: Path) -> float:
    start = time.perf_counter()
    waiting = list(seeds)
    running: list[subprocess.Popen] = []
    while waiting or running:
        while waiting and len(running) < jobs:
            seed = waiting.pop(0)
            running.append(
                subprocess.Popen(
                    [
                        *RLKIT,
                        config,
                        "--seed",
                        str(seed),
                        "--run-dir",
                        str(folder / f"s{seed}"),
                        "--no-progress",
                        "--set",
                        "torch_threads=1",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for process in list(running):
            if process.poll() is not None:
                if process.returncode != 0:
                    raise SystemExit(f"seed run failed with exit code {process.returncode}")
                running.remove(process)
        time.sleep(0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ppo_cartpole.yaml")
    parser.add_argument("--seeds", nargs="+", default=["1-4"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            a = run_orchestrated(args.config, seeds, args.jobs, Path(tmp, f"a{r}"))
            b = run_by_hand(args.config, seeds, args.jobs, Path(tmp, f"b{r}"))
            rows.append((a, b))
            print(f"round {r + 1}: --seeds {a:.1f} s, by hand {b:.1f} s", file=sys.stderr)
    print(f"### {args.config}, seeds {seeds}, {args.jobs} at a time")
    print(f"CPU: {describe_cpu()}\n")
    print("| round | rlkit train --seeds (s) | by hand (s) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for r, (a, b) in enumerate(rows, 1):
        print(f"| {r} | {a:.1f} | {b:.1f} | {a / b:.3f} |")
    a_med = statistics.median(a for a, _ in rows)
    b_med = statistics.median(b for _, b in rows)
    print(f"\nmedian: --seeds {a_med:.1f} s, by hand {b_med:.1f} s, ratio {a_med / b_med:.3f}")


if __name__ == "__main__":
    main()
