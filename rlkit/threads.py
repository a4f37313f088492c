"""numpy's BLAS on one thread while an agent trains or evaluates.

rlkit multiplies in numpy only for a few rows at a time: acting, one env step at a time, and
the evaluation batches (rlkit.mlp_grad.NumpyLayers), where a second thread has nothing to win.
But OpenBLAS, numpy's BLAS, keeps a pool of threads that spin for a while after each product,
on the same cores as torch's OpenMP threads running the gradient step in between, and the two
pools wait on each other. On a 2-core AMD EPYC (Zen 3), with 2 torch threads, SAC on Pendulum at
the RL Zoo's sizes took 8% less time per step with numpy's BLAS on one thread
(OPENBLAS_NUM_THREADS=1, the same agents to the bit; README, "SAC Pendulum-v1"); a product of
8 x 48 by 48 x 256 then 256 x 256 took 65 us on one thread against 271-466 us on two while the
cores were busy.

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
