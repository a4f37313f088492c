"""Frame stacks stored once: replay keeps each frame of a stacked observation a single time.

An observation that stacks the last k frames (gymnasium's FrameStackObservation, Atari's
4-frame stack) shares k - 1 frames with the one before it, and a transition's next_obs is the
following observation. Storing (obs, next_obs) as arrays keeps every frame 2k times; here it is
kept once, in a ring of frames per env copy, and a stored observation is a reference: the
position of its newest frame. A stack is rebuilt at sample time as the k frames ending there.

Which frames are written is decided by content, so a rebuilt stack is always the observation
that was seen, whatever the wrappers do at episode ends:
- an observation equal to the copy's last one writes nothing (the same reference);
- one whose first k - 1 frames are the last one's newest k - 1 (the usual step) writes its
  newest frame;
- anything else (the first observation of an episode, an env that is not a shift register)
  writes all k frames, so a stack never mixes frames of two episodes.
An episode's true final observation (what a truncated transition bootstraps from) is written
like any other, so `next_obs` is exact at time limits too; Stable-Baselines3's
`optimize_memory_usage` reads next_obs from the next row instead and so cannot have both.

The ring of each copy holds `frames_per_copy` frames. A transition whose oldest frame has been
overwritten (the ring is a few percent longer than the copy's share of transitions, so this
takes episodes of a few dozen steps or a long wait in an n-step or Monte Carlo collector) is
stale: `holds` says so and the replay buffer draws another row instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def frames_per_copy(capacity: int, n_copies: int, stack_size: int) -> int:
    """Ring length per env copy for a replay of `capacity` transitions: the copy's share, 1/32
    more for the k - 1 extra frames of each episode start, and a floor for tiny buffers."""
    share = math.ceil(capacity / n_copies)
    return share + share // 32 + 4 * stack_size + 64


class FrameStore:
    """Rings of single frames, one per env copy, and the stacks rebuilt from them.

    `stack_axis` is where the k frames lie in an observation: 0 for (k, H, W) (gymnasium's
    FrameStackObservation of 2-d frames), -1 for (H, W, k) (Stable-Baselines3's VecFrameStack).
    A reference is newest_frame_serial * n_copies + copy, an int64 that n-step and Monte Carlo
    collectors carry like any observation.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        stack_axis: int,
        n_copies: int,
        frames_per_copy: int,
        dtype: torch.dtype = torch.uint8,
        device: torch.device | str = "cpu",
    ) -> None:
        self.obs_shape = tuple(obs_shape)
        self.stack_axis = stack_axis % len(self.obs_shape)
        self.stack_size = self.obs_shape[self.stack_axis]
        self.frame_shape = tuple(
            n for axis, n in enumerate(self.obs_shape) if axis != self.stack_axis
        )
        self.n_copies = int(n_copies)
        self.length = int(frames_per_copy)
        if self.length < self.stack_size:
            raise ValueError(f"a ring of {self.length} frames cannot hold a stack of "
                             f"{self.stack_size}")  # fmt: skip
        self.device = torch.device(device)
        self.frames = torch.zeros(
            (self.n_copies * self.length, *self.frame_shape), dtype=dtype, device=self.device
        )
        self.written = np.zeros(self.n_copies, dtype=np.int64)  # frames written per copy
        # Each copy's last observation (stack axis first), on the host: what the next one is
        # compared with. Rebuilt from the rings on load.
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self._last = np.zeros((self.n_copies, self.stack_size, *self.frame_shape), np_dtype)
        self._frames_np = self.frames.numpy() if self.device.type == "cpu" else None
        self._offsets = torch.arange(self.stack_size - 1, -1, -1, device=self.device)

    @staticmethod
    def bytes_needed(
        obs_shape: tuple[int, ...], stack_axis: int, n_copies: int, length: int, dtype
    ) -> int:
        frame = int(np.prod(obs_shape, dtype=np.int64)) // obs_shape[stack_axis]
        return n_copies * length * frame * torch.empty(0, dtype=dtype).element_size()

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes

    @property
    def stack_nbytes(self) -> int:
        """Bytes of one rebuilt observation."""
        return self.frames[0].nbytes * self.stack_size

    # ---------------------------------------------------------------- writing

    def add(self, obs: np.ndarray, copies: np.ndarray | None = None) -> np.ndarray:
        """References to the observations `obs` (N, `*obs_shape`) of env copies `copies` (all
        of them, in order, by default), writing the frames the rings do not hold yet."""
        stacks = np.moveaxis(np.asarray(obs), 1 + self.stack_axis, 1)
        copies = np.arange(len(stacks)) if copies is None else np.asarray(copies)
        last = self._last[copies]
        seen = self.written[copies] >= self.stack_size
        batch = (len(stacks), -1)
        same = seen & (stacks == last).reshape(batch).all(axis=1)
        shifted = seen & (stacks[:, :-1] == last[:, 1:]).reshape(batch).all(axis=1)
        k = self.stack_size
        for row, copy in enumerate(copies):
            if same[row]:
                continue
            new = stacks[row, k - 1 :] if shifted[row] else stacks[row]
            self._write(int(copy), new)
            self._last[copy] = stacks[row]
        return (self.written[copies] - 1) * self.n_copies + copies

    def _write(self, copy: int, frames: np.ndarray) -> None:
        for frame in frames:  # (at most k: a new stack)
            row = copy * self.length + int(self.written[copy] % self.length)
            if self._frames_np is not None:
                self._frames_np[row] = frame
            else:
                self.frames[row].copy_(torch.from_numpy(np.ascontiguousarray(frame)))
            self.written[copy] += 1

    # ---------------------------------------------------------------- reading

    def _rows(self, refs: torch.Tensor) -> torch.Tensor:
        """(B, k) ring rows of the stacks that end at `refs`, oldest frame first."""
        copy = refs % self.n_copies
        serial = refs // self.n_copies
        position = (serial.unsqueeze(1) - self._offsets) % self.length
        return position + (copy * self.length).unsqueeze(1)

    def stacks(self, refs: torch.Tensor) -> torch.Tensor:
        """The observations (B, `*obs_shape`) that references `refs` (B,) stand for."""
        rows = self._rows(refs).reshape(-1)
        stacked = self.frames.index_select(0, rows).reshape(len(refs), *self._stack_first())
        return stacked.movedim(1, 1 + self.stack_axis) if self.stack_axis else stacked

    def _stack_first(self) -> tuple[int, ...]:
        return (self.stack_size, *self.frame_shape)

    def holds(self, refs: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whether every frame of each referenced stack is still in its ring."""
        copy = refs % self.n_copies
        oldest = refs // self.n_copies - (self.stack_size - 1)
        written = torch.as_tensor(self.written, device=self.device)[copy]
        return oldest >= written - self.length

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The frames written so far (a ring that has not wrapped is saved only up to where it
        is filled) and the counters."""
        filled = int(min(self.written.max(initial=0), self.length))
        rings = self.frames.reshape(self.n_copies, self.length, *self.frame_shape)
        return {
            "frames": rings[:, :filled].contiguous(),
            "written": torch.from_numpy(self.written.copy()),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        written = state["written"].cpu().numpy().astype(np.int64)
        frames = state["frames"]
        if len(written) != self.n_copies or tuple(frames.shape[2:]) != self.frame_shape:
            raise ValueError(
                f"a frame store of {len(written)} copies of {tuple(frames.shape[2:])} frames "
                f"does not fit one of {self.n_copies} copies of {self.frame_shape}"
            )
        rings = self.frames.reshape(self.n_copies, self.length, *self.frame_shape)
        rings.zero_()
        rings[:, : frames.shape[1]].copy_(frames)
        self.written = written.copy()
        self._last[:] = 0
        for copy in range(self.n_copies):
            if self.written[copy] >= self.stack_size:
                ref = torch.tensor([(self.written[copy] - 1) * self.n_copies + copy])
                last = self.frames.index_select(0, self._rows(ref.to(self.device))[0])
                self._last[copy] = last.cpu().numpy()
