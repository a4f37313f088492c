"""SAC's written-out gradient step (rlkit.nn.sac_grad, agents.SAC's default) against its autograd
update (`SAC._autograd_gradients`, fast_mlp=false): the same gradients for every parameter and
the same scalars, in float64 over several network shapes, activations, action sizes, a fixed
and a tuned alpha, terminal transitions and log stds past the clamp; and a short run trains
the same either way. Also SAC's acting in numpy against its torch actor."""

import numpy as np
import pytest
import torch

import agents
from rlkit.nn.sac_grad import SACGradients
from tests.helpers import THREE_ACTIONS, random_replay_batch, register_three_actions


def _double_agent(env_id, hidden, activation, tuned, clamped):
    register_three_actions()
    agent = agents.SAC(
        env=env_id, seed=0, fast_mlp=False, ent_coef=None if tuned else 0.3,
        initial_ent_coef=0.7, network={"hidden_sizes": hidden, "activation": activation},
    )  # fmt: skip
    for net in agent.networks.values():
        net.double()
    with torch.no_grad():  # targets unlike the critics
        for p in agent.critic_target.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if clamped:  # log stds reaching past both ends of the clamp
            agent.actor.log_std.weight.mul_(60.0)
            agent.actor.log_std.bias.fill_(-8.0)
    return agent


@pytest.mark.parametrize("env_id", ["Pendulum-v1", THREE_ACTIONS])
@pytest.mark.parametrize("hidden", [[16], [32, 24]])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("tuned", [True, False])
@pytest.mark.parametrize("clamped", [False, True])
def test_gradients_and_scalars_match_autograd(env_id, hidden, activation, tuned, clamped):
    agent = _double_agent(env_id, hidden, activation, tuned, clamped)
    batch = random_replay_batch(agent, 48, torch.Generator().manual_seed(1))
    alpha = agent.alpha().double()

    agent.sample_generator.manual_seed(7)
    expected_values, _ = agent._autograd_gradients(batch, alpha)
    params = list(agent._parameters)
    expected = {id(p): p.grad.clone() for p in params if p.grad is not None}
    raw = agent.actor.log_std(agent.actor.trunk(batch.obs))
    if clamped:  # the clamp is active on both sides in this batch (its gradient is 0 there)
        assert (raw > 2.0).any() and (raw < -20.0).any() and ((raw > -20) & (raw < 2)).any()
    else:
        assert ((raw > -20) & (raw < 2)).all()
    # Float64 rounding apart, except that autograd's path recovers the noise as
    # (u - mean) / std, which keeps ~16 - log10(|mean| / std) digits: at std = e^-19 about 8.
    # The written-out path uses the noise itself.
    tolerance = dict(rtol=1e-6, atol=1e-9) if clamped else dict(rtol=1e-12, atol=1e-13)

    agent.optimizer.zero_grad(set_to_none=True)
    log_alpha = agent.temperature.log_alpha
    fast = SACGradients(agent.actor, agent.critic, agent.critic_target, log_alpha, tuned)
    agent.sample_generator.manual_seed(7)
    noise = (agent._noise(batch.actions).double(), agent._noise(batch.actions).double())
    values = fast.step(batch, *noise, alpha, agent.target_entropy).tolist()

    got = {id(p): p.grad for p in params if p.grad is not None}
    if not tuned:  # a fixed alpha's log alpha: no gradient from autograd, a zero one here
        assert id(log_alpha) not in expected
        assert torch.equal(got.pop(id(log_alpha)), torch.zeros_like(log_alpha))
    assert got.keys() == expected.keys()
    for p in params:
        if id(p) in expected:
            torch.testing.assert_close(got[id(p)], expected[id(p)], **tolerance)
    if not tuned:  # the autograd path reports an alpha loss it does not use; so does SAC
        expected_values[7] = values[7] = 0.0
    np.testing.assert_allclose(values, expected_values, **tolerance)
    assert np.isclose(values[3], fast.flat_grad.norm().item())  # the norm is of all of them


@pytest.mark.parametrize("fast_mlp", [True, False])
def test_a_fixed_alpha_keeps_the_optimizer_on_its_single_step(fast_mlp):
    # log alpha is in the optimizer whether alpha is tuned or not; a fixed alpha gives it no
    # gradient of its own, and a parameter without one would send every update down the
    # optimizer's step-per-parameter path. It gets a zero gradient: nothing about it moves.
    agent = agents.SAC(
        env="Pendulum-v1", seed=1, learning_starts=50, ent_coef=0.2, fast_mlp=fast_mlp,
        network={"hidden_sizes": [16, 16]},
    )  # fmt: skip
    log_alpha = agent.temperature.log_alpha.detach().clone()
    agent.learn(150)
    assert agent.n_updates == 100
    buckets = agent.optimizer._buckets[0]
    assert all(bucket.uniform for bucket in buckets)
    if fast_mlp:  # and the written-out gradients are read where they lie, not copied
        assert all(bucket._in_place_grads is not None for bucket in buckets)
    assert torch.equal(agent.temperature.log_alpha.detach(), log_alpha)
    assert float(agent.alpha()) == pytest.approx(0.2)


def test_it_is_the_default_where_the_networks_allow_it():
    assert agents.SAC(env="Pendulum-v1")._fast is not None
    assert agents.SAC(env="Pendulum-v1", fast_mlp=False)._fast is None
    assert agents.SAC(env="Pendulum-v1", network={"activation": "leaky_relu"})._fast is None


def test_sac_trains_the_same_with_and_without_it():
    params = {}
    for fast in (True, False):
        agent = agents.SAC(
            env="Pendulum-v1", seed=3, learning_starts=100, batch_size=40, fast_mlp=fast,
            network={"hidden_sizes": [32, 32]},
        )  # fmt: skip
        agent.learn(200)
        params[fast] = torch.cat([p.detach().reshape(-1) for p in agent._parameters])
    # Not bit for bit (products summed in another order), within float32 rounding. A short
    # run: the differences grow chaotically (a unit crossing its relu threshold on one path
    # only): at 600 steps up to 4e-4 on some seeds, at 200 at most 1.4e-6 on seeds 1-10.
    torch.testing.assert_close(params[True], params[False], rtol=0, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_numpy_actor_acts_as_the_torch_actor(activation):
    # On the CPU SAC acts in numpy (one env step at a time); the same actions, to float32
    # rounding, and the same noise from the same generator.
    register_three_actions()
    agent = agents.SAC(env=THREE_ACTIONS, seed=2, network={"activation": activation})
    assert agent._numpy_actor is not None
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32))
    with torch.no_grad():  # some log stds past the clamp
        agent.actor.log_std.bias.add_(torch.tensor([-30.0, 5.0, 0.0]))
    for deterministic in (True, False):
        agent.sample_generator.manual_seed(5)
        ours = agent._policy_actions(obs, deterministic)
        numpy_actor, agent._numpy_actor = agent._numpy_actor, None
        agent.sample_generator.manual_seed(5)
        expected = agent._policy_actions(obs, deterministic)
        agent._numpy_actor = numpy_actor
        assert ours.dtype == np.float32 and ours.shape == (64, 3)
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    greedy = agent._greedy_policy()(obs.numpy().astype(np.float64))
    np.testing.assert_allclose(greedy, agent.act(obs.numpy()), rtol=1e-5, atol=1e-6)
