"""Encoders (rlkit.nn.encoders): the choice per observation space, channel order, pixel
scaling, the size check, and the shapes that come out."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.nn.encoders import (
    ConvEncoder,
    DictEncoder,
    FlatEncoder,
    choose_encoder,
    image_layout,
    make_encoder,
    min_image_size,
    pixel_scale,
)

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)  # a frame stack, channels first
ATARI_LAST = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (10, 10, 4), bool)  # MinAtar's channels-last 0/1 grid
VECTOR = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)


def test_the_choice_per_space():
    assert choose_encoder(VECTOR) == "mlp"
    assert choose_encoder(ATARI) == "nature_cnn"
    assert choose_encoder(ATARI_LAST) == "nature_cnn"
    assert choose_encoder(MINATAR) == "minatar_cnn"  # below Nature's 36x36
    assert choose_encoder(ATARI, "minatar_cnn") == "minatar_cnn"  # named in the config
    assert choose_encoder(ATARI, "mlp") == "mlp"  # flattened, as asked


def test_channel_order_is_told_by_the_smallest_axis():
    assert image_layout((4, 84, 84)) == "channels_first"
    assert image_layout((84, 84, 4)) == "channels_last"
    assert image_layout((10, 10, 4)) == "channels_last"
    assert image_layout((1, 10, 10)) == "channels_first"
    assert image_layout((6,)) is None and image_layout((3, 4)) is None


def test_a_frame_too_small_for_the_cnn_names_the_minimum():
    assert min_image_size("nature_cnn") == 36
    assert min_image_size("minatar_cnn") == 3
    with pytest.raises(ValueError, match="at least 36x36, got 10x10"):
        choose_encoder(MINATAR, "nature_cnn")
    with pytest.raises(ValueError, match="needs image observations"):
        choose_encoder(VECTOR, "nature_cnn")
    with pytest.raises(ValueError, match="must be one of auto, mlp, nature_cnn, minatar_cnn"):
        choose_encoder(VECTOR, "resnet")


def test_pixels_scale_to_the_unit_range_inside_the_network():
    assert pixel_scale(ATARI) == pytest.approx(1 / 255)
    assert pixel_scale(MINATAR) == 1.0
    encoder = ConvEncoder(ATARI, "nature_cnn")
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    as_floats = frames.float() / 255  # what the convolutions must see
    with torch.no_grad():
        out = encoder(frames)
        reference = encoder.linear(encoder.convs(as_floats))
    torch.testing.assert_close(out, reference)


@pytest.mark.parametrize("space", [ATARI, ATARI_LAST, MINATAR])
def test_cnn_output_width_and_channel_orders_agree(space):
    encoder = make_encoder(space)
    assert isinstance(encoder, ConvEncoder)
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(3)]))
    with torch.no_grad():
        features = encoder(obs)
    assert features.shape == (3, encoder.features) and features.dtype == torch.float32
    assert encoder.features == (512 if space is not MINATAR else 128)
    if space is ATARI_LAST:  # the same weights on the same frames, channel first, agree
        first = ConvEncoder(ATARI, "nature_cnn")
        first.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(first(obs.permute(0, 3, 1, 2)), features)


def test_dict_observations_concatenate_each_keys_features():
    space = gym.spaces.Dict({"frame": MINATAR, "state": VECTOR})
    encoder = make_encoder(space)
    assert isinstance(encoder, DictEncoder)
    assert isinstance(encoder.encoders["frame"], ConvEncoder)
    assert isinstance(encoder.encoders["state"], FlatEncoder)
    assert encoder.features == 128 + 6
    sample = [space.sample() for _ in range(2)]
    obs = {key: torch.as_tensor(np.stack([s[key] for s in sample])) for key in space.spaces}
    with torch.no_grad():
        features = encoder(obs)
    assert features.shape == (2, 134)
    torch.testing.assert_close(features[:, 128:], obs["state"])
    with pytest.raises(ValueError, match="cannot read a Dict"):
        make_encoder(space, "mlp")
