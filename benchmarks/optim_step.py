"""Time per optimizer step: rlkit.optim beside torch.optim's default, foreach and fused paths.

    .venv/bin/python benchmarks/optim_step.py [--threads 1] [--steps 2000] [--rounds 5]

Networks: the DQN-sized MLP 4-256-256-2 (67k parameters) and a ~1M-parameter MLP
(64-1024-1024-16). Gradients are fixed random tensors, so only `optimizer.step()` is timed.
Variants are measured in interleaved rounds (A B C D, A B C D, ...) in one process and the
median round is reported, so machine noise hits them alike. On CUDA (when available) each
timed block ends with a synchronize.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rlkit.optim as ro
from rlkit.nn.networks import mlp

OPTIONS = {
    "sgd": {"lr": 1e-2, "momentum": 0.9},
    "adagrad": {"lr": 1e-2},
    "rmsprop": {"lr": 1e-3},
    "adam": {"lr": 1e-3},
    "adamw": {"lr": 1e-3},
    "nadam": {"lr": 1e-3},
}
NETWORKS = {"4-256-256-2": (4, [256, 256], 2), "64-1024-1024-16": (64, [1024, 1024], 16)}


def make_variant(name: str, variant: str, params):
    options = OPTIONS[name]
    if variant == "rlkit":
        return ro.OPTIMIZERS[name](params, **options)
    torch_cls = ro.OPTIMIZERS[f"torch.{name}"]
    flags = {
        "torch": {"foreach": False},
        "torch foreach": {"foreach": True},
        "torch fused": {"fused": True},
    }
    try:
        return torch_cls(params, **options, **flags[variant])
    except (RuntimeError, TypeError, ValueError):
        return None  # e.g. no fused implementation of this optimizer


def time_steps(optimizer, device: torch.device, steps: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--devices", nargs="+", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    variants = ["rlkit", "torch", "torch foreach", "torch fused"]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), "
        f"{args.steps} steps x {args.rounds} rounds"
    )
    for device_name in devices:
        device = torch.device(device_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        for net_name, shape in NETWORKS.items():
            print(f"\n### {net_name} on {device_name} ({label}): time per step in ms")
            print(
                "| optimizer | rlkit | torch (default) | torch foreach | torch fused "
                "| rlkit / torch | rlkit / fused |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for name in OPTIONS:
                optimizers = {}
                for variant in variants:
                    torch.manual_seed(0)
                    net = mlp(shape[0], shape[1], shape[2]).to(device)
                    for p in net.parameters():
                        p.grad = torch.randn_like(p) * 1e-3
                    optimizers[variant] = make_variant(name, variant, list(net.parameters()))
                times: dict[str, list[float]] = {
                    v: [] for v in variants if optimizers[v] is not None
                }
                for v in times:  # warm-up: lazy state, first-call overheads
                    time_steps(optimizers[v], device, 20)
                for _ in range(args.rounds):
                    for v in times:
                        times[v].append(time_steps(optimizers[v], device, args.steps))
                median = {v: statistics.median(t) * 1e3 for v, t in times.items()}
                cells = [f"{median[v]:.3f}" if v in median else "n/a" for v in variants]
                ratio_default = median["rlkit"] / median["torch"]
                ratio_fused = "n/a"
                if "torch fused" in median:
                    ratio_fused = f"{median['rlkit'] / median['torch fused']:.2f}"
                print(f"| {name} | {' | '.join(cells)} | {ratio_default:.2f} | {ratio_fused} |")


if __name__ == "__main__":
    main()
