"""TD3's written-out gradient step (rlkit.nn.td3_grad, agents.TD3's default) against its autograd
update (`TD3._autograd_gradients`, fast_mlp=false): the same gradients for every parameter and
the same scalars, in float64 over network shapes, activations, action sizes, actor steps and
critic-only steps, terminal transitions and smoothing noise past its clip; a short run trains
the same either way. Also TD3's acting in numpy against its torch actor."""

import numpy as np
import pytest
import torch

import agents
from rlkit.nn.td3_grad import TD3Gradients
from tests.helpers import THREE_ACTIONS, random_replay_batch, register_three_actions


def _double_agent(env_id, hidden, activation):
    register_three_actions()
    agent = agents.TD3(
        env=env_id, seed=0, fast_mlp=False,
        network={"hidden_sizes": hidden, "activation": activation},
    )  # fmt: skip
    for net in agent.networks.values():
        net.double()
    with torch.no_grad():  # targets unlike the online networks
        for p in [*agent.critic_target.parameters(), *agent.actor_target.parameters()]:
            p.add_(0.1 * torch.randn_like(p))
    return agent


@pytest.mark.parametrize("env_id", ["Pendulum-v1", THREE_ACTIONS])
@pytest.mark.parametrize("hidden", [[16], [32, 24]])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("actor_step", [True, False])
def test_gradients_and_scalars_match_autograd(env_id, hidden, activation, actor_step):
    agent = _double_agent(env_id, hidden, activation)
    batch = random_replay_batch(agent, 48, torch.Generator().manual_seed(1))
    # A noise scale whose clip is active on some entries and not on others.
    noise = 3.0 * torch.randn(batch.actions.shape, generator=torch.Generator().manual_seed(2))
    noise = noise.double()
    std, clip = agent.config.target_policy_noise, agent.config.target_noise_clip
    assert ((noise * std).abs() > clip).any() and ((noise * std).abs() < clip).any()

    expected_values, _ = agent._autograd_gradients(batch, noise, actor_step)
    params = list(agent._parameters)
    expected = {id(p): p.grad.clone() for p in params if p.grad is not None}
    actor_ids = {id(p) for p in agent.actor.parameters()}
    assert actor_step == bool(actor_ids & expected.keys())

    agent.optimizer.zero_grad(set_to_none=True)
    for p in agent.actor.parameters():  # a stale actor gradient from an earlier actor step
        p.grad = torch.ones_like(p)
    fast = TD3Gradients(agent.actor, agent.actor_target, agent.critic, agent.critic_target)
    values = fast.step(batch, noise, std, clip, actor_step).tolist()

    got = {id(p): p.grad for p in params if p.grad is not None}
    assert got.keys() == expected.keys()  # no actor gradient on a critic-only step
    for p in params:
        if id(p) in expected:
            torch.testing.assert_close(got[id(p)], expected[id(p)], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(values, expected_values, rtol=1e-12, atol=1e-13)
    # The norm is of the gradients the optimizer steps on.
    assert np.isclose(values[2], torch.cat([g.reshape(-1) for g in got.values()]).norm().item())


def test_it_is_the_default_where_the_networks_allow_it():
    assert agents.TD3(env="Pendulum-v1")._fast is not None
    assert agents.TD3(env="Pendulum-v1", fast_mlp=False)._fast is None
    assert agents.TD3(env="Pendulum-v1", network={"activation": "leaky_relu"})._fast is None


def test_td3_trains_the_same_with_and_without_it():
    params, adam_steps = {}, {}
    for fast in (True, False):
        agent = agents.TD3(
            env="Pendulum-v1", seed=3, learning_starts=100, batch_size=40, fast_mlp=fast,
            network={"hidden_sizes": [32, 32]},
        )  # fmt: skip
        agent.learn(200)
        params[fast] = torch.cat([p.detach().reshape(-1) for p in agent._parameters])
        state = agent.optimizer.state_dict()["state"]
        adam_steps[fast] = sorted({float(s["step"]) for s in state.values()})
    # Not bit for bit (products summed in another order), within float32 rounding. A short
    # run: the differences grow chaotically (a unit crossing its relu threshold on one path
    # only): at 600 steps up to 4e-4 on some seeds, at 200 at most 1.4e-6 on seeds 1-10.
    torch.testing.assert_close(params[True], params[False], rtol=0, atol=1e-4)
    # The actor's Adam counts only its own steps (every policy_delay-th update) either way.
    assert adam_steps[True] == adam_steps[False] == [50.0, 100.0]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_numpy_actor_acts_as_the_torch_actor(activation):
    # On the CPU TD3 acts in numpy (one env step at a time); the same actions, to float32
    # rounding, and the same exploration noise from the same generator.
    register_three_actions()
    agent = agents.TD3(env=THREE_ACTIONS, seed=2, network={"activation": activation})
    assert agent._numpy_actor is not None
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32))
    for deterministic in (True, False):
        state = agent.rng.bit_generator.state
        ours = agent._policy_actions(obs, deterministic)
        numpy_actor, agent._numpy_actor = agent._numpy_actor, None
        agent.rng.bit_generator.state = state
        expected = agent._policy_actions(obs, deterministic)
        agent._numpy_actor = numpy_actor
        assert ours.dtype == np.float32 and ours.shape == (64, 3)
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    greedy = agent._greedy_policy()(obs.numpy().astype(np.float64))
    np.testing.assert_allclose(greedy, agent.act(obs.numpy()), rtol=1e-5, atol=1e-6)
