"""Divergence guard, for real: absurd learning rates on CartPole, NaN-producing environments.
The weights never turn non-finite, rollbacks show in TensorBoard, and no checkpoint ever holds
a NaN or an inf."""

import contextlib
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents
from rlkit.agent.guard import DivergenceConfig, DivergenceError, DivergenceGuard
from rlkit.base.errors import EnvError
from rlkit.io.checkpoint import all_finite, list_checkpoints, read_checkpoint

from .helpers import read_scalars

# Plain SGD on an unclipped squared error: with a learning rate of 1e3 the Q-values blow up to
# inf within a few dozen updates.
ABSURD = dict(
    env="CartPole-v1", seed=1, device="cpu", learning_starts=200, buffer_size=5000,
    batch_size=32, train_freq=1, log_interval=50, loss="mse", max_grad_norm=None,
    network={"hidden_sizes": [32, 32]}, optimizer={"name": "sgd", "lr": 1e3},
)  # fmt: skip


def _finite_parameters(agent) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in agent.q_net.parameters())


def _assert_checkpoints_finite(run_dir) -> None:
    infos = list_checkpoints(run_dir)
    assert infos
    for info in infos:
        tensors, _ = read_checkpoint(info)
        assert all_finite(tensors.values()), info.manifest


def test_rollbacks_rescue_an_absurd_learning_rate(tmp_path):
    agent = agents.DQN(
        **ABSURD, divergence={"lr_factor": 0.1, "max_rollbacks": 8, "snapshot_interval": 50}
    )
    agent.learn(3000, run_dir=tmp_path, checkpoint_interval=500, keep_checkpoints=10)
    assert _finite_parameters(agent)
    assert agent.guard.rollbacks >= 1 and agent.guard.skipped_updates >= 5
    assert agent.optimizer.param_groups[0]["lr"] < 1e3  # rolled back to smaller steps
    scalars = read_scalars(tmp_path)
    assert max(value for _, value in scalars["guard/rollbacks"]) == agent.guard.rollbacks
    assert max(value for _, value in scalars["guard/skipped_updates"]) >= 5
    assert all(np.isfinite(value) for _, value in scalars["train/td_loss"])
    _assert_checkpoints_finite(tmp_path)


def test_persistent_divergence_stops_with_a_message_and_a_good_checkpoint(tmp_path):
    agent = agents.DQN(**{**ABSURD, "optimizer": {"name": "sgd", "lr": 1e8}})
    with pytest.raises(DivergenceError, match=r"training diverged.*3 rollbacks"):
        agent.learn(5000, run_dir=tmp_path, checkpoint_interval=10_000)
    assert _finite_parameters(agent)  # the last good state, not the diverged one
    assert agent.guard.rollbacks == 4
    _assert_checkpoints_finite(tmp_path)  # written on the way out, finite
    scalars = read_scalars(tmp_path)
    assert scalars["guard/rollbacks"][-1][1] == 4


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])  # categorical, Gaussian
def test_ppo_survives_an_absurd_learning_rate(tmp_path, env):
    agent = agents.PPO(
        env=env, seed=0, device="cpu", n_envs=4, n_steps=64, batch_size=64,
        optimizer={"name": "sgd", "lr": 1e6}, max_grad_norm=None,
        divergence={"max_rollbacks": 100, "lr_factor": 0.1},
    )  # fmt: skip
    with contextlib.suppress(DivergenceError):  # allowed: what matters is what was kept
        agent.learn(4096, run_dir=tmp_path, checkpoint_interval=1024)
    assert agent.guard.skipped_updates >= 1
    assert all(bool(torch.isfinite(p).all()) for p in agent.model.parameters())
    _assert_checkpoints_finite(tmp_path)


def test_guard_skips_then_rolls_back_then_gives_up():
    """The guard's mechanics on a one-parameter model."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    guard = DivergenceGuard(
        DivergenceConfig(rollback_after=2, lr_factor=0.5, max_rollbacks=1), {"m": model}, optimizer
    )
    good = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    nan = torch.tensor(float("nan"))
    assert guard.check(nan, torch.tensor(1.0)) is False  # skipped, not yet rolled back
    assert torch.isnan(model.weight).all()
    assert guard.check(torch.tensor(1.0), torch.tensor(float("inf"))) is False  # rolls back
    assert guard.rollbacks == 1 and optimizer.param_groups[0]["lr"] == 0.5
    assert all(torch.equal(p, g) for p, g in zip(model.parameters(), good, strict=True))
    assert guard.check(torch.tensor(0.5), torch.tensor(0.5)) is True
    guard.check(nan, nan)
    with pytest.raises(DivergenceError):
        guard.check(nan, nan)
    assert guard.skipped_updates == 4


def test_finite_weights_whose_outputs_overflow_are_rolled_back_before_acting():
    """A huge but finite weight: the update that made it was finite, but the policy's logits
    are inf and nothing can be sampled from them."""
    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    guard = DivergenceGuard(DivergenceConfig(max_rollbacks=1), {"m": model}, optimizer)
    good = model.weight.detach().clone()
    obs = torch.ones(4, 2)
    with torch.no_grad():
        model.weight.fill_(3e38)
    logits = guard.finite_outputs(lambda: model(obs))
    assert torch.isfinite(logits).all() and guard.rollbacks == 1
    assert torch.equal(model.weight, good) and optimizer.param_groups[0]["lr"] == 0.5
    with torch.no_grad():
        model.weight.fill_(3e38)
    with pytest.raises(DivergenceError):  # past max_rollbacks: one line, not a traceback
        guard.finite_outputs(lambda: (model(obs), None))


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_continuous_agents_roll_back_weights_that_would_act_nan(name):
    """Weights that an applied step left non-finite (a huge finite step overflowing) give NaN
    actions; rolled back before acting, the env never sees one (it would be blamed for the NaN
    observation it returned: an EnvError naming the env instead of the agent)."""
    agent = agents.agent_class(name)(
        env="Pendulum-v1", seed=0, device="cpu", learning_starts=50, buffer_size=1000,
        batch_size=16, network={"hidden_sizes": [16, 16]},
    )  # fmt: skip
    agent.learn(100)
    with torch.no_grad():
        next(agent.actor.parameters()).fill_(float("nan"))
    agent.learn(20)
    assert agent.guard.rollbacks == 1
    assert all(bool(torch.isfinite(p).all()) for p in agent.actor.parameters())
    assert np.isfinite(agent.evaluate(1).mean_return)


class _PoisonedEnv(gym.Env):
    """A CartPole-shaped env whose second copy returns a NaN at its 7th step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)
    instances = itertools.count()

    def __init__(self, poison: str = "reward"):
        self.index = next(self.instances) % 2
        self.poison = poison
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.zeros(4, np.float32), 1.0
        if self.index == 1 and self.t == 7:
            if self.poison == "reward":
                reward = float("nan")
            else:
                obs[2] = np.inf
        return obs, reward, False, self.t >= 20, {}


@pytest.mark.parametrize(
    ("poison", "what"), [("reward", r"reward \(nan\)"), ("obs", "observation")]
)
@pytest.mark.parametrize("agent_name", ["dqn", "ppo"])
def test_non_finite_env_output_names_the_copy_and_step(poison, what, agent_name):
    env_id = f"rlkit-test/Poisoned-{poison}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_PoisonedEnv, kwargs={"poison": poison})
    _PoisonedEnv.instances = itertools.count()
    agent = agents.agent_class(agent_name)(env=env_id, n_envs=2, device="cpu")
    with pytest.raises(EnvError, match=f"environment copy 1 returned a non-finite {what}.*step 7"):
        agent.learn(200)


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_continuous_agents_survive_an_absurd_learning_rate(tmp_path, name):
    # One optimizer covers actor, critics (and SAC's alpha): a rollback restores all of them.
    agent = agents.agent_class(name)(
        env="Pendulum-v1", seed=0, device="cpu", learning_starts=100, buffer_size=5000,
        batch_size=32, log_interval=100, network={"hidden_sizes": [32, 32]},
        optimizer={"name": "sgd", "lr": 1e6}, divergence={"max_rollbacks": 100, "lr_factor": 0.1},
    )  # fmt: skip
    with contextlib.suppress(DivergenceError):  # allowed: what matters is what was kept
        agent.learn(1500, run_dir=tmp_path, checkpoint_interval=500)
    assert agent.guard.skipped_updates >= 1
    assert all(bool(torch.isfinite(p).all()) for p in agent.critic.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in agent.actor.parameters())
    _assert_checkpoints_finite(tmp_path)
