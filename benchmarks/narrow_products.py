"""Products with a narrow result, as SAC's and TD3's written-out steps have them, computed
directly and as their transpose (the same numbers), on this CPU.

    .venv/bin/python benchmarks/narrow_products.py [--threads 2] [--rounds 3]

torch's CPU products run several times slower when the result has one or a few columns than
the same arithmetic with the roles swapped, so that the result has that many rows instead
(rlkit.nn.networks.output_layer, rlkit.nn.critic_grad, rlkit.nn.sac_grad.NARROW). Each row:
microseconds per call both ways, alternated, best of `--rounds`, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlkit.base.device import describe_cpu

B, H = 256, 256  # the RL Zoo's SAC on Pendulum: batch 256, 256-wide layers, twin critics


def cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (the product as written naturally, the same values computed transposed)."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, B, H, generator=g)  # the critics' last hidden layer
    w_out = torch.randn(2, H, 1, generator=g)  # their output layer (2, in, 1)
    b_out = torch.randn(2, 1, 1, generator=g)
    grad_q = torch.randn(2, B, 1, generator=g)  # d loss / d Q
    grad_w_out = torch.empty(2, H, 1)
    grad = torch.randn(B, H, generator=g)  # d loss / d the actor's first layer output
    obs = torch.randn(B, 3, generator=g)  # Pendulum's observation
    grad_w0 = torch.empty(H, 3)
    return {
        "critics' output layer, 2 x (256x256 @ 256x1)": (
            lambda: torch.baddbmm(b_out, h, w_out),
            lambda: torch.baddbmm(b_out, w_out.transpose(1, 2), h.transpose(1, 2)),
        ),
        "its weight gradient, 2 x (256x256 @ 256x1)": (
            lambda: torch.bmm(h.transpose(1, 2), grad_q, out=grad_w_out),
            lambda: torch.bmm(grad_q.transpose(1, 2), h, out=grad_w_out.transpose(1, 2)),
        ),
        "actor's first-layer gradient, 256x256 @ 256x3": (
            lambda: torch.mm(grad.t(), obs, out=grad_w0),
            lambda: grad_w0.copy_(torch.mm(obs.t(), grad).t()),
        ),
    }


def microseconds(f: Callable[[], object], calls: int = 300) -> float:
    for _ in range(20):
        f()
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_cpu()}, torch {torch.__version__}, {args.threads} threads\n")
    print("| product | as written, us | transposed, us | transposed / as written |")
    print("|---|---:|---:|---:|")
    for name, (plain, transposed) in cases().items():
        expected = plain().reshape(-1).clone()  # (some write into the same `out`)
        torch.testing.assert_close(transposed().reshape(-1), expected)
        best = {"plain": float("inf"), "transposed": float("inf")}
        for _ in range(args.rounds):
            best["plain"] = min(best["plain"], microseconds(plain))
            best["transposed"] = min(best["transposed"], microseconds(transposed))
        ratio = best["transposed"] / best["plain"]
        print(f"| {name} | {best['plain']:.1f} | {best['transposed']:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
