"""Recurrent cores over whole sequences (rlkit.nn.recurrent) and the velocity-masked tasks
they are for (envs.masked)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

import envs  # noqa: F401  (registers the NoVel ids)
from envs.masked import NO_VELOCITY, MaskObservation
from rlkit.nn.recurrent import reset_where, run_sequences, step_by_step, zero_state


def _core(kind: str, layers: int) -> nn.Module:
    torch.manual_seed(0)
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    return cls(5, 8, num_layers=layers)


def _flat(state):
    return torch.cat([s.flatten() for s in state]) if isinstance(state, tuple) else state.flatten()


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_whole_sequences_equal_the_step_by_step_loop_with_resets_inside(kind, layers):
    """Values and gradients (weights and inputs), from a live state, with episodes starting
    mid-sequence in some copies, at the first step in another, twice in one."""
    core = _core(kind, layers)
    steps, batch = 12, 4
    inputs = torch.randn(steps, batch, 5, requires_grad=True)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0, 1] = starts[3, 0] = starts[3, 2] = starts[7, 2] = starts[11, 3] = True
    live = zero_state(core, batch)
    live = (
        tuple(torch.randn_like(s) for s in live)
        if isinstance(live, tuple)
        else torch.randn_like(live)
    )
    results = []
    for run in (run_sequences, step_by_step):
        core.zero_grad()
        inputs.grad = None
        out, state = run(core, inputs, starts, live)
        (out.square().sum() + _flat(state).sum()).backward()
        grads = [p.grad.clone() for p in core.parameters()] + [inputs.grad.clone()]
        results.append((out, _flat(state), grads))
    (out, state, grads), (ref_out, ref_state, ref_grads) = results
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, ref_state, rtol=1e-5, atol=1e-6)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5)


def test_an_episode_starts_from_the_zero_state_whatever_came_before():
    """The outputs from an episode's first step on are those of a fresh core on that episode
    alone: nothing of the previous episode's state leaks in (sb3-contrib #239)."""
    core = _core("lstm", 1)
    inputs = torch.randn(10, 2, 5)
    starts = torch.zeros(10, 2, dtype=torch.bool)
    starts[6, 0] = True
    live = tuple(torch.randn(1, 2, 8) for _ in range(2))
    with torch.no_grad():
        out, _ = run_sequences(core, inputs, starts, live)
        fresh, _ = core(inputs[6:, :1], zero_state(core, 1))
    torch.testing.assert_close(out[6:, :1], fresh, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[:6, 1], core(inputs[:6, 1:], zero_state(core, 1))[0][:, 0])


def test_one_call_of_the_core_per_stretch_between_starts():
    core = _core("gru", 1)
    calls = []
    core.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    inputs = torch.randn(16, 3, 5)
    starts = torch.zeros(16, 3, dtype=torch.bool)
    starts[0] = True
    run_sequences(core, inputs, starts, zero_state(core, 3))
    assert calls == [16]  # no episode starts inside: the whole rollout at once
    calls.clear()
    starts[5, 1] = starts[5, 2] = starts[9, 0] = True
    run_sequences(core, inputs, starts, zero_state(core, 3))
    assert calls == [5, 4, 7]


def test_reset_where_zeroes_only_the_starting_copies():
    h = torch.ones(2, 3, 4)
    out = reset_where((h, 2 * h), torch.tensor([False, True, False]))
    assert out[0][:, 1].abs().sum() == 0 and out[1][:, 1].abs().sum() == 0
    assert torch.equal(out[0][:, [0, 2]], h[:, [0, 2]]) and torch.equal(out[1][:, 0], 2 * h[:, 0])


@pytest.mark.parametrize("env_id", sorted(NO_VELOCITY))
def test_the_velocities_are_hidden_and_the_rest_is_the_task(env_id):
    base, hidden = NO_VELOCITY[env_id]
    masked, plain = gym.make(env_id), gym.make(base)
    check_env(masked.unwrapped, skip_render_check=True)
    assert masked.spec.max_episode_steps == plain.spec.max_episode_steps
    obs, _ = masked.reset(seed=4)
    plain_obs, _ = plain.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(30):
        keep = [i for i in range(len(obs)) if i not in hidden]
        assert np.all(obs[list(hidden)] == 0) and np.array_equal(obs[keep], plain_obs[keep])
        assert masked.observation_space.contains(obs)
        action = _action(plain.action_space, rng)
        obs, reward, terminated, truncated, _ = masked.step(action)
        plain_obs, plain_reward, *_ = plain.step(action)
        assert reward == plain_reward
        if terminated or truncated:
            break


def _action(space, rng):
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(space.dtype)


def test_a_mask_outside_the_observation_is_refused_by_name():
    with pytest.raises(ValueError, match=r"indices \[7\] are outside the observation's 4"):
        MaskObservation(gym.make("CartPole-v1"), [1, 7])


def test_observation_mask_hides_entries_in_training_and_evaluation():
    """`observation_mask` makes any task partially observable: the agent's training envs and
    its evaluation episodes both read those entries as 0."""
    import agents
    from rlkit.agent.evaluation import evaluate

    agent = agents.PPO(
        env="CartPole-v1", observation_mask=[1, 3], n_envs=2, n_steps=16, batch_size=32
    )
    obs, _ = agent.env.reset(seed=0)
    assert np.all(obs[:, [1, 3]] == 0) and np.all(obs[:, [0, 2]] != 0)
    seen = []

    def policy(batch):
        seen.append(batch.copy())
        return agent.act(batch)

    evaluate(policy, "CartPole-v1", 2, seed=5, observation_mask=agent.config.observation_mask)
    seen = np.concatenate(seen)
    assert np.all(seen[:, [1, 3]] == 0) and np.any(seen[:, 0] != 0)
    agent.learn(64)
    assert agent.evaluate(1).mean_return >= 1


def test_a_bad_observation_mask_is_one_line_with_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for mask, message in [("[1, 9]", "indices [9] are outside"), ("[-1]", "indices >= 0")]:
        result = subprocess.run(
            [sys.executable, "-m", "rlkit.cli", "train", "configs/ppo_cartpole.yaml", "--set",
             f"observation_mask={mask}", "--steps", "64", "--run-dir", str(tmp_path / "run")],
            cwd=root, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(
    ("core", "shared_core", "continuous"),
    [("lstm", False, False), ("gru", False, True), ("lstm", True, True), ("gru", True, False)],
)
def test_acting_step_by_step_gives_what_the_update_recomputes_over_the_sequence(
    core, shared_core, continuous
):
    """What acting computes one step at a time, carrying the state, is what the update
    recomputes from the rollout's first state over the whole sequence: the log-probabilities
    of PPO's ratio start at 1."""
    from rlkit.nn.recurrent import RecurrentActorCritic

    torch.manual_seed(1)
    model = RecurrentActorCritic(
        4, 2, core=core, core_size=16, hidden_sizes=[8], shared_core=shared_core,
        continuous=continuous,
    )  # fmt: skip
    steps, batch = 9, 3
    obs = torch.randn(steps, batch, 4)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0] = True
    starts[4, 1] = starts[6, 0] = True
    first = model.initial_state(batch)
    with torch.no_grad():
        state, heads, values = first, [], []
        for t in range(steps):
            head, value, state = model(obs[t : t + 1], starts[t : t + 1], state)
            heads.append(head)
            values.append(value)
        head, value, last = model(obs, starts, first)
    assert head.shape == (steps, batch, 2) and value.shape == (steps, batch)
    torch.testing.assert_close(head, torch.cat(heads), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value, torch.cat(values), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_flat(last[0]), _flat(state[0]), rtol=1e-5, atol=1e-6)
    assert (last[1] is None) == shared_core
    actions = torch.zeros(steps, batch, 2) if continuous else torch.zeros(steps, batch).long()
    log_probs = model.distribution(head).log_prob(actions)
    assert log_probs.shape[:2] == (steps, batch) and torch.isfinite(log_probs).all()


def test_frames_go_through_the_encoder_before_the_core():
    from rlkit.nn.encoders import make_encoder
    from rlkit.nn.recurrent import RecurrentActorCritic

    space = gym.spaces.Box(0, 1, (10, 10, 4), bool)
    model = RecurrentActorCritic(0, 3, core="gru", core_size=32, encoder=make_encoder(space))
    obs = torch.randint(0, 2, (5, 2, 10, 10, 4)).bool()
    starts = torch.zeros(5, 2, dtype=torch.bool)
    head, values, _ = model(obs, starts, model.initial_state(2))
    assert head.shape == (5, 2, 3) and values.shape == (5, 2)
    head.sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_an_unknown_core_is_named():
    from rlkit.nn.recurrent import RecurrentActorCritic

    with pytest.raises(ValueError, match="unknown recurrent core 'rnn'; choose one of lstm, gru"):
        RecurrentActorCritic(4, 2, core="rnn")
