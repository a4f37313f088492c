"""rlkit.malloc: training on the CPU keeps freed memory in the process (glibc), so that each
update's temporaries do not fault fresh pages in again. Measured in fresh interpreters by their
page-fault counts, with and without the setting."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.malloc import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]

CHURN = """
import resource, sys
import torch
import agents
if sys.argv[1] == "learn":  # the run loop applies it on the CPU
    agents.DQN(env="CartPole-v1", seed=0, learning_starts=10).learn(20)
def churn():  # 16 MiB of 512 KiB blocks (a twin critic's activations), then all freed
    blocks = [torch.ones(2, 256, 256) for _ in range(32)]
    del blocks
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    churn()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_churn(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", CHURN, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not keep_freed_memory(), reason="glibc's malloc only (Linux)")
def test_training_keeps_freed_memory_out_of_page_faults():
    # Without the setting glibc returns the freed top of the heap to the kernel and the next
    # churn faults it back in (66 faults per churn here, with 2 MiB transparent huge pages;
    # 4,096 with 4 KiB pages); after a run has set it, nearly none.
    plain, trained = _faults_per_churn("plain"), _faults_per_churn("learn")
    assert trained < plain / 3, (plain, trained)
