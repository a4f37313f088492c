"""Where an Atari training step goes: env steps per second of the env alone, of acting (the
env and the policy's forward), of the update alone, and of the whole training loop, for
configs/ppo_atari.yaml and dqn_atari.yaml on one game. The whole loop can be no faster than
the slowest of its parts; this shows how far from that limit it runs.

    .venv/bin/python benchmarks/atari_loop.py [--game ALE/Pong-v5] [--threads 1]

- env alone: the agent's own training envs (the atari block's preprocessing), random actions.
- acting: the same envs, each action the agent's own (PPO: sampled from the policy, 8 envs a
  forward; DQN: greedy, one env a forward).
- update alone: PPO's whole update on one filled rollout (4 epochs of 4 minibatches of 256),
  as env steps of rollout per second; DQN's gradient step on a batch of 32 from a filled
  replay, times train_freq (4 env steps per gradient step).
- whole loop: `learn` past the warm-up (DQN: past learning_starts, epsilon at its end value).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import agents  # noqa: E402
from rlkit.base.device import describe_cpu  # noqa: E402


def make_agent(name: str, game: str, seed: int = 1):
    config = yaml.safe_load((ROOT / f"configs/{name}_atari.yaml").read_text())
    for key in ("agent", "total_steps", "checkpoint_interval"):
        config.pop(key, None)
    config.update(env=game, seed=seed, eval_interval=0)
    if name == "dqn":  # a replay just big enough, filled sooner; epsilon at its end value
        config.update(buffer_size=5_000, learning_starts=2_000, exploration_fraction=1e-6)
    return agents.agent_class(name)(**config)


def env_alone(agent, steps: int) -> float:
    env = agent.env
    rng = np.random.default_rng(0)
    n_actions = int(env.single_action_space.n)
    env.reset(seed=123)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, n_actions, size=env.num_envs))
    return steps * env.num_envs / (time.perf_counter() - start)


def acting(agent, steps: int) -> float:
    env = agent.env
    obs, _ = env.reset(seed=456)
    deterministic = agent.name == "dqn"
    start = time.perf_counter()
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs, deterministic=deterministic))
    return steps * env.num_envs / (time.perf_counter() - start)


def update_alone(agent, repeats: int) -> float:
    cfg = agent.config
    if agent.name == "ppo":
        start = time.perf_counter()
        for _ in range(repeats):
            agent._update(cfg.clip_range)
        return repeats * cfg.n_steps * cfg.n_envs / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(repeats):
        agent._update(per_beta=1.0)
    return repeats * cfg.train_freq / (time.perf_counter() - start)


def whole_loop(agent, steps: int) -> float:
    start = time.perf_counter()
    agent.learn(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="ALE/Pong-v5")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the updates")
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"])
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # (as the run loop does)
    print(f"{describe_cpu()}; torch threads {args.threads} for the updates, 1 for acting")
    print("\n| agent | env alone | acting | update alone | whole loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.algos:
        agent = make_agent(name, args.game)
        agent.update_threads = args.threads
        warm = agent.config.learning_starts + 400 if name == "dqn" else 2 * 1024
        agent.learn(warm)  # filled rollout or replay, optimizer state, epsilon at its end
        torch.set_num_threads(1)
        env_rate = env_alone(agent, 300 if name == "ppo" else 1_000)
        act_rate = acting(agent, 150 if name == "ppo" else 600)
        torch.set_num_threads(args.threads)
        update_rate = update_alone(agent, 3 if name == "ppo" else 100)
        torch.set_num_threads(args.threads)  # (learn: the updates on these, acting on one)
        loop_rate = whole_loop(agent, 4 * 1024 if name == "ppo" else 2_000)
        print(
            f"| {name.upper()} | {env_rate:,.0f} | {act_rate:,.0f} | {update_rate:,.0f} "
            f"| {loop_rate:,.0f} |",
            flush=True,
        )
        agent.close()
    print("\nenv steps per second (frameskip 4: 4 game frames each)")


if __name__ == "__main__":
    main()
