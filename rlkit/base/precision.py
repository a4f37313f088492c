"""torch's float32 matmul precision for a run (`matmul_precision`), and the one choice rlkit may
make on its own: oneDNN's float32 kernels.

torch hands float32 products on the CPU to oneDNN under `set_float32_matmul_precision("medium")`,
allowing it to compute in bfloat16. What oneDNN then does depends on the CPU:
- with a fast bfloat16 kernel (Intel's AMX, e.g. Xeon family 6 model 207), it computes in
  bfloat16: 8 bits of mantissa instead of 24, and the agent learns something else (SAC on
  Pendulum-v1, 4,000 steps: greedy return -367 against -142 in float32);
- without one (AVX-512 without AMX: AMD Zen 5, Intel Ice Lake), it runs its float32 kernel,
  whose 256x256 products are about 2x faster than the default path's (MKL) at float32's error.

So medium is only ever the user's choice, and `onednn` is the safe form of it: medium where a
check on this CPU shows the products keep float32's error, `highest` everywhere else (other
CPUs, CUDA). `rlkit train` measures whether `onednn` trains a config faster
(rlkit.agent.calibration) when the config does not name a precision.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

MATMUL_PRECISIONS = ("highest", "high", "medium", "onednn")
# Worse than this many times the default path's error against float64 is not float32: bfloat16
# products are ~1000x worse, another float32 kernel within ~2x.
FLOAT32_ERROR_FACTOR = 8.0


SHAPES = [(256, 256, 256), (1, 256, 256), (256, 4, 256), (64, 256, 2)]  # rows, inputs, outputs


def relative_error(product: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest error of a float32 product against its float64 value, relative to its scale."""
    return ((product.double() - exact).abs().max() / exact.abs().max()).item()


def keeps_float32(error: float, default_error: float) -> bool:
    return error <= FLOAT32_ERROR_FACTOR * max(default_error, 1e-7)


@functools.cache
def onednn_keeps_float32() -> bool:
    """Whether float32 products under "medium" keep float32's error on this CPU: the largest
    relative error against float64 of a few products of the sizes agents use (a 256-wide
    layer over a batch and over one row, a narrow input, with bias), each within
    FLOAT32_ERROR_FACTOR of the default path's."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    before = torch.get_float32_matmul_precision()
    try:
        for rows, inputs, outputs in SHAPES:
            x = torch.randn(rows, inputs, generator=generator)
            w = torch.randn(outputs, inputs, generator=generator)
            b = torch.randn(outputs, generator=generator)
            exact = torch.nn.functional.linear(x.double(), w.double(), b.double())
            errors = {}
            for precision in ("highest", "medium"):
                torch.set_float32_matmul_precision(precision)
                errors[precision] = relative_error(torch.nn.functional.linear(x, w, b), exact)
            if not keeps_float32(errors["medium"], errors["highest"]):
                return False
        return True
    finally:
        torch.set_float32_matmul_precision(before)


@functools.cache
def onednn_product_speedup(size: int = 256, repeats: int = 50) -> float:
    """How many times faster a size x size by size x size float32 product runs under "medium"
    than in the default path here, on the current thread count (the faster of two alternated
    rounds each; ~0.1 s). The largest products rlkit's shipped configs make: where oneDNN does
    not win on them, it wins on no training run, and `rlkit train` skips timing it."""
    import time

    x, w = torch.randn(size, size), torch.randn(size, size)
    before = torch.get_float32_matmul_precision()
    best = {"highest": float("inf"), "medium": float("inf")}
    try:
        for _ in range(2):
            for precision in best:
                torch.set_float32_matmul_precision(precision)
                x @ w  # oneDNN builds its kernel on the first call
                start = time.perf_counter()
                for _ in range(repeats):
                    x @ w
                best[precision] = min(best[precision], time.perf_counter() - start)
    finally:
        torch.set_float32_matmul_precision(before)
    return best["highest"] / best["medium"]


def torch_precision(setting: str, device: torch.device) -> str:
    """The value for torch.set_float32_matmul_precision of a config's `matmul_precision`."""
    if setting != "onednn":
        return setting
    return "medium" if device.type == "cpu" and onednn_keeps_float32() else "highest"


@contextlib.contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """On the CPU, float32 values below 1.2e-38 read and written as zero inside (the x86 FTZ
    and DAZ flags of the calling thread, which runs the loop and, on one thread, the updates);
    off after, torch's default.

    Why: Adam's moments of weights whose gradient is zero (a ReLU unit that no longer fires)
    decay geometrically and spend thousands of steps as denormals, and on Intel CPUs every
    operation on a denormal takes a slow microcode path: on an Intel Xeon (family 6, model 106)
    the DQN CartPole network's fused Adam step took ~800 us with them against ~120 us flushed.
    What they could change is below float32's resolution of anything they are added to: the
    shipped configs train the same agents to the bit (benchmarks/denormals.py)."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
