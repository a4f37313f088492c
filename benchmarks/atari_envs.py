"""Atari preprocessing: rlkit's Python wrappers (envs.atari, what training uses) against ale-py's
C++ AtariVectorEnv and Stable-Baselines3's AtariWrapper, in env steps per second of random
play, and whether AtariVectorEnv's observations equal rlkit's frame for frame.

The issue asked for AtariVectorEnv wherever it gives the same preprocessing faster. This
prints both halves of that question: the speed of each, alternated round by round, and the
first step where the two disagree on a seeded game with the same actions (no no-ops, no sticky
actions, so both games are deterministic).

    .venv/bin/python benchmarks/atari_envs.py --games ALE/Pong-v5 ALE/Breakout-v5 --envs 1 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs
from envs.atari import AtariConfig, register
from rlkit.base.device import describe_cpu


def rlkit_env(game: str, n_envs: int, settings: AtariConfig):
    return envs.make(game, n_envs, seed=0, keep_images=True, atari=settings)


def ale_vector_env(game: str, n_envs: int, settings: AtariConfig, threads: int = 1):
    from ale_py.vector_env import AtariVectorEnv

    return AtariVectorEnv(
        game.removeprefix("ALE/").split("-")[0].lower(), n_envs, num_threads=threads,
        autoreset_mode="SameStep", repeat_action_probability=settings.sticky_actions,
        frameskip=settings.frame_skip, noop_max=settings.noop_max,
        episodic_life=settings.episodic_life, use_fire_reset=settings.fire_reset,
        reward_clipping=settings.clip_reward, img_height=settings.screen_size,
        img_width=settings.screen_size, stack_num=settings.frame_stack,
    )  # fmt: skip


def sb3_env(game: str, n_envs: int, settings: AtariConfig):
    try:
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        return None
    register(game)
    env = make_atari_env(
        game, n_envs, seed=0,
        env_kwargs={"frameskip": 1, "repeat_action_probability": settings.sticky_actions},
    )  # fmt: skip
    return VecFrameStack(env, settings.frame_stack)


def steps_per_second(env, steps: int, is_sb3: bool = False) -> float:
    rng = np.random.default_rng(0)
    n = env.num_envs
    actions = rng.integers(0, env.action_space.nvec[0] if not is_sb3 else env.action_space.n,
                           size=(steps, n))  # fmt: skip
    if is_sb3:
        env.seed(0)
        env.reset()
    else:
        env.reset(seed=0)
    start = time.perf_counter()
    for row in actions:
        env.step(row)
    return steps * n / (time.perf_counter() - start)


def first_difference(game: str, steps: int) -> str:
    """Where AtariVectorEnv's observations first differ from rlkit's, on one deterministic game
    (no no-ops, no fire reset, whole games, rewards as they are) under the same actions."""
    settings = AtariConfig(noop_max=0, fire_reset=False, episodic_life=False, clip_reward=False)
    ours, theirs = rlkit_env(game, 1, settings), ale_vector_env(game, 1, settings)
    try:
        obs_ours, _ = ours.reset(seed=0)
        obs_theirs, _ = theirs.reset(seed=0)
        rng = np.random.default_rng(1)
        for step in range(steps):
            if not np.array_equal(obs_ours, obs_theirs):
                diff = np.abs(obs_ours.astype(int) - obs_theirs.astype(int))
                return (
                    f"differ from step {step}: {int((diff > 0).sum())} pixels, at most "
                    f"{int(diff.max())} grey levels"
                )
            action = rng.integers(0, ours.action_space.nvec[0], size=1)
            obs_ours, reward_ours, term_ours, trunc_ours, _ = ours.step(action)
            obs_theirs, reward_theirs, term_theirs, _, _ = theirs.step(action)
            if reward_ours[0] != reward_theirs[0] or term_ours[0] != term_theirs[0]:
                return f"rewards or ends differ at step {step}"
            if term_ours[0] or trunc_ours[0]:
                return f"equal over a whole game ({step + 1} steps)"
        return f"equal over {steps} steps"
    finally:
        ours.close()
        theirs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=["ALE/Pong-v5", "ALE/Breakout-v5"])
    parser.add_argument("--envs", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--steps", type=int, default=2_000, help="vector steps per timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-steps", type=int, default=5_000)
    args = parser.parse_args()
    print(describe_cpu())
    settings = AtariConfig()  # the training preprocessing: SB3's AtariWrapper, 4 frames
    makers = {
        "rlkit (Python wrappers)": rlkit_env,
        "AtariVectorEnv (1 thread)": ale_vector_env,
        "SB3 AtariWrapper + VecFrameStack": sb3_env,
    }
    print("| game | envs | " + " | ".join(makers) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in makers) + " |")
    for game in args.games:
        for n_envs in args.envs:
            made = {name: make(game, n_envs, settings) for name, make in makers.items()}
            rates: dict[str, list[float]] = {name: [] for name in made if made[name] is not None}
            for _ in range(args.rounds):
                for name in rates:
                    rates[name].append(
                        steps_per_second(made[name], args.steps, is_sb3=name.startswith("SB3"))
                    )
            for env in made.values():
                if env is not None:
                    env.close()
            cells = [
                f"{statistics.median(rates[name]):,.0f}" if name in rates else "(no SB3)"
                for name in makers
            ]
            print(f"| {game} | {n_envs} | " + " | ".join(cells) + " |")
    print("\nAtariVectorEnv's observations against rlkit's, one game, the same actions:")
    for game in args.games:
        print(f"- {game}: {first_difference(game, args.compare_steps)}")


if __name__ == "__main__":
    main()
