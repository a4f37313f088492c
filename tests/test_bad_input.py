"""Bad input is refused at construction (or at the start of `learn`), before any environment
step, with an explicit exception type and a message that says what to fix. The CLI turns each
of these into one line and exit code 2 (tests/test_cli.py)."""

import math

import gymnasium as gym
import numpy as np
import pytest

import agents
import envs
from rlkit.base.errors import (
    AgentFileError,
    BufferTooLargeError,
    ConfigError,
    ConfigTypeError,
    DeviceError,
    EnvError,
)


class TextObservations(gym.Env):
    """Observations of no fixed size of numbers: text."""

    observation_space = gym.spaces.Text(8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "a", {}

    def step(self, action):
        return "a", 0.0, True, False, {}


if "rlkit_test/TextObservations-v0" not in gym.registry:
    gym.register("rlkit_test/TextObservations-v0", entry_point=TextObservations)


def build(name: str, **config):
    return lambda: agents.agent_class(name)(**config)


def learn(**kwargs):
    def run():
        agent = agents.DQN(env="CartPole-v1", learning_starts=10, network={"hidden_sizes": [8]})
        agent.learn(**kwargs)

    return run


ADAM = {"name": "adam", "lr": 1e-3}

CASES = [
    # (id, action, exception type, message fragment)
    ("continuous actions", build("dqn", env="Pendulum-v1"), EnvError, "needs a Discrete action"),
    ("discrete actions td3", build("td3", env="CartPole-v1"), EnvError, "continuous action space"),
    ("text observations", build("dqn", env="rlkit_test/TextObservations-v0"), EnvError,
     "observations it can flatten into a vector (Box, Discrete, MultiDiscrete, MultiBinary, "
     "Tuple or Dict of them), but rlkit_test/TextObservations-v0 has Text("),
    ("lr zero", build("dqn", optimizer={**ADAM, "lr": 0}), ConfigError, "optimizer.lr must be"),
    ("lr negative", build("a2c", optimizer={**ADAM, "lr": -1e-3}), ConfigError, "got -0.001"),
    ("lr nan", build("ppo", optimizer={**ADAM, "lr": math.nan}), ConfigError,
     "optimizer.lr: expected a finite number, got nan"),
    # No setting takes inf or nan; one that is not range-checked would only fail later (SAC's
    # target entropy at -inf: training diverged, and its checkpoint could not be written).
    ("target entropy -inf", build("sac", env="Pendulum-v1", target_entropy=-math.inf),
     ConfigTypeError, "target_entropy: expected a finite number, got -inf"),
    ("1e999 (YAML reads a string)", build("td3", env="Pendulum-v1", target_policy_noise="1e999"),
     ConfigTypeError, "target_policy_noise: expected a finite number, got inf"),
    ("ent_coef auto misspelled", build("sac", env="Pendulum-v1", ent_coef="automatic"),
     ConfigError, "or auto_<alpha to start from>, got 'automatic'"),
    ("ent_coef auto_ against initial_ent_coef",
     build("sac", env="Pendulum-v1", ent_coef="auto_0.1", initial_ent_coef=0.5),
     ConfigError, "starts alpha at 0.1 but initial_ent_coef says 0.5"),
    ("train_freq unit misspelled", build("dqn", train_freq=[1, "episodes"]), ConfigError,
     "expected an integer (env steps) or [n, step] / [n, episode], got [1, 'episodes']"),
    ("train_freq tuple against train_freq_unit",
     build("sac", env="Pendulum-v1", train_freq=[1, "episode"], train_freq_unit="step"),
     ConfigError, "is in episodes but train_freq_unit says step"),
    ("gradient_steps zero", build("td3", env="Pendulum-v1", gradient_steps=0), ConfigError,
     "gradient_steps must be >= 1, or -1"),
    ("train_freq in episodes, 2 env copies",
     build("dqn", train_freq=[1, "episode"], n_envs=2), ConfigError, "needs n_envs: 1"),
    ("train_freq in episodes, linear lr",
     build("dqn", train_freq=[1, "episode"], lr_schedule={"name": "linear"}), ConfigError,
     "does not fix ahead"),
    ("lr inf", build("reinforce", optimizer={**ADAM, "lr": math.inf}), ConfigError, "got inf"),
    ("gamma above 1", build("dqn", gamma=1.5), ConfigError, "gamma must be in [0, 1]"),
    ("gamma negative", build("ppo", gamma=-0.1), ConfigError, "gamma must be in [0, 1]"),
    ("batch > buffer", build("dqn", batch_size=128, buffer_size=64), ConfigError, "larger than"),
    ("misspelled key", build("dqn", gamme=0.9), ConfigError, "did you mean 'gamma'"),
    # Stable-Baselines3's names get rlkit's, not a close match that means something else.
    ("SB3's learning_rate", build("dqn", learning_rate=1e-3), ConfigError,
     "'learning_rate' (Stable-Baselines3's name); rlkit's: optimizer.lr"),
    ("SB3's learning_rate in optimizer", build("dqn", optimizer={"learning_rate": 1e-3}),
     ConfigError, "'learning_rate' in optimizer (Stable-Baselines3's name); rlkit's: lr"),
    ("SB3's net_arch", build("ppo", net_arch=[64, 64]), ConfigError,
     "rlkit's: network.hidden_sizes"),
    ("SB3's normalize", build("ppo", env="Pendulum-v1", normalize=True), ConfigError,
     "rlkit's: normalize_obs and normalize_reward"),
    ("SB3's normalize where rlkit has none", build("sac", env="Pendulum-v1", normalize=True),
     ConfigError, "unknown config key 'normalize' (an RL Zoo key rlkit does not have): "
     "observation and reward normalization is built for REINFORCE, A2C and PPO"),
    ("the Zoo's frame_stack", build("dqn", frame_stack=4), ConfigError,
     "'frame_stack' (an RL Zoo key rlkit does not have): frame stacking is not built"),
    ("the Zoo's env_wrapper", build("ppo", env_wrapper=["gymnasium.wrappers.TimeAwareObservation"]),
     ConfigError, "wrappers are not read from a config: register the wrapped env"),
    ("env_kwargs not a mapping", build("ppo", env_kwargs=[1]), ConfigTypeError,
     "env_kwargs: expected a mapping, got list [1]"),
    ("time limit zero", build("ppo", env_kwargs={"max_episode_steps": 0}), ConfigError,
     "env_kwargs.max_episode_steps must be an integer >= 1 or null, got 0"),
    ("env_kwargs the env does not take", build("ppo", env_kwargs={"gravity": 3}), EnvError,
     "unexpected keyword argument 'gravity'"),
    ("SB3's use_sde", build("sac", env="Pendulum-v1", use_sde=True), ConfigError,
     "'use_sde' (a Stable-Baselines3 setting rlkit does not have): gSDE exploration is not built"),
    ("SB3's target_update_interval on SAC", build("sac", env="Pendulum-v1",
     target_update_interval=1), ConfigError, "SAC and TD3 move their targets at every update"),
    ("misspelled nested key", build("ppo", network={"hidden_size": [4]}), ConfigError,
     "did you mean 'hidden_sizes'"),
    ("misspelled optimizer option", build("dqn", optimizer={**ADAM, "options": {"bettas": [0.9]}}),
     ConfigError, "did you mean 'betas'"),
    ("string for int", build("dqn", batch_size="big"), ConfigTypeError, "expected an integer"),
    ("float for int", build("ppo", n_envs=2.5), ConfigTypeError, "got float 2.5"),
    ("string for bool", build("dqn", double_q="yes"), ConfigTypeError, "expected true or false"),
    ("unknown env version", build("dqn", env="CartPole-v9"), EnvError, "provides versioned"),
    ("misspelled env", build("dqn", env="CartPol-v1"), EnvError, "Did you mean: `CartPole`"),
    ("empty env id", build("a2c", env=""), EnvError, "gymnasium environment id"),
    ("misspelled loss", build("dqn", loss="hubber"), ConfigError, "did you mean 'huber'"),
    ("unknown optimizer", build("dqn", optimizer={"name": "adamm"}), ConfigError,
     "did you mean 'adam'"),
    ("unknown activation", build("ppo", network={"activation": "relux"}), ConfigError,
     "did you mean 'relu'"),
    ("unknown schedule", build("dqn", lr_schedule={"name": "cosine"}), ConfigError,
     "constant, linear, step"),
    ("bad optimizer beta", build("dqn", optimizer={**ADAM, "options": {"betas": [1.5, 0.9]}}),
     ConfigError, "Invalid beta parameter"),
    ("unknown device", build("dqn", device="tpu"), DeviceError, "unknown device 'tpu'"),
    ("no copies", build("dqn", n_envs=0), ConfigError, "n_envs must be >= 1"),
    ("negative seed", build("dqn", seed=-1), ConfigError, "seed must be >= 0"),
    ("ppo minibatch", build("ppo", n_steps=10, n_envs=3, batch_size=64), ConfigError,
     "must be a multiple of batch_size"),
    ("clip range", build("ppo", clip_range=1.5), ConfigError, "clip_range must be in (0, 1)"),
    ("epsilon above 1", build("dqn", exploration_final_eps=1.2), ConfigError, "[0, 1]"),
    ("tau zero", build("dqn", tau=0), ConfigError, "tau must be in (0, 1]"),
    ("no episodes per batch", build("reinforce", batch_episodes=0), ConfigError, ">= 1"),
    ("guard lr factor", build("dqn", divergence={"lr_factor": 2}), ConfigError,
     "divergence.lr_factor"),
    ("guard rollbacks", build("ppo", divergence={"max_rollbacks": -1}), ConfigError,
     "max_rollbacks must be >= 0"),
    ("buffer beyond memory", build("dqn", buffer_size=10**12), BufferTooLargeError,
     "lower buffer_size"),
    ("config of wrong type", lambda: agents.DQN(config=5), ConfigError, "must be a DQNConfig"),
    # Stable-Baselines3's ways: the policy first, an env object, learn's keyword names.
    ("sb3 policy first", lambda: agents.SAC("MlpPolicy", "Pendulum-v1"), ConfigError,
     "agents.SAC takes the env first, as agents.SAC(env='Pendulum-v1'): 'MlpPolicy' is "
     "Stable-Baselines3's policy argument"),
    ("sb3 policy and env object", lambda: agents.PPO("MlpPolicy", gym.make("Acrobot-v1")),
     ConfigError, "agents.PPO(env='Acrobot-v1')"),
    ("env object", lambda: agents.DQN(gym.make("CartPole-v1", max_episode_steps=100)),
     ConfigError, "takes an env id, not a TimeLimit object (rlkit makes its own seeded copies "
     "of the env for training and evaluation): env='CartPole-v1', env_kwargs="
     "{'max_episode_steps': 100}"),
    ("vector env object", lambda: agents.TD3(env=gym.make_vec("Pendulum-v1", 2, g=9.0)),
     ConfigError, "env='Pendulum-v1', n_envs=2, env_kwargs={'g': 9.0}"),
    ("sb3 total_timesteps", learn(total_timesteps=100), TypeError,
     "learn() has no 'total_timesteps' (Stable-Baselines3's name); rlkit's: total_steps"),
    ("unknown learn argument", learn(total_steps=100, episodes=3), TypeError,
     "unexpected keyword argument 'episodes'"),
    # (before this check, a callback that is not a function failed at its first call, or
    # never, when the run was shorter than callback_interval)
    ("callback not a function", learn(total_steps=100, callback="save"), ConfigError,
     "callback must be a function of the agent (callback(agent) -> False to stop), got str"),
    ("callback interval zero", learn(total_steps=100, callback=print, callback_interval=0),
     ConfigError, "callback_interval must be an integer >= 1, got 0"),
    ("zero steps", learn(total_steps=0), ConfigError, "total_steps must be a positive integer"),
    ("steps as string", learn(total_steps="100"), ConfigError, "got '100'"),
    ("negative checkpoint interval", learn(total_steps=100, checkpoint_interval=-5), ConfigError,
     "checkpoint_interval must be an integer >= 0"),
    ("keep no checkpoints", learn(total_steps=100, keep_checkpoints=0), ConfigError,
     "keep_checkpoints must be an integer >= 1"),
    ("resume without checkpoint", learn(resume=True), ConfigError, "nothing to resume"),
    ("missing agent file", lambda: agents.load("/nonexistent/agent.safetensors"), AgentFileError,
     "no such file"),
    ("resume from an empty folder", lambda: agents.from_checkpoint("/nonexistent"), AgentFileError,
     "no usable checkpoint"),
    ("negative env copies", lambda: envs.make("CartPole-v1", n_envs=-1), EnvError,
     "n_envs must be an integer >= 1"),
    ("wrong observation shape", lambda: agents.DQN(env="CartPole-v1").act(np.zeros(3)),
     ValueError, "does not match"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_clear_message(action, error, fragment):
    with pytest.raises(error) as raised:
        action()
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_refused_before_any_environment_step(monkeypatch):
    """Validation happens before the env moves: a bad config never costs an episode."""
    import gymnasium

    steps = []
    original = gymnasium.vector.SyncVectorEnv.step
    monkeypatch.setattr(
        gymnasium.vector.SyncVectorEnv,
        "step",
        lambda self, actions: steps.append(1) or original(self, actions),
    )
    for _, action, error, _ in CASES:
        with pytest.raises(error):
            action()
    assert steps == []
