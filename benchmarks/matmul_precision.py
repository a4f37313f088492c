"""What `matmul_precision: medium` does on this CPU: time and accuracy of the float32 products
of a SAC update (batch 256, 256x256 layers), under torch's "highest" and "medium".

    .venv/bin/python benchmarks/matmul_precision.py [--threads 2]

For each product: microseconds per call (alternating the two settings, best of 3 rounds) and
the largest error relative to float64 over the outputs. Where "medium" has float32's error
(about 1e-6 here), oneDNN ran a float32 kernel (on CPUs without a fast bfloat16 one); where it
is about 1e-3, it computed in bfloat16, and a learning claim measured elsewhere needs
measuring again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rlkit.base.device import describe_cpu

SHAPES = {  # (rows, inputs, outputs) of the products in one SAC update on Pendulum
    "hidden 256x256": (256, 256, 256),
    "first layer (4 inputs)": (256, 4, 256),
    "output layer (1 output)": (256, 256, 1),
    "acting, one observation": (1, 256, 256),
}


def seconds_per_call(x, w, b, calls: int = 300) -> float:
    for _ in range(20):
        torch.nn.functional.linear(x, w, b)
    start = time.perf_counter()
    for _ in range(calls):
        torch.nn.functional.linear(x, w, b)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {describe_cpu()}, torch {torch.__version__}, "
          f"{args.threads} threads; oneDNN bf16 support: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    print("\n| product | highest (us) | medium (us) | ratio | highest error | medium error |")
    print("|---|---:|---:|---:|---:|---:|")
    previous = torch.get_float32_matmul_precision()
    try:
        for name, (rows, inputs, outputs) in SHAPES.items():
            x = torch.rand(rows, inputs, generator=generator)
            w = torch.rand(outputs, inputs, generator=generator)
            b = torch.rand(outputs, generator=generator)
            exact = torch.nn.functional.linear(x.double(), w.double(), b.double())
            times = {"highest": [], "medium": []}
            errors = {}
            for _ in range(3):
                for precision in times:
                    torch.set_float32_matmul_precision(precision)
                    times[precision].append(seconds_per_call(x, w, b))
                    out = torch.nn.functional.linear(x, w, b).double()
                    errors[precision] = ((out - exact).abs() / exact.abs()).max().item()
            high, medium = min(times["highest"]) * 1e6, min(times["medium"]) * 1e6
            print(f"| {name} | {high:.1f} | {medium:.1f} | {medium / high:.2f} | "
                  f"{errors['highest']:.1e} | {errors['medium']:.1e} |")  # fmt: skip
    finally:
        torch.set_float32_matmul_precision(previous)


if __name__ == "__main__":
    main()
