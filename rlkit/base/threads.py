"""Threads: numpy's BLAS on one thread while an agent trains or evaluates, torch on one thread
outside the updates, and the thread limits of a run (`torch_threads`).

Acting and evaluation push one observation (or one per env copy) through the networks: a
second thread has nothing to split there, and when another process holds a core, every
parallel region waits for it (OpenMP's threads spin). So a run's thread count applies to its
gradient updates only (`torch_threads_for`, around each agent's `_update`); the rest of the run
loop is on one. A switch costs about 0.3 us.

rlkit multiplies in numpy only for a few rows at a time: acting, one env step at a time, and
the evaluation batches (rlkit.nn.mlp_grad.NumpyLayers), where a second thread has nothing to win.
But OpenBLAS, numpy's BLAS, keeps a pool of threads that spin after each product, and when the
cores are busy (torch's threads, other runs) a product waits for its pool to get them: on a
2-core AMD EPYC (Zen 3) whose cores two other training processes kept busy, 8 x 48 by 48 x 256
then by 256 x 256 took 65 us on one thread against 271-466 us on two, and one row by 3 x 256
then 256 x 256 7.5 against 36 us. On a quiet machine it makes no difference that shows
(benchmarks/numpy_blas_threads.py, SAC Pendulum, 2 torch threads, 3 alternated pairs: median
ratio 0.99, the same agent to the bit).

A BLAS that torch itself loaded (its own OpenBLAS on some builds) keeps its threads: torch's
products are the large ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded_numpy_blas() -> Iterator[None]:
    """numpy's BLAS pools (not torch's) on one thread inside, as they were after."""
    import torch
    from threadpoolctl import ThreadpoolController

    torch_dir = os.path.realpath(os.path.dirname(torch.__file__)) + os.sep
    pools = [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and not os.path.realpath(lib.filepath).startswith(torch_dir)
    ]
    before = [lib.num_threads for lib in pools]
    for lib in pools:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(pools, before, strict=True):
            lib.set_num_threads(threads)


@contextlib.contextmanager
def torch_threads_for(threads: int) -> Iterator[None]:
    """torch's intra-op threads at `threads` inside, as they were after."""
    import torch

    before = torch.get_num_threads()
    if threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def limit_threads(threads: int) -> None:
    """`torch_threads`: torch's intra-op threads, and numpy's BLAS threads alike (the acting
    path of the policy-gradient agents multiplies in numpy, and OpenBLAS keeps a pool of its
    own: with 4 seeds on 2 cores, its spinning threads made 256-wide PPO runs ~30x slower)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
