"""Denormal floats flushed to zero while an agent learns (rlkit.base.precision.denormals_flushed)
against torch's default, in fresh processes alternated: seconds of `learn` and whether both
trained the same agent to the bit.

    .venv/bin/python benchmarks/denormals.py --pairs 2 [CONFIG STEPS ...]

Default: the shipped DQN, PPO and SAC configs at a few thousand steps each, one torch thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = [
    "configs/dqn_cartpole_zoo.yaml", "20000", "configs/dqn_cartpole.yaml", "20000",
    "configs/ppo_cartpole_zoo.yaml", "30000", "configs/sac_pendulum.yaml", "2000",
]  # fmt: skip


def worker(config: str, steps: int, flush: bool, out: str) -> None:
    import torch
    from safetensors.torch import save_file

    import agents
    import rlkit.agent.run_loop as run_loop
    from rlkit.experiments.run_config import load_run_config

    if not flush:
        run_loop.denormals_flushed = lambda device: contextlib.nullcontext()
    torch.set_num_threads(1)
    run, cfg = load_run_config(ROOT / config, ["eval_interval=0", "matmul_precision=highest"])
    agent = agents.agent_class(run.agent)(config=cfg)
    start = time.perf_counter()
    agent.learn(steps)
    seconds = time.perf_counter() - start
    save_file({k: v.contiguous() for k, v in agent._state_tensors().items()}, out)
    print(json.dumps({"seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", default=DEFAULT, help="CONFIG STEPS pairs")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config, steps, flush, out = args.worker
        return worker(config, int(steps), flush == "1", out)
    from safetensors.torch import load_file

    from rlkit.base.device import describe_cpu

    print(f"# {describe_cpu()}, one torch thread, matmul_precision highest\n")
    print("| config | steps | flushed (s) | default (s) | flushed / default | same agent |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for config, steps in zip(args.runs[::2], args.runs[1::2], strict=True):
            times: dict[str, list[float]] = {"1": [], "0": []}
            for pair in range(args.pairs):
                for flush in ("1", "0"):
                    out = f"{tmp}/{flush}_{pair}.safetensors"
                    result = subprocess.run(
                        [sys.executable, __file__, "--worker", config, steps, flush, out],
                        cwd=ROOT, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    times[flush].append(json.loads(result.stdout.splitlines()[-1])["seconds"])
            a, b = load_file(f"{tmp}/1_0.safetensors"), load_file(f"{tmp}/0_0.safetensors")
            same = all(a[k].equal(b[k]) for k in a)
            flushed, default = statistics.median(times["1"]), statistics.median(times["0"])
            print(
                f"| `{Path(config).name}` | {int(steps):,} | {flushed:.1f} | {default:.1f} "
                f"| {flushed / default:.2f} | {'yes' if same else 'NO'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
