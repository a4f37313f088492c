import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # Small networks run faster on one thread, and results do not depend on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
