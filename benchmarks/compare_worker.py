"""One training run of rlkit or Stable-Baselines3, timed, in its own process; prints one JSON
line. Used by vs_sb3.py and time_to_solve.py, which alternate rlkit and SB3 runs side by side.

    python benchmarks/compare_worker.py {rlkit,sb3} {dqn,ppo,a2c,sac,td3} SEED [--config C] \
        [--check-every N]

DQN, PPO and A2C train on CartPole-v1, SAC and TD3 on Pendulum-v1, each at RL-Zoo's
hyperparameters (A2C's with the linear learning-rate decay of configs/a2c_cartpole.yaml on both
sides); dqn_minatar and ppo_minatar on MinAtar/Breakout-v1 with configs/dqn_minatar_breakout.yaml
and ppo_minatar_breakout.yaml, SB3 given MinAtar's network as a features extractor; dqn_atari
and ppo_atari on ALE/Pong-v5 at the Zoo's Atari hyperparameters (configs/dqn_atari.yaml and
ppo_atari.yaml; SB3's AtariWrapper and a 4-frame stack), final evaluations over 5 whole games.
rlkit's side chooses torch's thread count and matmul precision as `rlkit train` does where the
config leaves them out (rlkit.agent.calibration). Timing covers building the agent and
training (not imports, not evaluation, not that choice). With
--check-every, training pauses every N env steps for a greedy evaluation over 20 episodes; the
pause is excluded from the clock, and the first step at which the mean reaches the solve
threshold (475 on CartPole, -200 on Pendulum) is reported with the training time it took to
get there (checks stop after that: only the first counts).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


ENV_IDS = {
    "dqn": "CartPole-v1", "ppo": "CartPole-v1", "a2c": "CartPole-v1", "sac": "Pendulum-v1",
    "td3": "Pendulum-v1", "dqn_minatar": "MinAtar/Breakout-v1",
    "ppo_minatar": "MinAtar/Breakout-v1", "dqn_atari": "ALE/Pong-v5", "ppo_atari": "ALE/Pong-v5",
}  # fmt: skip
SOLVED = {
    "CartPole-v1": 475.0, "Pendulum-v1": -200.0, "MinAtar/Breakout-v1": 10.0, "ALE/Pong-v5": 18.0,
}  # fmt: skip
EVAL_EPISODES = 20
ATARI = ("dqn_atari", "ppo_atari")
EVAL_GAMES = 5  # whole Atari games at the end (the configs' eval_episodes): a Pong game is
# thousands of steps


def eval_episodes(env_id: str) -> int:
    return EVAL_GAMES if env_id.startswith("ALE/") else EVAL_EPISODES


ZOO_CONFIGS = {
    "dqn": "configs/dqn_cartpole_zoo.yaml",
    "ppo": "configs/ppo_cartpole_zoo.yaml",
    "sac": "configs/sac_pendulum.yaml",  # the Zoo's Pendulum-v1 SAC
    "td3": "configs/td3_pendulum.yaml",  # the Zoo's Pendulum-v1 TD3
    "a2c": "configs/a2c_cartpole.yaml",  # the Zoo's CartPole-v1 A2C, lr decayed linearly
    "dqn_minatar": "configs/dqn_minatar_breakout.yaml",  # the MinAtar paper's DQN
    "ppo_minatar": "configs/ppo_minatar_breakout.yaml",  # CleanRL's Atari PPO, MinAtar's net
    "dqn_atari": "configs/dqn_atari.yaml",  # the Zoo's Atari DQN
    "ppo_atari": "configs/ppo_atari.yaml",  # the Zoo's Atari PPO
}
TOTAL_STEPS = {
    "dqn": 50_000, "ppo": 100_000, "a2c": 200_000, "sac": 20_000, "td3": 20_000,
    "dqn_minatar": 100_000, "ppo_minatar": 100_000, "dqn_atari": 200_000, "ppo_atari": 200_000,
}  # fmt: skip
# Runs shorter than their config's total_steps (the MinAtar configs are 1,000,000-step runs,
# the Atari ones 10,000,000; 200,000 steps of DQN are 100,000 past its learning_starts).
SHORTENED = ("dqn_minatar", "ppo_minatar", *ATARI)


class Clock:
    """Training wall time with evaluation pauses left out; records when the run first solves."""

    def __init__(self, seed: int, env_id: str) -> None:
        self.seed, self.env_id = seed, env_id
        self.start = time.perf_counter()
        self.paused = 0.0
        self.solved_at: tuple[int, float] | None = None  # (env step, training seconds)
        self.checks: list[tuple[int, float]] = []

    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def check(self, step: int, policy) -> None:
        from rlkit.agent.evaluation import evaluate

        if self.solved_at is not None:
            return  # only the first solve is measured; later checks would only cost time
        elapsed = self.training_seconds()
        pause_start = time.perf_counter()
        seed = 10_000 + self.seed
        episodes = eval_episodes(self.env_id)
        mean = evaluate(policy, self.env_id, episodes, seed, keep_images=True).mean_return
        self.checks.append((step, mean))
        if mean >= SOLVED[self.env_id] and self.solved_at is None:
            self.solved_at = (step, elapsed)
        self.paused += time.perf_counter() - pause_start


def run_rlkit(
    algo: str, seed: int, config: str, check_every: int, overrides: list[str] = ()
) -> dict:

    import agents
    from rlkit.agent.evaluation import evaluate
    from rlkit.base.threads import limit_threads
    from rlkit.cli.train import measured_settings
    from rlkit.experiments.run_config import load_run_config, read_run_settings

    # The worker times training and does its own checks: no periodic evaluation inside.
    overrides = ["eval_interval=0", *overrides]
    if algo in SHORTENED:
        overrides.append(f"total_steps={TOTAL_STEPS[algo]}")
    run, agent_config = load_run_config(config, overrides, seed=seed, device="cpu")
    # What `rlkit train` measures where the config leaves threads and precision out (cached
    # after the first run on a machine; outside the clock).
    agent_cls = agents.agent_class(run.agent)
    given = read_run_settings(config, overrides)[1]
    run, agent_config = measured_settings(
        agent_cls, run, agent_config, precision_given="matmul_precision" in given
    )
    limit_threads(run.torch_threads)
    clock = Clock(seed, ENV_IDS[algo])
    agent = agent_cls(config=agent_config)

    def policy(obs):
        return agent.act(obs, deterministic=True)

    def callback(a) -> None:
        clock.check(a.global_step, policy)

    agent.learn(
        run.total_steps,
        callback=callback if check_every else None,
        callback_interval=check_every or 1,
    )
    train_s = clock.training_seconds()
    episodes = eval_episodes(clock.env_id)
    final = evaluate(policy, clock.env_id, episodes, 20_000 + seed, keep_images=True).mean_return
    threads = f"{run.torch_threads} ({agent_config.matmul_precision})"
    return _result(clock, train_s, agent.global_step, final, threads)


def run_sb3(algo: str, seed: int, check_every: int, save_dir: str | None = None) -> dict:
    """With save_dir (a whole process timed from outside, as an SB3 user runs one): the model
    saved there and evaluated by SB3's own evaluate_policy, and nothing of rlkit imported."""
    import torch
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    env_id = ENV_IDS[algo]
    clock = Clock(seed, env_id)
    if algo in SHORTENED:
        import envs  # noqa: F401  (registers MinAtar/<Game>-v1: the env rlkit trains on)
    if algo == "dqn_atari":  # rl-zoo3 dqn.yml, atari (configs/dqn_atari.yaml)
        model = DQN(
            "CnnPolicy", atari_env(env_id, 1, seed), buffer_size=100_000, learning_rate=1e-4,
            batch_size=32, learning_starts=100_000, target_update_interval=1000, train_freq=4,
            gradient_steps=1, exploration_fraction=0.1, exploration_final_eps=0.01,
            optimize_memory_usage=False, seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "ppo_atari":  # rl-zoo3 ppo.yml, atari (configs/ppo_atari.yaml)
        model = PPO(
            "CnnPolicy", atari_env(env_id, 8, seed), n_steps=128, n_epochs=4, batch_size=256,
            learning_rate=lambda progress: progress * 2.5e-4,
            clip_range=lambda progress: progress * 0.1, vf_coef=0.5, ent_coef=0.01,
            seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "dqn_minatar":  # configs/dqn_minatar_breakout.yaml
        model = DQN(
            "MlpPolicy", env_id, learning_rate=2.5e-4, buffer_size=100_000, learning_starts=5000,
            batch_size=32, tau=1.0, gamma=0.99, train_freq=1, gradient_steps=1,
            target_update_interval=1000, exploration_fraction=0.1, exploration_initial_eps=1.0,
            exploration_final_eps=0.1, max_grad_norm=1e10,  # (rlkit's config: no clipping)
            policy_kwargs={
                "features_extractor_class": minatar_extractor(), "net_arch": [],
                "optimizer_class": torch.optim.RMSprop,
                "optimizer_kwargs": {"alpha": 0.95, "eps": 0.01, "centered": True},
            },
            seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "ppo_minatar":  # configs/ppo_minatar_breakout.yaml
        # vf_coef 0.25 on SB3's E[(V - R)^2] is rlkit's 0.5 on 0.5 E[(V - R)^2].
        model = PPO(
            "MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), n_steps=128, batch_size=256,
            n_epochs=4, gamma=0.99, gae_lambda=0.95, clip_range=0.2, ent_coef=0.05,
            vf_coef=0.25, max_grad_norm=0.5, learning_rate=lambda progress: progress * 1e-3,
            policy_kwargs={"features_extractor_class": minatar_extractor(), "net_arch": []},
            seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "sac":  # rl-zoo3 sac.yml, Pendulum-v1: SB3's defaults with learning rate 1e-3
        model = SAC("MlpPolicy", env_id, learning_rate=1e-3, seed=seed, device="cpu")
    elif algo == "td3":  # rl-zoo3 td3.yml, Pendulum-v1
        model = TD3(
            "MlpPolicy", env_id, gamma=0.98, buffer_size=200_000, learning_starts=10_000,
            action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)), learning_rate=1e-3,
            policy_kwargs={"net_arch": [400, 300]}, seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "a2c":  # rl-zoo3 a2c.yml, CartPole-v1 (8 envs), with rlkit's lr decay
        # vf_coef 0.25 on SB3's E[(V - R)^2] is rlkit's 0.5 on 0.5 E[(V - R)^2].
        model = A2C(
            "MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), n_steps=5, gamma=0.99,
            gae_lambda=1.0, ent_coef=0.0, vf_coef=0.25, max_grad_norm=0.5,
            learning_rate=lambda progress: progress * 7e-4, seed=seed, device="cpu",
        )  # fmt: skip
    elif algo == "dqn":  # rl-zoo3 dqn.yml, CartPole-v1
        model = DQN(
            "MlpPolicy", env_id, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
            learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
            gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
            policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu",
        )  # fmt: skip
    else:  # rl-zoo3 ppo.yml, CartPole-v1 (lin_1e-3 and lin_0.2 schedules)
        model = PPO(
            "MlpPolicy", make_vec_env(env_id, n_envs=8, seed=seed), n_steps=32, batch_size=256,
            gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
            learning_rate=lambda progress: progress * 1e-3,
            clip_range=lambda progress: progress * 0.2, seed=seed, device="cpu",
        )  # fmt: skip

    def policy(obs):
        return model.predict(obs, deterministic=True)[0]

    class Check(BaseCallback):
        """DQN: after the env step that crosses a multiple of check_every. PPO: at the start of
        the rollout after such a step, that is after the update on the data up to it, where
        rlkit's callback checks too (a check inside a rollout would see a policy one update
        behind)."""

        checked = 0

        def _due(self) -> bool:
            due = self.num_timesteps // check_every > self.checked
            self.checked = self.num_timesteps // check_every
            return due

        def _on_step(self) -> bool:
            if algo in ("dqn", "sac", "td3", "dqn_minatar") and self._due():
                clock.check(self.num_timesteps, policy)
            return True

        def _on_rollout_start(self) -> None:
            if algo in ("ppo", "a2c", "ppo_minatar") and self._due():
                clock.check(self.num_timesteps, policy)

    model.learn(TOTAL_STEPS[algo], callback=Check() if check_every else None)
    train_s = clock.training_seconds()
    if save_dir is not None:
        from stable_baselines3.common.evaluation import evaluate_policy

        model.save(Path(save_dir) / "model.zip")
        if algo in ATARI:  # whole games: evaluate_policy reads the Monitor under AtariWrapper
            eval_env = atari_env(env_id, 1, 20_000 + seed)
        else:
            eval_env = make_vec_env(env_id, n_envs=1, seed=20_000 + seed)
        final, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes(env_id))
        return _result(clock, train_s, model.num_timesteps, float(final), torch.get_num_threads())
    from rlkit.agent.evaluation import evaluate

    final = evaluate(policy, env_id, eval_episodes(env_id), 20_000 + seed, keep_images=True)
    final = final.mean_return
    return _result(clock, train_s, model.num_timesteps, final, torch.get_num_threads())


def atari_env(env_id: str, n_envs: int, seed: int):
    """SB3's Atari set-up as the Zoo makes it: AtariWrapper on each game (ale-py's v5 ids with
    frame skipping and sticky actions left to the wrapper, as rlkit's atari block does), then
    a 4-frame VecFrameStack."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env_kwargs = {"frameskip": 1, "repeat_action_probability": 0.0}
    env = make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    return VecFrameStack(env, n_stack=4)


def minatar_extractor():
    """MinAtar's network as an SB3 features extractor, the same as rlkit's minatar_cnn: a
    16-filter 3x3 convolution on the (10, 10, channels) grid, then 128 units, both ReLU."""
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MinAtarCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim: int = 128) -> None:
            super().__init__(observation_space, features_dim)
            height, width, channels = observation_space.shape
            self.conv = torch.nn.Sequential(
                torch.nn.Conv2d(channels, 16, 3, 1), torch.nn.ReLU(), torch.nn.Flatten()
            )
            flat = 16 * (height - 2) * (width - 2)
            self.linear = torch.nn.Sequential(torch.nn.Linear(flat, features_dim), torch.nn.ReLU())

        def forward(self, obs):
            return self.linear(self.conv(obs.float().permute(0, 3, 1, 2)))

    return MinAtarCNN


def _result(clock: Clock, train_s: float, steps: int, final: float, threads: int | str) -> dict:
    return {
        "env_id": clock.env_id,
        "train_s": train_s,
        "steps": steps,
        "final_eval": final,
        "solved_step": clock.solved_at[0] if clock.solved_at else None,
        "solved_s": clock.solved_at[1] if clock.solved_at else None,
        "checks": clock.checks,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=["rlkit", "sb3"])
    parser.add_argument("algo", choices=sorted(ENV_IDS))
    parser.add_argument("seed", type=int)
    parser.add_argument("--config", help="rlkit config (default: the zoo config of the algo)")
    parser.add_argument("--check-every", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--save-dir", help="sb3: save the model here, evaluate with SB3's own")
    args = parser.parse_args()
    if args.library == "rlkit":
        config = args.config or ZOO_CONFIGS[args.algo]
        result = run_rlkit(args.algo, args.seed, config, args.check_every, args.overrides)
    else:
        result = run_sb3(args.algo, args.seed, args.check_every, args.save_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
