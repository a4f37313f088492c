"""`rlkit train` beside another busy process, against the fastest quiet time of any thread
setting: what a user gets while a browser, a second run or tensorboard holds a core.

    .venv/bin/python benchmarks/busy_core.py [--config configs/dqn_cartpole.yaml] \
        [--steps 10000] [--rounds 2]

Whole processes, timed from outside, rounds alternated: quiet at torch_threads 1 and at one
per core; then at the config's defaults (what `rlkit train` chooses, measured beforehand and
cached, as after a user's first run) with a `while True: pass` process running beside it.
Prints each time and busy-default / fastest quiet (issue 32's bar: at most 1.2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train(config: str, steps: int, run_dir: str, *overrides: str) -> float:
    argv = [sys.executable, "-m", "rlkit.cli", "train", config, "--steps", str(steps),
            "--no-progress", "--run-dir", run_dir, *overrides]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/dqn_cartpole.yaml")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from rlkit.base.device import describe_cpu

    cores = os.cpu_count() or 1
    settings = {f"quiet, torch_threads={n}": [f"--set=torch_threads={n}"] for n in {1, cores}}
    times: dict[str, list[float]] = {name: [] for name in [*settings, "busy, defaults"]}
    with tempfile.TemporaryDirectory() as tmp:
        train(args.config, 300, f"{tmp}/warm")  # the defaults measured and cached first
        for r in range(args.rounds):
            for name, overrides in settings.items():
                times[name].append(train(args.config, args.steps, f"{tmp}/{r}{name}", *overrides))
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                times["busy, defaults"].append(train(args.config, args.steps, f"{tmp}/{r}busy"))
            finally:
                busy.kill()
                busy.wait()
    print(
        f"# {describe_cpu()}; `rlkit train {args.config} --steps {args.steps}`, whole processes\n"
    )
    print("| setting | seconds (each round) | median |")
    print("| --- | --- | ---: |")
    for name, values in times.items():
        cells = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {cells} | {statistics.median(values):.1f} |")
    fastest = min(min(v) for name, v in times.items() if name.startswith("quiet"))
    busy = statistics.median(times["busy, defaults"])
    print(f"\nbusy at the defaults / fastest quiet: {busy / fastest:.2f}")


if __name__ == "__main__":
    main()
