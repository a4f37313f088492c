"""rlkit.base.malloc: training on the CPU keeps freed memory in the process (glibc), so that each
update's temporaries do not have to be faulted in from the kernel again. Checked in fresh
interpreters by what happens to freed memory, with and without the setting: given back to the
kernel (the resident size falls back) or kept (it stays)."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.base.malloc import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]

CHURN = """
import ctypes, os, sys
import torch
import agents
# glibc's starting thresholds (128 KiB, malloc.h's M_MMAP_THRESHOLD -3 and M_TRIM_THRESHOLD -1),
# fixed, so that what happens without rlkit's setting does not depend on what the imports
# allocated and freed (glibc otherwise raises them as it goes).
mallopt = ctypes.CDLL("libc.so.6").mallopt
assert mallopt(-3, 128 * 1024) == 1 and mallopt(-1, 128 * 1024) == 1
if sys.argv[1] == "learn":  # the run loop applies rlkit's setting on the CPU
    agents.DQN(env="CartPole-v1", seed=0, learning_starts=10).learn(20)
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
# 80 MiB of 512 KiB blocks (a twin critic's activations), then all freed.
before = resident_mib()
blocks = [torch.ones(2, 256, 256) for _ in range(160)]
del blocks
print(resident_mib() - before)
"""


def _kept_mib(mode: str) -> float:
    """How much of the freed 80 MiB the process still holds."""
    result = subprocess.run(
        [sys.executable, "-c", CHURN, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not keep_freed_memory(), reason="glibc's malloc only (Linux)")
def test_training_keeps_freed_memory_in_the_process():
    # Without the setting glibc gives the freed blocks back to the kernel (and the next
    # update's temporaries fault them in again); after a run has set it, the memory stays.
    # (A first version counted page faults from glibc's dynamic thresholds, which transparent
    # huge pages and the imports' own allocations made vary from one machine to the next.)
    plain, trained = _kept_mib("plain"), _kept_mib("learn")
    assert plain < 20 and trained > 70, (plain, trained)
