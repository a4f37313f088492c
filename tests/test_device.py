import pytest
import torch

from rlkit.base.device import resolve_device
from rlkit.base.errors import DeviceError


def test_auto_picks_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_cpu_can_be_forced():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_when_available():
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(DeviceError, match="visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("bad", ["gpu0", "tpu", "", 3])
def test_unknown_devices(bad):
    with pytest.raises(DeviceError):
        resolve_device(bad)
