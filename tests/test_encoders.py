"""Encoders (rlkit.nn.encoders): the choice per observation space, channel order, pixel
scaling, the size check, and the shapes that come out."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.nn.encoders import (
    ConvEncoder,
    DetachedEncoder,
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
    tiny = gym.spaces.Box(0.0, 1.0, (2, 2, 2), np.float32)  # too small for any CNN
    assert choose_encoder(tiny) == "mlp"
    assert isinstance(make_encoder(tiny), FlatEncoder)


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
def test_cpu_convolutions_run_in_nhwc_with_the_plain_layouts_values_and_gradients(space):
    """On the CPU the convolutions see an NHWC-strided input (oneDNN's layout; a channels-first
    Atari stack is laid out once), and give what the plain NCHW computation gives, forward and
    backward, to float32 rounding."""
    encoder = make_encoder(space)
    seen = []
    encoder.convs[0].register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(8)]))
    out = encoder(obs)
    assert seen == [True]
    plain = obs.float() * encoder.scale
    if encoder.channels_last:
        plain = plain.permute(0, 3, 1, 2)
    plain = plain.contiguous()  # NCHW
    reference = encoder.linear(encoder.convs(plain))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    weights = [p for p in encoder.parameters()]
    grads = torch.autograd.grad(out.square().sum(), weights)
    reference_grads = torch.autograd.grad(reference.square().sum(), weights)
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        # (sums of thousands of products in another order: relative to the gradient's size)
        assert (grad - reference_grad).norm() <= 1e-5 * reference_grad.norm()


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


# --------------------------------------------------------------------------- in the agents

PIXELS = dict(
    env="rlkit/CatchPixels-v0", learning_starts=500, train_freq=1, target_update_interval=200,
    exploration_fraction=0.3, buffer_size=10_000, batch_size=32, network={"hidden_sizes": [64]},
)  # fmt: skip


def test_dqn_reads_frames_through_a_cnn_and_stores_them_as_bytes():
    import agents

    agent = agents.DQN(**PIXELS, seed=1)
    assert isinstance(agent.q_net.encoder, ConvEncoder)  # MinAtar's: a 10x5 frame
    assert agent._fast is None  # (a CNN goes through autograd)
    agent.learn(600)
    assert agent.buffer.obs.dtype == torch.uint8 and agent.buffer.obs.shape[1:] == (10, 5, 1)
    assert agent.buffer.nbytes < 10_000 * (2 * 50 + 30)  # one byte a pixel
    frame = agent.env.single_observation_space.sample()
    assert agent.act(frame) in (0, 1, 2)
    assert agent.act(np.stack([frame, frame])).shape == (2,)


def test_encoder_mlp_flattens_frames_as_before():
    import agents

    agent = agents.DQN(**{**PIXELS, "network": {"hidden_sizes": [64], "encoder": "mlp"}}, seed=1)
    assert agent.obs_shape == (50,) and agent.q_net.encoder is None
    assert agent._fast is not None  # the written-out MLP path


def test_dqn_learns_catch_from_pixels():
    """2,000 steps of DQN with the MinAtar CNN catch every ball of 20 test episodes (measured:
    seeds 1-5 all at 1.0; a random paddle averages about -0.6)."""
    import agents

    torch.set_num_threads(1)
    agent = agents.DQN(**PIXELS, seed=1)
    agent.learn(2_000)
    assert agent.evaluate(20).mean_return >= 0.8


def test_a_saved_cnn_agent_acts_the_same_after_loading(tmp_path):
    import agents

    agent = agents.DQN(**PIXELS, seed=2)
    agent.learn(700)
    agent.save(tmp_path / "agent.safetensors")
    loaded = agents.load(tmp_path / "agent.safetensors")
    frames = np.stack([agent.env.single_observation_space.sample() for _ in range(16)])
    assert np.array_equal(agent.act(frames), loaded.act(frames))
    assert isinstance(loaded.q_net.encoder, ConvEncoder)


def test_bad_encoder_settings_are_one_line_config_errors():
    import agents
    from rlkit.base.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 36x36, got 10x5; use minatar_cnn"):
        agents.DQN(**{**PIXELS, "network": {"encoder": "nature_cnn"}})
    with pytest.raises(ConfigError, match=r"minatar_cnn needs image observations .* \(3,\)"):
        agents.SAC(env="Pendulum-v1", network={"encoder": "minatar_cnn"})
    with pytest.raises(ConfigError, match=r"nature_cnn needs image observations .* \(4,\)"):
        agents.DQN(env="CartPole-v1", network={"encoder": "nature_cnn"})
    with pytest.raises(ConfigError, match="normalize_obs scales vector observations"):
        agents.PPO(env="rlkit/CatchPixels-v0", normalize_obs=True)
    with pytest.raises(ConfigError, match=r"network\.encoder"):
        agents.DQN(**{**PIXELS, "network": {"encoder": "resnet"}})


ON_POLICY = dict(env="rlkit/CatchPixels-v0", n_envs=8, network={"hidden_sizes": [64]})


@pytest.mark.parametrize(
    ("name", "steps", "extra"),
    [
        ("ppo", 20_000, {"n_steps": 32, "batch_size": 64, "n_epochs": 4}),
        ("a2c", 20_000, {"n_steps": 32}),
        ("reinforce", 60_000, {"batch_episodes": 16}),
    ],
)
def test_policy_gradient_agents_learn_catch_from_pixels_through_one_cnn(name, steps, extra):
    """REINFORCE, A2C and PPO read frames through one CNN that the policy and the value share
    (SB3's CnnPolicy, CleanRL's ppo_atari), keeping them as uint8 in their storage. Measured on
    seeds 1-5: PPO and A2C catch every ball of 20 test episodes after 20,000 steps, REINFORCE
    after 60,000 (seed 5: 0.9)."""
    import agents

    torch.set_num_threads(1)
    agent = agents.agent_class(name)(**ON_POLICY, **extra, seed=1)
    assert isinstance(agent.model.encoder, ConvEncoder)
    assert getattr(agent, "_actor", None) is None  # (a CNN goes through autograd)
    agent.learn(steps)
    if name != "reinforce":
        assert agent.buffer.obs.dtype == torch.uint8
        assert agent.buffer.obs.shape == (32, 8, 10, 5, 1)
    assert agent.evaluate(20).mean_return >= 0.8


def test_policy_and_value_can_each_read_their_own_cnn(tmp_path):
    import agents
    from rlkit.base.errors import ConfigError

    settings = dict(ON_POLICY, n_steps=16, batch_size=32, seed=3)
    own = agents.PPO(**{**settings, "network": {"hidden_sizes": [64], "share_encoder": False}})
    one = agents.PPO(**settings)
    model = own.model
    assert model.value_encoder is not None and one.model.value_encoder is None
    policy_cnn = {id(p) for p in model.encoder.parameters()}
    assert policy_cnn.isdisjoint(id(p) for p in model.value_encoder.parameters())
    # The value's loss reaches only the value's CNN; the policy's logits only the policy's.
    frames = torch.as_tensor(np.stack([own.env.single_observation_space.sample()] * 4))
    model.values(frames).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.value_encoder.parameters())
    own.learn(256)
    own.save(tmp_path / "agent.safetensors")
    loaded = agents.load(tmp_path / "agent.safetensors")
    assert loaded.model.value_encoder is not None
    torch.testing.assert_close(loaded.model.values(frames), model.values(frames), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="choose one"):
        agents.PPO(**{**settings, "network": {"share_encoder": False, "shared": True}})


CONTINUOUS = dict(
    env="rlkit/CatchPixelsContinuous-v0", buffer_size=20_000, learning_starts=500,
    batch_size=64, network={"hidden_sizes": [64]},
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "steps", "extra"), [("sac", 5_000, {}), ("td3", 6_000, {"action_noise": 0.3})]
)
def test_sac_and_td3_learn_catch_from_pixels_through_the_critics_cnn(name, steps, extra):
    """SAC and TD3 read frames through the critics' CNN (their targets through a copy), which
    the actor reads without training it, and keep uint8 frames in replay. Catch with one action
    in [-1, 1]: measured on seeds 1-5, SAC catches every ball of 20 test episodes after 5,000
    steps (after 4,000: 0.4-1.0), TD3 after 6,000 with exploration noise 0.3 (after 5,000:
    0.8-1.0; with the default 0.1, seed 2 stays at 0.6)."""
    import agents

    torch.set_num_threads(1)
    agent = agents.agent_class(name)(**CONTINUOUS, **extra, seed=1)
    assert isinstance(agent.critic.encoder, ConvEncoder)
    assert isinstance(agent.critic_target.encoder, ConvEncoder)
    assert isinstance(agent.actor.encoder, DetachedEncoder)
    assert agent.actor.encoder._source[0] is agent.critic.encoder
    assert agent._fast is None and agent._numpy_actor is None  # (a CNN goes through autograd)
    agent.learn(steps)
    assert agent.buffer.obs.dtype == torch.uint8
    assert agent.evaluate(20).mean_return >= 0.8


def test_only_the_critic_loss_trains_the_cnn(tmp_path):
    import agents

    agent = agents.TD3(**CONTINUOUS, seed=2)
    cnn = {id(p) for p in agent.critic.encoder.parameters()}
    assert cnn.isdisjoint(id(p) for p in agent.actor.parameters())  # (one optimizer entry)
    frames = torch.as_tensor(np.stack([agent.observation_space.sample() for _ in range(8)]))
    # The actor's term reaches the critics through the action only: neither their weights
    # nor the CNN get a gradient; the actor's layers do.
    agent.critic.frozen_q1(frames, agent.actor(frames)).sum().backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    sac = agents.SAC(**CONTINUOUS, seed=2)
    actions = torch.zeros(8, 1, requires_grad=True)
    sum(sac.critic.frozen(frames, actions)).sum().backward()
    assert actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in sac.critic.parameters())
    # Saved and loaded, the actor reads the loaded critics' CNN.
    sac.learn(600)
    sac.save(tmp_path / "sac.safetensors")
    loaded = agents.load(tmp_path / "sac.safetensors")
    assert loaded.actor.encoder._source[0] is loaded.critic.encoder
    assert np.array_equal(sac.act(frames.numpy()), loaded.act(frames.numpy()))
    # share_encoder false: the actor gets a CNN of its own (SB3's SAC and TD3 default).
    own = agents.SAC(**{**CONTINUOUS, "network": {"hidden_sizes": [64], "share_encoder": False}})
    assert isinstance(own.actor.encoder, ConvEncoder)
    assert {id(p) for p in own.actor.encoder.parameters()}.isdisjoint(
        id(p) for p in own.critic.parameters()
    )


def test_a_dict_encoder_reads_the_flattened_vector_as_the_dict():
    # The agents store a Dict observation as gymnasium's FlattenObservation vector; the
    # encoder's reading of it must equal its reading of the dict itself.
    space = gym.spaces.Dict(
        {
            "frame": gym.spaces.Box(0, 255, (10, 5, 1), dtype=np.uint8),
            "height": gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32),
            "mode": gym.spaces.Discrete(3),
        }
    )
    space.seed(0)
    torch.manual_seed(0)
    encoder = DictEncoder(space)
    samples = [space.sample() for _ in range(4)]
    flat = torch.as_tensor(np.stack([gym.spaces.flatten(space, s) for s in samples]))
    as_dict = {
        "frame": torch.as_tensor(np.stack([s["frame"] for s in samples])),
        "height": torch.as_tensor(np.stack([s["height"] for s in samples])),
        "mode": torch.nn.functional.one_hot(torch.tensor([s["mode"] for s in samples]), 3),
    }
    assert encoder.features == 128 + 1 + 3
    torch.testing.assert_close(encoder(flat.float()), encoder(as_dict), rtol=0, atol=0)


def test_dqn_and_ppo_read_a_dict_with_a_frame_through_its_cnn():
    """rlkit/CatchDict-v0: {"frame": the 10x5 frame, "height": the ball's fall}. DQN catches
    every ball of 20 test episodes after 2,000 steps (seed 1; PPO after 20,000, not run here)."""
    import agents

    torch.set_num_threads(1)
    agent = agents.DQN(**{**PIXELS, "env": "rlkit/CatchDict-v0"}, seed=1)
    assert isinstance(agent.q_net.encoder, DictEncoder) and agent._fast is None
    assert isinstance(agent.q_net.encoder.encoders["frame"], ConvEncoder)
    agent.learn(2_000)
    assert agent.evaluate(20).mean_return >= 0.8
    ppo = agents.PPO(**{**ON_POLICY, "env": "rlkit/CatchDict-v0"})
    assert isinstance(ppo.model.encoder, DictEncoder)
    assert agents.DQN(env="rlkit/CatchDict-v0", network={"encoder": "mlp"}).q_net.encoder is None
