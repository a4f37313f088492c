"""What `rlkit train` chooses on this machine, and the timings it chooses from.

    python benchmarks/machine_choices.py                       # the shipped configs
    python benchmarks/machine_choices.py configs/sac_pendulum.yaml

Prints the CPU (model, the vector instructions torch's kernels use, cores) and, per config,
the seconds per env step of training on one thread and on every core that
rlkit.agent.calibration measures on a throwaway agent, and the thread count it takes (more than
one only at >= 1.3x). Nothing is cached: each run measures anew, so two runs show the noise.
Every speed figure in the docs names the machine it came from; this is how to see yours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import agents  # noqa: E402
from rlkit.agent.calibration import MARGIN, choose_threads, time_training  # noqa: E402
from rlkit.base.device import describe_cpu  # noqa: E402
from rlkit.experiments.run_config import load_run_config  # noqa: E402

SHIPPED = [
    "configs/dqn_cartpole.yaml", "configs/dqn_cartpole_zoo.yaml", "configs/ppo_cartpole.yaml",
    "configs/ppo_cartpole_zoo.yaml", "configs/a2c_cartpole.yaml",
    "configs/reinforce_cartpole.yaml", "configs/sac_pendulum.yaml", "configs/td3_pendulum.yaml",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=SHIPPED)
    args = parser.parse_args()
    cores = torch.get_num_threads()
    print(f"CPU: {describe_cpu()}; torch {torch.__version__}, {cores} threads by default")
    print(f"more than one thread only at >= {MARGIN}x\n")
    print(f"| config | us per env step, 1 thread | {cores} threads | speed-up | chosen |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for path in args.configs:
        run, config = load_run_config(ROOT / path)
        seconds = time_training(agents.agent_class(run.agent), config.to_dict(), [1, cores])
        print(
            f"| `{Path(path).name}` | {seconds[1] * 1e6:.0f} | {seconds[cores] * 1e6:.0f} | "
            f"{seconds[1] / seconds[cores]:.2f} | {choose_threads(seconds)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
