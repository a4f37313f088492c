"""What a training process costs before it trains: wall time of whole `rlkit train` processes
as shipped, and with torch._dynamo imported first, which is what every process paid before
rlkit's optimizers stopped calling torch's `_disable_dynamo`-wrapped Optimizer methods
(rlkit/optim/base.py), alternated.

    .venv/bin/python benchmarks/startup.py [--rounds 5]

Two commands: a short run (`configs/dqn_cartpole.yaml --steps 1000`, no evaluation) and a
user mistake answered in one line (DQN on Pendulum-v1, exit 2).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rlkit.base.device import describe_cpu  # noqa: E402

VARIANTS = {
    "shipped": "",
    "dynamo imported": "import torch._dynamo; ",
}


def timed_process(prefix: str, argv: list[str]) -> float:
    code = f"{prefix}import sys; from rlkit.cli import main; sys.exit(main({argv!r}))"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"# {describe_cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "dqn_pendulum.yaml"
        bad.write_text("agent: dqn\nenv: Pendulum-v1\n")

        def argv(command: str, run: str) -> list[str]:
            if command == "one-line error":
                return ["train", str(bad), "--run-dir", f"{tmp}/bad"]
            return ["train", "configs/dqn_cartpole.yaml", "--steps", "1000", "--set",
                    "eval_interval=0", "--set", "eval_episodes=0", "--no-progress",
                    "--run-dir", f"{tmp}/{run}"]  # fmt: skip

        commands = ["train 1,000 steps", "one-line error"]
        times = {(c, v): [] for c in commands for v in VARIANTS}
        for r in range(args.rounds):
            for command in commands:
                for i, (variant, prefix) in enumerate(VARIANTS.items()):
                    run = f"run_{r}_{i}"
                    times[command, variant].append(timed_process(prefix, argv(command, run)))
    print("\n| command | " + " | ".join(f"{v} (s)" for v in VARIANTS) + " | difference (s) |")
    print("|---|" + "---:|" * (len(VARIANTS) + 1))
    for command in commands:
        medians = [statistics.median(times[command, v]) for v in VARIANTS]
        cells = " | ".join(f"{m:.2f}" for m in medians)
        print(f"| {command} | {cells} | {medians[1] - medians[0]:.2f} |")
    print(f"\nmedians of {args.rounds} rounds, each command alternated between the variants")


if __name__ == "__main__":
    main()
