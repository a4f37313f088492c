import numpy as np
import pytest
import torch

from rlkit.base.errors import BufferTooLargeError
from rlkit.data.buffers import ReplayBuffer


def _rows(start, n, obs_dim=3):
    idx = np.arange(start, start + n)
    obs = np.repeat(idx[:, None], obs_dim, axis=1).astype(np.float32)
    return (
        obs,
        idx % 2,
        idx.astype(np.float32) * 0.5,
        obs + 1000,
        idx % 3 == 0,
        idx % 5 == 0,
        0.99 ** (1 + idx % 3),
    )


def test_add_and_read_back_keeps_terminated_and_truncated_apart():
    buffer = ReplayBuffer(10, (3,))
    buffer.add(*_rows(0, 4))
    assert len(buffer) == 4 and buffer.pos == 4
    assert torch.equal(buffer.obs[:4, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert torch.equal(buffer.next_obs[:4, 0], torch.tensor([1000.0, 1001.0, 1002.0, 1003.0]))
    assert torch.equal(buffer.actions[:4], torch.tensor([0, 1, 0, 1]))
    assert torch.equal(buffer.terminated[:4], torch.tensor([True, False, False, True]))
    assert torch.equal(buffer.truncated[:4], torch.tensor([True, False, False, False]))
    assert torch.allclose(buffer.discounts[:4], torch.tensor([0.99, 0.99**2, 0.99**3, 0.99]))


def test_scalar_discount_is_broadcast_also_across_the_wrap():
    buffer = ReplayBuffer(5, (3,))
    obs, actions, rewards, next_obs, terminated, truncated, _ = _rows(0, 4)
    buffer.add(obs, actions, rewards, next_obs, terminated, truncated, 0.9)
    buffer.add(obs, actions, rewards, next_obs, terminated, truncated, 0.5)  # wraps
    assert buffer.discounts.tolist() == pytest.approx([0.5, 0.5, 0.5, 0.9, 0.5])


def test_circular_overwrite_wraps_around():
    buffer = ReplayBuffer(5, (3,))
    buffer.add(*_rows(0, 3))
    buffer.add(*_rows(3, 4))  # rows 3, 4 then wrap to 0, 1
    assert len(buffer) == 5 and buffer.pos == 2
    assert buffer.obs[:, 0].tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert buffer.rewards.tolist() == [2.5, 3.0, 1.0, 1.5, 2.0]


def test_sample_returns_device_tensors_from_filled_rows_only():
    buffer = ReplayBuffer(100, (3,))
    buffer.add(*_rows(0, 7))
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(256, generator)
    assert batch.obs.shape == (256, 3) and batch.actions.shape == (256,)
    assert batch.obs.dtype == torch.float32 and batch.actions.dtype == torch.int64
    assert batch.terminated.dtype == torch.bool and batch.truncated.dtype == torch.bool
    assert all(t.device == buffer.device for t in batch if t is not None)
    assert set(batch.obs[:, 0].tolist()) == set(range(7))  # every filled row, nothing else
    # Fields of one sample stay aligned.
    assert torch.equal(batch.next_obs, batch.obs + 1000)
    assert torch.equal(batch.rewards, batch.obs[:, 0] * 0.5)


def test_sampling_is_uniform():
    buffer = ReplayBuffer(10, (1,))
    buffer.add(*_rows(0, 10, obs_dim=1))
    batch = buffer.sample(100_000, torch.Generator().manual_seed(1))
    counts = torch.bincount(batch.obs[:, 0].long(), minlength=10).float()
    # 10,000 expected per row; 5 sigma of a binomial is about 475.
    assert torch.all((counts - 10_000).abs() < 475)


def test_sampling_is_reproducible_with_a_seeded_generator():
    buffer = ReplayBuffer(50, (3,))
    buffer.add(*_rows(0, 50))
    a = buffer.sample(16, torch.Generator().manual_seed(3))
    b = buffer.sample(16, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True) if x is not None)


def test_memory_is_what_capacity_says():
    buffer = ReplayBuffer(1000, (4,))
    assert buffer.nbytes == ReplayBuffer.bytes_needed(1000, (4,)) == 1000 * (2 * 16 + 8 + 3 * 4 + 3)
    continuous = ReplayBuffer(1000, (4,), action_shape=(6,))
    assert continuous.actions.shape == (1000, 6) and continuous.actions.dtype == torch.float32
    assert continuous.nbytes == ReplayBuffer.bytes_needed(1000, (4,), action_shape=(6,))
    assert "1,000 transitions" in buffer.describe()


def test_too_large_buffer_fails_before_allocating():
    with pytest.raises(
        BufferTooLargeError, match=r"needs .* but only .* is available; lower buffer_size"
    ):
        ReplayBuffer(10**12, (84, 84))


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(10, (3,)).sample(4)


def test_state_dict_round_trip():
    buffer = ReplayBuffer(8, (3,))
    buffer.add(*_rows(0, 6))
    buffer.add(*_rows(6, 5))
    copy = ReplayBuffer(8, (3,))
    copy.load_state_dict(buffer.state_dict())
    assert copy.pos == buffer.pos and len(copy) == len(buffer)
    for name in ReplayBuffer.FIELDS:
        assert torch.equal(getattr(copy, name), getattr(buffer, name))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_buffer_matches_cpu_buffer():
    cpu, gpu = ReplayBuffer(7, (3,)), ReplayBuffer(7, (3,), device="cuda", staging_rows=3)
    for start in range(0, 20, 2):
        cpu.add(*_rows(start, 2))
        gpu.add(*_rows(start, 2))
    gpu.sample(1)  # flushes staged rows
    for name in ReplayBuffer.FIELDS:
        assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu())
    assert gpu.sample(4).obs.device.type == "cuda"
