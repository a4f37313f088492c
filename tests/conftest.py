import os

# The training processes the tests start get one thread each, like the tests themselves (below):
# pytest-xdist keeps every core busy, and a process of two OpenMP threads on a busy core spends
# its time spin-waiting (one 5-second test took 29 s and 17 CPU-seconds beside two busy loops,
# 13 s and 5 CPU-seconds with one thread). Set before torch is imported, so it applies here too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# What `rlkit train` measures on the machine (threads, float32 kernels) is cached under
# $XDG_CACHE_HOME/rlkit: the suite's own folder, not the user's.
if "RLKIT_TEST_CACHE" not in os.environ:
    import tempfile

    os.environ["RLKIT_TEST_CACHE"] = os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp("-rlkit")

import pytest
import torch

from rlkit.base.device import describe_cpu


def pytest_report_header(config):
    # Learning curves depend on the CPU's float rounding: a failure is traced to a machine.
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return [f"CPU: {describe_cpu()}", f"torch {torch.__version__}; GPU: {cuda}"]


@pytest.fixture(autouse=True)
def _single_thread():
    # Small networks run faster on one thread. (Some products round differently with another
    # thread count: a test compares runs made with the same one.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
