"""Experience replay: a preallocated circular buffer of tensors on the training device."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import numpy as np
import torch

from rlkit.base.errors import BufferTooLargeError
from rlkit.data.frames import FrameStore
from rlkit.data.sumtree import SumTree


class ReplayBatch(NamedTuple):
    obs: torch.Tensor  # (B, *obs_shape)
    actions: torch.Tensor  # (B,) int64, or (B, n) float32 for continuous actions
    rewards: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, *obs_shape): the true next observation, also at episode ends
    terminated: torch.Tensor  # (B,) bool: the MDP ended; the target must not bootstrap
    truncated: torch.Tensor  # (B,) bool: cut by a time limit; the target still bootstraps
    discounts: torch.Tensor  # (B,) float32: factor of the bootstrap value, gamma^k for k steps
    mc_returns: torch.Tensor  # (B,) float32: discounted return to the episode's end ...
    mc_valid: torch.Tensor  # (B,) bool: ... known only once the episode terminated
    indices: torch.Tensor | None = None  # (B,) rows sampled (prioritized replay updates them)
    weights: torch.Tensor | None = None  # (B,) importance-sampling weights (prioritized replay)


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on `device` right now: MemAvailable on CPU, cudaMemGetInfo on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def describe_capacity(
    capacity: int,
    obs_shape: tuple[int, ...],
    device: torch.device | str,
    obs_dtype=torch.float32,
    action_shape: tuple[int, ...] = (),
    frame_bytes: int = 0,
) -> str:
    """'replay buffer: 100,000 transitions, 3.8 MB on cpu' (what the buffer allocates);
    `frame_bytes`: a FrameStore's frames, with obs_shape () for the references."""
    needed = ReplayBuffer.bytes_needed(capacity, obs_shape, obs_dtype, action_shape) + frame_bytes
    once = ", each frame stored once" if frame_bytes else ""
    return f"replay buffer: {capacity:,} transitions{once}, {_format_bytes(needed)} on {device}"


class ReplayBuffer:
    """Circular buffer of `capacity` transitions, allocated once on `device`.

    `terminated` and `truncated` are kept apart: only termination stops bootstrapping.
    `next_obs` is stored explicitly so that a transition that ended an episode keeps the real
    final observation rather than the first observation of the next episode.

    With `frames` (a FrameStore), obs and next_obs hold references into it (int64, obs_shape
    ()), each frame of a frame stack is kept once, and a sample rebuilds the stacks; a row whose
    frames have left the store's rings is drawn again.
    """

    FIELDS = (
        "obs",
        "actions",
        "rewards",
        "next_obs",
        "terminated",
        "truncated",
        "discounts",
        "mc_returns",
        "mc_valid",
    )

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        device: torch.device | str = "cpu",
        obs_dtype: torch.dtype = torch.float32,
        memory_fraction: float = 0.9,
        staging_rows: int = 4096,
        action_shape: tuple[int, ...] = (),
        frames: FrameStore | None = None,
    ) -> None:
        """`action_shape` (): one discrete action per row (int64); (n,): a vector of n floats
        (continuous actions). `frames`: the store the rows' observations refer to (obs_shape
        and obs_dtype are then those of the references, () and int64)."""
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.frames = frames
        if frames is not None:
            obs_shape, obs_dtype = (), torch.int64
        self.obs_shape = tuple(obs_shape)
        self.device = torch.device(device)
        self.obs_dtype = obs_dtype
        self.action_shape = tuple(action_shape)
        # (The frames are allocated already: counted only where they are the future.)
        self.check_fits(
            capacity, obs_shape, self.device, obs_dtype, memory_fraction, self.action_shape
        )
        n = self.capacity
        self.obs = torch.zeros((n, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.next_obs = torch.zeros((n, *self.obs_shape), dtype=obs_dtype, device=self.device)
        action_dtype = torch.float32 if action_shape else torch.int64
        self.actions = torch.zeros((n, *action_shape), dtype=action_dtype, device=self.device)
        self.rewards = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.truncated = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.discounts = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.mc_returns = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.mc_valid = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.pos = 0  # next row to write
        self.size = 0  # rows holding data
        # Writes go through numpy views of host memory: one numpy copy per field and step
        # instead of a torch dispatch. On CPU the views are of the storage itself; on CUDA
        # they are of a pinned staging area that is copied to the device in one transfer per
        # field just before the next sample, so acting never waits on a host-device copy.
        if self.device.type == "cpu":
            self._staging = {name: getattr(self, name) for name in self.FIELDS}
            self._staging_rows = n
        else:
            self._staging_rows = min(n, staging_rows)
            self._staging = {
                name: torch.zeros(
                    (self._staging_rows, *getattr(self, name).shape[1:]),
                    dtype=getattr(self, name).dtype,
                ).pin_memory()
                for name in self.FIELDS
            }
        self._staging_np = {name: t.numpy() for name, t in self._staging.items()}
        self._pending = 0  # CUDA: rows written to staging, not yet copied to the device

    @classmethod
    def check_fits(
        cls,
        capacity: int,
        obs_shape: tuple[int, ...],
        device: torch.device | str,
        obs_dtype: torch.dtype = torch.float32,
        memory_fraction: float = 0.9,
        action_shape: tuple[int, ...] = (),
        frame_bytes: int = 0,
    ) -> None:
        """Raise BufferTooLargeError, before allocating, if the buffer would not fit in memory
        (`frame_bytes`: a FrameStore's frames too)."""
        device = torch.device(device)
        needed = cls.bytes_needed(capacity, obs_shape, obs_dtype, action_shape) + frame_bytes
        available = available_memory_bytes(device)
        if needed > memory_fraction * available:
            raise BufferTooLargeError(
                f"a replay buffer of {capacity:,} transitions needs {_format_bytes(needed)} on "
                f"{device}, but only {_format_bytes(available)} is available; lower buffer_size"
            )

    @staticmethod
    def bytes_needed(
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype=torch.float32,
        action_shape: tuple[int, ...] = (),
    ) -> int:
        """Bytes the buffer allocates per row: two observations, the action (8 for a discrete
        one, 4 per dimension of a continuous one), reward, discount and Monte Carlo return (4
        each), three flags (1 each)."""
        item_size = torch.empty(0, dtype=obs_dtype).element_size()
        obs_bytes = int(np.prod(obs_shape, dtype=np.int64)) * item_size
        action_bytes = 4 * int(np.prod(action_shape, dtype=np.int64)) if action_shape else 8
        return int(capacity) * (2 * obs_bytes + action_bytes + 3 * 4 + 3)

    @property
    def nbytes(self) -> int:
        frames = self.frames.nbytes if self.frames is not None else 0
        return sum(getattr(self, name).nbytes for name in self.FIELDS) + frames

    @property
    def sample_row_nbytes(self) -> int:
        """Bytes one sampled row takes (observations rebuilt from frames at full size)."""
        row = sum(getattr(self, name)[0].nbytes for name in self.FIELDS)
        if self.frames is not None:
            row += 2 * self.frames.stack_nbytes
        return row

    def describe(self) -> str:
        frames = self.frames.nbytes if self.frames is not None else 0
        return describe_capacity(
            self.capacity, self.obs_shape, self.device, self.obs_dtype, self.action_shape, frames
        )

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs,
        actions,
        rewards,
        next_obs,
        terminated,
        truncated,
        discounts,
        mc_returns=0.0,
        mc_valid=False,
    ) -> None:
        """Append a batch of N transitions given as numpy arrays (scalars broadcast).

        `discounts` is the factor of the bootstrap value: gamma for one-step transitions,
        gamma^k for k-step returns. `mc_returns` / `mc_valid`: the Monte Carlo return of the
        transition's episode, valid only when that episode terminated.
        """
        values = (
            obs, actions, rewards, next_obs, terminated, truncated, discounts, mc_returns, mc_valid
        )  # fmt: skip
        n = len(actions)
        if n > min(self.capacity, self._staging_rows):
            raise ValueError(f"cannot add {n} transitions at once to {self.describe()}")
        if self.device.type == "cpu":
            self._write(self.pos, n, values)
        else:
            if self._pending + n > self._staging_rows:
                self._flush()
            self._write(self._pending, n, values)
            self._pending += n
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _write(self, row: int, n: int, values) -> None:
        end = row + n
        for name, value in zip(self.FIELDS, values, strict=True):
            target = self._staging_np[name]
            if end <= len(target):
                target[row:end] = value
            else:  # wraps around the end of the ring
                split = len(target) - row
                value = np.broadcast_to(np.asarray(value), (n, *target.shape[1:]))
                target[row:] = value[:split]
                target[: end - len(target)] = value[split:]

    def _flush(self) -> None:
        """CUDA: copy the rows waiting in pinned staging to their place in the device ring."""
        if self._pending == 0:
            return
        start = (self.pos - self._pending) % self.capacity
        done = 0
        while done < self._pending:
            count = min(self._pending - done, self.capacity - start)
            for name in self.FIELDS:
                getattr(self, name)[start : start + count].copy_(
                    self._staging[name][done : done + count], non_blocking=True
                )
            done += count
            start = 0
        # The staging rows are reused by the next add: wait until the copies have read them.
        torch.cuda.current_stream(self.device).synchronize()
        self._pending = 0

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        fields: Collection[str] | None = None,
    ) -> ReplayBatch:
        """A batch drawn uniformly with replacement, as tensors already on the device.

        `fields`: gather only these (the others are None in the batch); each field is one
        gather, a noticeable share of a small network's update."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        self._flush()
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        if self.frames is not None:
            idx = self._redraw_stale(idx, generator)
        return ReplayBatch(*self._gather(idx, fields))

    def _stale(self, idx: torch.Tensor) -> torch.Tensor:
        """(B,) bool: rows whose observation's frames have left the frame store."""
        return ~self.frames.holds(self.obs.index_select(0, idx))

    def _redraw_stale(self, idx: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """`idx` with each stale row replaced by a fresh draw: uniform over the rows whose
        frames are all still held."""
        for _ in range(1000):
            stale = self._stale(idx)
            if not bool(stale.any()):
                return idx
            redrawn = torch.randint(
                0, self.size, (int(stale.sum()),), device=self.device, generator=generator
            )
            idx = idx.masked_scatter(stale, redrawn)
        raise RuntimeError(f"{self.describe()}: almost every row's frames have been overwritten")

    def _gather(self, idx: torch.Tensor, fields: Collection[str] | None) -> list:
        out = []
        for name in self.FIELDS:
            if fields is not None and name not in fields:
                out.append(None)
                continue
            value = torch.index_select(getattr(self, name), 0, idx)
            if self.frames is not None and name in ("obs", "next_obs"):
                value = self.frames.stacks(value)
            out.append(value)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._flush()
        state = {name: getattr(self, name) for name in self.FIELDS}
        state["pos"] = torch.tensor(self.pos)
        state["size"] = torch.tensor(self.size)
        if self.frames is not None:
            state["frames"] = self.frames.state_dict()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.FIELDS:
            getattr(self, name).copy_(state[name])
        self.pos = int(state["pos"])
        self.size = int(state["size"])
        if self.frames is not None:
            self.frames.load_state_dict(state["frames"])


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) over a tensor sum tree.

    A transition is drawn with probability p_i^alpha / sum_k p_k^alpha, where p_i is its last
    absolute TD error plus `epsilon`; new transitions get the largest priority seen so far, so
    each is replayed at least once soon. The bias of non-uniform sampling is corrected by the
    weights w_i = (N P(i))^(-beta), divided by the batch maximum so they only scale down.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        device: torch.device | str = "cpu",
        alpha: float = 0.6,
        epsilon: float = 1e-6,
        **kwargs,
    ) -> None:
        super().__init__(capacity, obs_shape, device, **kwargs)
        self.alpha = alpha
        self.epsilon = epsilon
        self.tree = SumTree(self.capacity, self.device)
        self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)
        self._new_rows: list[int] = []  # rows added since the last sample, priority pending

    def add(self, *args, **kwargs) -> None:
        start = self.pos
        n = len(args[1]) if len(args) > 1 else len(kwargs["actions"])
        super().add(*args, **kwargs)
        self._new_rows.extend((start + i) % self.capacity for i in range(n))

    def _flush(self) -> None:
        super()._flush()
        if self._new_rows:  # one batched tree update instead of one per environment step
            rows = torch.tensor(self._new_rows, device=self.device)
            self.tree.update(rows, self.max_priority.expand(len(rows)) ** self.alpha)
            self._new_rows.clear()

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        fields: Collection[str] | None = None,
        beta: float = 0.4,
    ) -> ReplayBatch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        self._flush()
        # Floating-point slack in the tree could land past the filled rows; clamp into them.
        idx = self.tree.sample(batch_size, generator).clamp_(max=self.size - 1)
        while self.frames is not None and bool((stale := self._stale(idx)).any()):
            # Frames gone from the store: never draw those rows again (priority 0), draw anew.
            self.tree.update(idx[stale], torch.zeros(int(stale.sum()), dtype=torch.float64,
                                                     device=self.device))  # fmt: skip
            if float(self.tree.total) <= 0:
                raise RuntimeError(f"{self.describe()}: every row's frames were overwritten")
            idx = self.tree.sample(batch_size, generator).clamp_(max=self.size - 1)
        probabilities = self.tree.priorities(idx) / self.tree.total
        weights = (self.size * probabilities) ** (-beta)
        weights = (weights / weights.max()).float()
        return ReplayBatch(*self._gather(idx, fields), indices=idx, weights=weights)

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        priorities = td_errors.detach().abs().double() + self.epsilon
        self.max_priority = torch.maximum(self.max_priority, priorities.max())
        self.tree.update(indices, priorities**self.alpha)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        state["tree"] = self.tree.nodes
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.tree.nodes.copy_(state["tree"])
        self.max_priority = state["max_priority"].to(self.device, torch.float64).clone()
