"""Time per DQN gradient step through a CNN, under the CPU options issue 33 asks about:
torch threads (1 or 2), channels-last convolutions, torch.compile of the network's forward,
and bfloat16 autocast; alternated round by round, each on its own agent.

    .venv/bin/python benchmarks/cnn_update.py [--layout minatar|carracing|both] [--rounds 3]

Layouts (real agents, real envs; the buffer is filled by learning_starts steps first):
- minatar: configs/dqn_minatar_breakout.yaml (MinAtar/Breakout-v1, 10x10x4 grids, MinAtar's
  16@3x3 CNN and no hidden layer, batch 32, centered RMSprop): the paper's DQN.
- carracing: CarRacing-v3 with discrete actions (96x96x3 uint8 frames, the Nature CNN, batch
  32, Adam; needs the box2d extra).
- atari: configs/dqn_atari.yaml on Pong (4x84x84 uint8 stacks, the Nature CNN, batch 32, Adam;
  needs the atari extra).

Each round times --updates calls of the agent's own `_update` per variant, after a warm-up
(torch.compile compiles during it). "same" says whether a variant's losses over the timed steps
equal the default's to float32 rounding (channels-last and compile reorder sums; bf16 does
not keep float32's precision at all: it would be a user's opt-in). Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import agents
from rlkit.base.device import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (
    "default", "2 threads", "channels_last", "compile", "bf16 autocast", "linear (in, out)"
)  # fmt: skip


class LinearInOut(torch.nn.Module):
    """nn.Linear with its weight kept (in, out): x @ W instead of x @ W.T. torch's CPU product
    of a 32-row batch with a transposed 1024x128 weight took ~3x as long as with the same
    weight stored the other way on an Intel Xeon (family 6, model 106)."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().T.contiguous())
        self.bias = torch.nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


def settings(layout: str) -> dict:
    if layout == "atari":
        config = yaml.safe_load((ROOT / "configs/dqn_atari.yaml").read_text())
        for key in ("agent", "total_steps", "checkpoint_interval"):
            config.pop(key)
        return dict(config, eval_interval=0, buffer_size=2_000, learning_starts=1_000)
    if layout == "minatar":
        config = yaml.safe_load((ROOT / "configs/dqn_minatar_breakout.yaml").read_text())
        for key in ("agent", "total_steps"):
            config.pop(key)
        return dict(config, eval_interval=0, buffer_size=10_000, learning_starts=2_000)
    return dict(
        env="CarRacing-v3", env_kwargs={"continuous": False}, buffer_size=2_000,
        learning_starts=1_000, batch_size=32, eval_interval=0,
        network={"encoder": "nature_cnn", "hidden_sizes": []}, optimizer={"lr": 1e-4},
    )  # fmt: skip


def make_agent(layout: str, variant: str) -> tuple[agents.DQN, contextlib.AbstractContextManager]:
    agent = agents.DQN(**{**settings(layout), "seed": 1})
    if variant == "linear (in, out)":  # (before training: a new optimizer over the weights)
        for net in (agent.q_net, agent.q_net_target):
            for parent in list(net.modules()):
                for name, child in list(parent.named_children()):
                    if type(child) is torch.nn.Linear:
                        setattr(parent, name, LinearInOut(child))
        agent.optimizer = type(agent.optimizer)(
            agent.q_net.parameters(), **agent.optimizer.defaults
        )
        agent._parameters = list(agent.q_net.parameters())
        agent._target_parameters = list(agent.q_net_target.parameters())
        agent._make_guard()
    agent.learn(agent.config.learning_starts + 32)  # a filled buffer, the optimizer's state
    context: contextlib.AbstractContextManager = contextlib.nullcontext()
    for net in (agent.q_net, agent.q_net_target):
        if variant == "channels_last":
            net.to(memory_format=torch.channels_last)
            encoder = net.encoder
            plain = encoder.forward
            encoder.forward = lambda obs, plain=plain: plain(obs).contiguous()
            encoder.convs[0].register_forward_pre_hook(
                lambda _, args: (args[0].contiguous(memory_format=torch.channels_last),)
            )
        elif variant == "compile":
            net.forward = torch.compile(net.forward)
    if variant == "bf16 autocast":
        context = torch.autocast("cpu", dtype=torch.bfloat16)
    return agent, context


def time_updates(agent: agents.DQN, context, threads: int, n: int) -> tuple[float, list[float]]:
    torch.set_num_threads(threads)
    losses = []
    with context:
        start = time.perf_counter()
        for _ in range(n):
            losses.append(agent._update(per_beta=1.0)[0])
        elapsed = time.perf_counter() - start
    return elapsed / n * 1e6, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layout", choices=["minatar", "carracing", "atari", "both"], default="both"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # (as the run loop does: rlkit.base.precision)
    print(describe_cpu())
    layouts = ["minatar", "carracing"] if args.layout == "both" else [args.layout]
    for layout in layouts:
        torch.set_num_threads(1)
        made = {variant: make_agent(layout, variant) for variant in VARIANTS}
        for variant, (agent, context) in made.items():  # warm-up (and compilation)
            time_updates(agent, context, 2 if variant == "2 threads" else 1, 30)
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        losses: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for variant, (agent, context) in made.items():
                threads = 2 if variant == "2 threads" else 1
                us, values = time_updates(agent, context, threads, args.updates)
                times[variant].append(us)
                losses.setdefault(variant, values)
        base = statistics.median(times["default"])
        print(f"\n{layout}: us per gradient step (median of {args.rounds} rounds of "
              f"{args.updates})")  # fmt: skip
        print("| variant | us | vs default | same losses |")
        print("| --- | ---: | ---: | --- |")
        for variant in VARIANTS:
            us = statistics.median(times[variant])
            same = torch.allclose(
                torch.tensor(losses[variant]), torch.tensor(losses["default"]), rtol=1e-4
            )
            print(f"| {variant} | {us:.0f} | {us / base:.2f} | {'yes' if same else 'no'} |")
        for agent, _ in made.values():
            agent.close()


if __name__ == "__main__":
    main()
