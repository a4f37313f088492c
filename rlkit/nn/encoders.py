"""Encoders: what turns an observation into the feature vector that an agent's layers read.

Chosen from the observation space as Stable-Baselines3 chooses its features extractor, or named
in the config (`network.encoder`):

- `mlp`: a vector (any Box flattened): the agent's hidden layers read it as it is;
- `nature_cnn`: Mnih et al. 2015's convolutions (32@8x8/4, 64@4x4/2, 64@3x3/1) and a linear
  layer to 512 features, for Atari-sized frames (at least 36x36);
- `minatar_cnn`: Young & Tian 2019's MinAtar network (16@3x3/1) and a linear layer to 128,
  for small grids such as MinAtar's 10x10;
- a Dict space: each key encoded on its own (a CNN for an image key, flattened otherwise) and
  the features concatenated, as SB3's CombinedExtractor does.

Convolutions impose the prior that images need (lecture notes 001: nearby pixels belong
together, and a pattern means the same wherever it appears); flattened into an MLP, a frame
loses both. Pixels travel as uint8 and become floats in [0, 1] inside the network, so replay
memory holds one byte per pixel. Channel-first (C, H, W) and channel-last (H, W, C) frames are
told apart by where the smallest dimension is (SB3's rule: there are fewer channels than rows
or columns).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.base.errors import ConfigError

# (out channels, kernel, stride) per convolution, and the width of the linear layer after them.
CNN_LAYOUTS: dict[str, tuple[tuple[tuple[int, int, int], ...], int]] = {
    "nature_cnn": (((32, 8, 4), (64, 4, 2), (64, 3, 1)), 512),
    "minatar_cnn": (((16, 3, 1),), 128),
}
ENCODERS = ("auto", "mlp", *CNN_LAYOUTS)


def image_layout(shape: Sequence[int]) -> str | None:
    """'channels_first' for (C, H, W), 'channels_last' for (H, W, C), None if `shape` is not
    a 3-d frame. The channel axis is the smallest one; a tie goes to channels last."""
    if len(shape) != 3:
        return None
    return "channels_first" if shape[0] < min(shape[1], shape[2]) else "channels_last"


def is_image_space(space: gym.Space) -> bool:
    """A Box of frames: three dimensions (channels, height, width in either order)."""
    return isinstance(space, gym.spaces.Box) and image_layout(space.shape) is not None


def pixel_scale(space: gym.spaces.Box) -> float:
    """The factor that maps the space's values into [0, 1]: 1/255 for uint8 pixels (0..255),
    1 for anything already in a unit range (MinAtar's 0/1 channels, floats)."""
    if space.dtype == np.uint8 and float(np.max(space.high)) > 1:
        return 1.0 / 255.0
    return 1.0


def storage_dtype(space: gym.spaces.Box) -> torch.dtype:
    """How frames are kept (replay, rollouts): uint8 pixels and bool grids as they come, one
    byte each; anything else as float32."""
    return {np.dtype(np.uint8): torch.uint8, np.dtype(bool): torch.bool}.get(
        np.dtype(space.dtype), torch.float32
    )


def min_image_size(name: str) -> int:
    """The smallest height and width the named CNN's convolutions fit in."""
    size = 1
    for _, kernel, stride in reversed(CNN_LAYOUTS[name][0]):
        size = (size - 1) * stride + kernel
    return size


def choose_encoder(space: gym.Space, name: str = "auto") -> str:
    """The encoder for one (non-Dict) space: `name` unless it is 'auto'; for 'auto' a CNN for
    frames (Nature's where they are at least its minimum size, MinAtar's below, down to 3x3)
    and 'mlp' otherwise. Raises ConfigError, naming the minimum size, for a CNN the frames
    cannot hold."""
    if name not in ENCODERS:
        raise ConfigError(f"network.encoder must be one of {', '.join(ENCODERS)}, got {name!r}")
    image = is_image_space(space)
    if name == "auto":
        if not image:
            return "mlp"
        side = min(_height_width(space.shape))
        if side >= min_image_size("nature_cnn"):
            return "nature_cnn"
        return "minatar_cnn" if side >= min_image_size("minatar_cnn") else "mlp"
    if name == "mlp":
        return name
    if not image:
        raise ConfigError(
            f"network.encoder {name} needs image observations (3 dimensions: channels, height, "
            f"width), got shape {tuple(space.shape)}"
        )
    height, width = _height_width(space.shape)
    smallest = min_image_size(name)
    if min(height, width) < smallest:
        raise ConfigError(
            f"network.encoder {name} needs frames of at least {smallest}x{smallest}, got "
            f"{height}x{width}; use minatar_cnn for small grids"
        )
    return name


def _height_width(shape: Sequence[int]) -> tuple[int, int]:
    if image_layout(shape) == "channels_first":
        return shape[1], shape[2]
    return shape[0], shape[1]


class FlatEncoder(nn.Module):
    """Any Box flattened into a float vector (what the agents' MLPs read)."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.features = int(np.prod(shape, dtype=np.int64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1).float()


class ConvEncoder(nn.Module):
    """Convolutions with ReLU, flattened, then a linear layer with ReLU: (B, *frame) -> (B,
    features). Frames arrive as stored (uint8 or bool or float, either channel order)."""

    def __init__(self, space: gym.spaces.Box, name: str) -> None:
        super().__init__()
        convs, self.features = CNN_LAYOUTS[name]
        self.channels_last = image_layout(space.shape) == "channels_last"
        self.scale = pixel_scale(space)
        channels = space.shape[2] if self.channels_last else space.shape[0]
        height, width = _height_width(space.shape)
        layers: list[nn.Module] = []
        for out_channels, kernel, stride in convs:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride), nn.ReLU()]
            channels = out_channels
            height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(channels * height * width, self.features), nn.ReLU())
        for module in self.modules():  # orthogonal with relu's gain (SB3's and CleanRL's CNNs)
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.orthogonal_(module.weight, math.sqrt(2))
                nn.init.zeros_(module.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # a view whose strides are already NHWC
        elif x.device.type == "cpu":
            # oneDNN's CPU convolutions work in NHWC: a channels-first stack (Atari's 4x84x84)
            # is laid out so once here rather than in every layer, forward and backward. The
            # Nature CNN's forward and backward on 32 Atari stacks took 51 ms instead of 75
            # (Intel Xeon, model 106); the same sums, in another order (within 2e-8 here).
            x = x.contiguous(memory_format=torch.channels_last)
        return self.linear(self.convs(x))


class DictEncoder(nn.Module):
    """Each key of a Dict observation through its own encoder (a CNN for frames, flattened
    otherwise: SB3's CombinedExtractor), the features concatenated in the space's key order.

    It reads a dict of tensors, or the one flat vector that gymnasium's FlattenObservation
    makes of it (the agents' storage: what `envs.flat_observations` hands them): each key's
    values then lie in order, `gym.spaces.flatdim` of them, and frames are reshaped back."""

    def __init__(self, space: gym.spaces.Dict, name: str = "auto") -> None:
        super().__init__()
        encoders, self.layout = {}, []
        for key, sub in space.spaces.items():
            image = is_image_space(sub)
            if image:
                encoders[key] = make_encoder(sub, name)
            else:  # (a Discrete key flattens one-hot: its flat size, not its shape)
                encoders[key] = FlatEncoder((gym.spaces.flatdim(sub),))
            self.layout.append((key, gym.spaces.flatdim(sub), tuple(sub.shape) if image else None))
        self.encoders = nn.ModuleDict(encoders)
        self.features = sum(encoder.features for encoder in self.encoders.values())

    def forward(self, obs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(obs, dict):
            return torch.cat([encoder(obs[key]) for key, encoder in self.encoders.items()], 1)
        parts, start = [], 0
        for key, size, frame_shape in self.layout:
            part = obs[:, start : start + size]
            if frame_shape is not None:
                part = part.reshape(len(obs), *frame_shape)
            parts.append(self.encoders[key](part))
            start += size
        return torch.cat(parts, dim=1)


class DetachedEncoder(nn.Module):
    """Another network's encoder, read without training it: SAC's and TD3's actor sees the
    critics' CNN features, and only the critic loss moves the CNN. Yarats et al. found the
    actor's gradient through a shared encoder harmful (SAC-AE, 2019) and stop it (DrQ, 2021);
    an actor with a CNN of its own collapsed here instead (its features went dead within 50
    updates on 2 of 5 seeds of TD3 on CatchPixelsContinuous).

    The encoder is held outside the module tree, so its parameters stay the critics' alone: one
    entry in the optimizer and in checkpoints."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self._source = (encoder,)  # (a tuple: not registered as a submodule)
        self.features = encoder.features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._source[0](obs)


def make_encoder(space: gym.Space, name: str = "auto") -> nn.Module:
    """The encoder module for `space` (its width in `.features`)."""
    if isinstance(space, gym.spaces.Dict):
        if name == "mlp":
            raise ConfigError("network.encoder mlp cannot read a Dict observation; use auto")
        return DictEncoder(space, name)
    chosen = choose_encoder(space, name)
    if chosen == "mlp":
        return FlatEncoder(space.shape)
    return ConvEncoder(space, chosen)
