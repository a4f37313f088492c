"""What `rlkit train` chooses on this machine, and the timings it chooses from.

    python benchmarks/machine_choices.py                       # the shipped configs
    python benchmarks/machine_choices.py configs/sac_pendulum.yaml

Prints the CPU (model, the vector instructions torch's kernels use, cores), whether oneDNN's
float32 kernels keep float32's error on it (rlkit.base.precision), and, per config, the
seconds per env step of training that rlkit.agent.calibration measures on a throwaway agent
on one thread and on every core, under torch's default products and (where they keep float32)
oneDNN's, and what it takes (more than one thread only at >= 1.3x, onednn at >= 1.1x).
Nothing is cached: each run measures anew, so two runs show the noise.
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
from rlkit.agent.calibration import MARGIN, PRECISION_MARGIN, choose, time_training  # noqa: E402
from rlkit.base.device import describe_cpu  # noqa: E402
from rlkit.base.precision import onednn_keeps_float32  # noqa: E402
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
    keeps = onednn_keeps_float32()
    print(
        f"oneDNN's float32 kernels keep float32's error here: {keeps} (medium would "
        f"{'run them' if keeps else 'compute in bfloat16, or is not available'})"
    )
    print(f"more than one thread only at >= {MARGIN}x; onednn only at >= {PRECISION_MARGIN}x\n")
    precisions = ["highest", "onednn"] if keeps else ["highest"]
    candidates = [(n, p) for p in precisions for n in sorted({1, cores})]
    columns = " | ".join(f"{n} thread{'s' if n > 1 else ''}, {p}" for n, p in candidates)
    print(f"| config | {columns} | chosen |")
    print("| --- |" + " ---: |" * len(candidates) + " --- |")
    for path in args.configs:
        run, config = load_run_config(ROOT / path)
        seconds = time_training(agents.agent_class(run.agent), config.to_dict(), candidates)
        threads, precision = choose(seconds)
        cells = " | ".join(f"{seconds[c] * 1e6:.0f}" for c in candidates)
        print(f"| `{Path(path).name}` | {cells} | {threads}, {precision} |", flush=True)
    print("\nmicroseconds per env step of training (a throwaway agent, the faster of 2 rounds)")


if __name__ == "__main__":
    main()
