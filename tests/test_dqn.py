import pickle
import zipfile

import numpy as np
import pytest
import torch

import agents
from agents import DQN
from rlkit.base.errors import AgentFileError, BufferTooLargeError, EnvError

from .helpers import read_scalars

SMALL = dict(
    env="CartPole-v1",
    learning_starts=200,
    buffer_size=5_000,
    batch_size=32,
    train_freq=2,
    target_update_interval=100,
    network={"hidden_sizes": [32, 32]},
    log_interval=100,
)


def test_learn_counts_steps_and_updates():
    agent = DQN(**SMALL, n_envs=4, seed=0)
    agent.learn(1_000)
    assert agent.global_step == 1_000
    assert len(agent.buffer) == 1_000
    # Updates happen when the step counter crosses a multiple of train_freq after learning_starts.
    assert agent.n_updates == (1_000 - 200) // 2
    agent.learn(200)  # a second call continues
    assert agent.global_step == 1_200


def test_sb3_train_freq_in_episodes_and_gradient_steps_minus_one():
    """Stable-Baselines3's counting: `train_freq: [1, "episode"]` trains at each episode end
    after learning_starts, and `gradient_steps: -1` takes one gradient step per env step
    collected since the previous training call (beside SB3 itself: the test below)."""
    # CartPole's episodes end at varying steps; from learning_starts 0 every call trains on the
    # steps since the one before, so the updates are the steps up to the last episode end.
    settings = {**SMALL, "learning_starts": 0, "train_freq": [1, "episode"]}
    agent = DQN(**settings, gradient_steps=-1)
    agent.learn(1_000)
    assert (agent.config.train_freq, agent.config.train_freq_unit) == (1, "episode")
    assert agent.n_episodes >= 10
    assert agent.n_updates == agent.train_call_step
    assert 0 <= 1_000 - agent.train_call_step < 500  # (CartPole's longest episode)
    # In steps, -1 is train_freq gradient steps per call: one per transition.
    agent = DQN(**{**SMALL, "train_freq": (4, "step")}, gradient_steps=-1, n_envs=2)
    agent.learn(1_000)
    assert agent.n_updates == 1_000 - 200


@pytest.mark.parametrize(
    ("train_freq", "gradient_steps", "learning_starts", "updates"),
    [
        # Pendulum's episodes are 200 steps: calls at 200 (before learning_starts: none),
        # 400, 600, ..., 1400; the first that trains has the 200 steps since the call at 200.
        ([1, "episode"], -1, 300, 6 * 200),
        ([2, "episode"], 7, 250, 3 * 7),  # calls at 400, 800, 1200
        ([5, "step"], -1, 103, 260 * 5),  # at 105, 110, ..., 1400, 5 steps each
    ],
)
def test_replay_agents_count_gradient_steps_as_sb3(
    train_freq, gradient_steps, learning_starts, updates
):
    agent = agents.TD3(
        env="Pendulum-v1", seed=0, train_freq=train_freq, gradient_steps=gradient_steps,
        learning_starts=learning_starts, policy_delay=1, network={"hidden_sizes": [16]},
    )  # fmt: skip
    agent.learn(1_400)
    assert agent.n_updates == updates


@pytest.mark.parametrize(
    ("train_freq", "gradient_steps", "learning_starts", "steps"),
    [((1, "episode"), -1, 300, 1_400), ((2, "episode"), 7, 250, 1_600),
     ((5, "step"), -1, 103, 1_400), (3, 2, 100, 1_200)],
)  # fmt: skip
def test_gradient_steps_counted_as_by_sb3_itself(
    train_freq, gradient_steps, learning_starts, steps
):
    """Beside Stable-Baselines3's TD3 where it is installed (`make bench-setup`; CI has not):
    the same number of gradient steps. (SB3 ends a learn call at the end of a rollout, past the
    budget when a rollout overshoots it: the budgets here end where its rollouts do.)"""
    sb3 = pytest.importorskip("stable_baselines3", reason="bench extra: make bench-setup")
    theirs = sb3.TD3(
        "MlpPolicy", "Pendulum-v1", train_freq=train_freq, gradient_steps=gradient_steps,
        learning_starts=learning_starts, policy_kwargs={"net_arch": [16]}, seed=0, device="cpu",
    )  # fmt: skip
    theirs.learn(steps)
    ours = agents.TD3(
        env="Pendulum-v1", seed=0, train_freq=train_freq, gradient_steps=gradient_steps,
        learning_starts=learning_starts, policy_delay=1, network={"hidden_sizes": [16]},
    )  # fmt: skip
    ours.learn(steps)
    assert (ours.global_step, ours.n_updates) == (theirs.num_timesteps, theirs._n_updates)


def test_act_single_and_batched_observations():
    agent = DQN(**SMALL, seed=0)
    obs, _ = agent.env.reset(seed=0)
    single = agent.act(obs[0])
    assert np.ndim(single) == 0 and int(single) in (0, 1)
    batch = agent.act(np.zeros((5, 4), dtype=np.float32))
    assert batch.shape == (5,)
    with pytest.raises(ValueError, match="observation shape"):
        agent.act(np.zeros(3))


def test_save_load_round_trip_gives_same_actions(tmp_path):
    agent = DQN(**SMALL, seed=1)
    agent.learn(1_000)
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = agents.load(path)
    assert isinstance(loaded, DQN) and loaded.config == agent.config
    assert loaded.global_step == agent.global_step
    for key, value in agent.q_net.state_dict().items():
        assert torch.equal(value, loaded.q_net.state_dict()[key])
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    assert np.array_equal(agent.act(obs), loaded.act(obs))
    assert loaded.evaluate(2, seed=0).returns == agent.evaluate(2, seed=0).returns


def test_same_seed_same_learning_curve(tmp_path):
    curves = []
    for name in ("a", "b", "c"):
        seed = 5 if name != "c" else 6
        agent = DQN(**SMALL, seed=seed)
        agent.learn(2_000, run_dir=tmp_path / name)
        curves.append((read_scalars(tmp_path / name), agent.q_net.state_dict()))
    (scalars_a, params_a), (scalars_b, params_b), (scalars_c, _) = curves
    for tag in ("rollout/episodic_return", "train/td_loss", "train/mean_q", "train/grad_norm"):
        assert scalars_a[tag] == scalars_b[tag], tag
    assert all(torch.equal(params_a[k], params_b[k]) for k in params_a)
    assert scalars_a["train/td_loss"] != scalars_c["train/td_loss"]  # the seed matters


@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_target_network_update(tau):
    agent = DQN(**SMALL, tau=tau, seed=0)
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in agent.q_net_target.parameters()]
    agent._update_target()
    for old, new, online in zip(
        before, agent.q_net_target.parameters(), agent.q_net.parameters(), strict=True
    ):
        assert torch.allclose(new, old + tau * (online - old))


def test_continuous_action_space_is_refused():
    with pytest.raises(
        EnvError, match="DQN needs a Discrete action space, but Pendulum-v1 has Box"
    ):
        DQN(env="Pendulum-v1")


def test_buffer_that_cannot_fit_is_refused_before_training():
    with pytest.raises(BufferTooLargeError, match="lower buffer_size"):
        DQN(env="CartPole-v1", buffer_size=10**13)


def test_loading_a_pickle_fails_without_running_it(tmp_path):
    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    bad = tmp_path / "agent.safetensors"
    bad.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(AgentFileError, match="not a readable rlkit file"):
        agents.load(bad)
    torch_file = tmp_path / "agent.pt"
    torch.save({"x": Exploit()}, torch_file)
    with pytest.raises(AgentFileError, match=r"a zip archive \(Stable-Baselines3's model.save"):
        agents.load(torch_file)
    # A Stable-Baselines3 model file: a zip of its pickled parts (policy.pth, data, ...).
    sb3_file = tmp_path / "ppo_cartpole.zip"
    with zipfile.ZipFile(sb3_file, "w") as archive:
        archive.writestr("policy.pth", pickle.dumps(Exploit()))
        archive.writestr("data", "{}")
    with pytest.raises(AgentFileError) as raised:
        agents.load(sb3_file)
    assert str(raised.value) == (
        f"{sb3_file} is a zip archive (Stable-Baselines3's model.save and torch.save write "
        "those); rlkit reads its own safetensors agent files and never unpickles, which "
        "loading one would need"
    )
    assert not sentinel.exists()


def test_a_checkpoint_file_given_as_an_agent_names_its_run_folder(tmp_path):
    run = tmp_path / "run"
    DQN(**SMALL, seed=0).learn(300, run_dir=run, checkpoint_interval=150)
    newest = sorted((run / "checkpoints").glob("*.safetensors"))[-1]
    with pytest.raises(AgentFileError) as raised:
        agents.load(newest)
    assert str(raised.value) == (
        f"{newest} is a training checkpoint, not a saved agent: load its run folder, "
        f"agents.from_checkpoint({str(run)!r}) (or `rlkit eval {run}`: the newer of its "
        "agent.safetensors and its newest good checkpoint)"
    )
    assert agents.from_checkpoint(run).global_step == 300  # what it says works
    copied = tmp_path / "step.safetensors"  # out of its run folder: no folder to name
    copied.write_bytes(newest.read_bytes())
    with pytest.raises(AgentFileError, match="load the run folder it came from with agents"):
        agents.load(copied)


def test_truncated_file_is_a_clear_error(tmp_path):
    agent = DQN(**SMALL, seed=0)
    path = agent.save(tmp_path / "agent.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AgentFileError):
        agents.load(path)
    with pytest.raises(AgentFileError, match="no such file"):
        agents.load(tmp_path / "missing.safetensors")


def test_epsilon_greedy_explores_uniformly():
    agent = DQN(**SMALL, seed=0)
    obs = torch.zeros(40_000, 4)
    greedy_action = int(agent.act(np.zeros(4, dtype=np.float32)))
    assert np.all(agent._epsilon_greedy(obs, 0.0) == greedy_action)
    counts = np.bincount(agent._epsilon_greedy(obs, 1.0), minlength=2)
    assert abs(counts[0] - 20_000) < 5 * 100  # binomial sd = 100
    # epsilon 0.5: half the actions are random, so a quarter are the non-greedy action.
    other = np.mean(agent._epsilon_greedy(obs, 0.5) != greedy_action)
    assert abs(other - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 40_000)


def test_n_step_agent_stores_discounted_returns():
    agent = DQN(**{**SMALL, "learning_starts": 10**6}, n_steps=3, n_envs=2, gamma=0.9, seed=0)
    agent.learn(600)
    n = len(agent.buffer)
    discounts = agent.buffer.discounts[:n].cpu()  # (on the training device)
    rewards = agent.buffer.rewards[:n].cpu()
    allowed = torch.tensor([0.9, 0.81, 0.729])
    assert torch.all((discounts[:, None] - allowed).abs().min(dim=1).values < 1e-6)
    # CartPole pays 1 per step: a k-step return is 1 + 0.9 + ... + 0.9^(k-1) = (1 - 0.9^k) / 0.1.
    assert torch.allclose(rewards, (1 - discounts) / 0.1, atol=1e-5)
    # Full windows are the rule; shorter ones only come from episode ends.
    assert (discounts - 0.729).abs().lt(1e-6).float().mean() > 0.7


def test_agents_use_rlkit_optimizers_by_default_and_torch_on_request():
    import rlkit.optim as ro

    assert type(DQN(**SMALL).optimizer) is ro.Adam
    agent = DQN(**SMALL, optimizer={"name": "torch.adam", "lr": 1e-3})
    assert type(agent.optimizer) is torch.optim.Adam
    agent = DQN(**SMALL, optimizer={"name": "rmsprop", "lr": 1e-3, "centered": True})
    assert type(agent.optimizer) is ro.RMSprop and agent.optimizer.defaults["centered"]


def test_rlkit_and_torch_adam_train_dqn_identically():
    # rlkit's Adam follows torch's to the bit on CPU (by default its fused kernel, torch's fused
    # Adam; with fused=False the written-out update, torch's single-tensor Adam), so whole
    # training runs agree: a strong end-to-end check of the optimizer inside the agent.
    pairs = (
        ({"name": "adam"}, {"name": "torch.adam", "fused": True}),
        ({"name": "adam", "fused": False}, {"name": "torch.adam", "foreach": False}),
    )
    for ours, theirs in pairs:
        runs = []
        for options in (ours, theirs):
            agent = DQN(**SMALL, seed=3, optimizer={**options, "lr": 1e-3})
            agent.learn(1_500)
            runs.append(agent.q_net.state_dict())
        assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]), ours


@pytest.mark.parametrize("fast_mlp", [True, False])
def test_gradient_clipping_matches_torch(fast_mlp):
    # The update reads the gradient norm once and scales by max_norm / (norm + 1e-6) only
    # where that is below 1: the same gradients as torch.nn.utils.clip_grad_norm_.
    agent = DQN(**SMALL, max_grad_norm=0.5, fast_mlp=fast_mlp, seed=4)
    assert (agent._fast is not None) == fast_mlp
    agent.learn(600)  # fills the buffer past learning_starts
    batch = agent.buffer.sample(32, agent.sample_generator)
    target = batch.rewards + 5.0  # far from Q: a large gradient
    _, _, norm = agent._td_gradients(batch.obs, batch.actions, target, None)
    params = list(agent.q_net.parameters())
    reference = [p.grad.clone().requires_grad_() for p in params]
    for r, p in zip(reference, params, strict=True):
        r.grad = p.grad.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(reference, 0.5)
    assert float(norm) == pytest.approx(float(expected_norm), rel=1e-6) and float(norm) > 0.5
    agent._clip_gradients(float(norm))
    for p, r in zip(params, reference, strict=True):
        assert torch.allclose(p.grad, r.grad, rtol=1e-6, atol=1e-9)
    # Below the threshold the gradients are left exactly as they are.
    before = [p.grad.clone() for p in params]
    agent._clip_gradients(0.1)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before, strict=True))


BURSTS = dict(SMALL, train_freq=64, gradient_steps=16, target_update_interval=10)


@pytest.mark.parametrize("double_q", [False, True])
def test_a_burst_drawn_ahead_is_the_draws_and_targets_of_one_step_at_a_time(double_q):
    """DQN._draw_ahead samples a burst's batches in one call and values them in one pass of
    the target network: the same rows as one draw per step (the generator's stream), and the
    same targets (to rounding: a product over more rows may round differently on some CPUs).
    Double DQN's targets need the online net of each step, so they are left to the step."""
    agent = DQN(**BURSTS, double_q=double_q, seed=4)
    agent.learn(600)
    state = agent.sample_generator.get_state()
    drawn = agent._draw_ahead(16)
    assert len(drawn) == 16
    agent.sample_generator.set_state(state)
    for batch, target in drawn:
        one = agent._sample(agent.config.batch_size, 0.0)
        for name in ("obs", "actions", "rewards", "next_obs", "terminated", "discounts"):
            assert torch.equal(getattr(batch, name), getattr(one, name)), name
        if double_q:
            assert target is None
        else:
            torch.testing.assert_close(target, agent._td_targets(one), rtol=1e-6, atol=1e-6)


def test_prioritized_replay_draws_each_step_after_the_last_priority_update():
    agent = DQN(**BURSTS, prioritized_replay=True, seed=4)
    agent.learn(600)
    assert agent._draw_ahead(16) == [(None, None)]


def test_a_large_burst_is_drawn_a_few_steps_at_a_time(monkeypatch):
    import agents.dqn as dqn_module

    agent = DQN(**BURSTS, seed=4)
    agent.learn(600)
    row_bytes = agent.buffer.nbytes // agent.buffer.capacity
    monkeypatch.setattr(dqn_module, "DRAW_AHEAD_BYTES", 3 * agent.config.batch_size * row_bytes)
    assert len(agent._draw_ahead(16)) == 3
    updates = agent.n_updates
    agent._train_burst(16, 0.4)  # 3 + 3 + 3 + 3 + 3 + 1 steps
    assert agent.n_updates == updates + 16


def test_a_rollback_inside_a_burst_values_the_rest_with_the_restored_target_network():
    """The guard's rollback restores the target network too; the targets drawn ahead with the
    diverged one are dropped and each later step of the burst values its batch anew."""
    from tests.test_divergence import ABSURD

    agent = DQN(
        **{**ABSURD, "train_freq": 64, "gradient_steps": 16},
        divergence={"lr_factor": 0.1, "max_rollbacks": 8, "snapshot_interval": 50},
    )
    rows_valued = []
    td_targets = agent._td_targets

    def spy(batch):
        rows_valued.append(len(batch.rewards))
        return td_targets(batch)

    agent._td_targets = spy
    agent.learn(3000)
    assert agent.guard.rollbacks >= 1
    assert agent.config.batch_size in rows_valued  # steps that valued their own batch
    assert 16 * agent.config.batch_size in rows_valued  # bursts valued in one pass
    assert all(bool(torch.isfinite(p).all()) for p in agent.q_net.parameters())
