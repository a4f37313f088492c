"""How much each training burst of a DQN run changes its greedy policy: policy churn.

    python benchmarks/policy_churn.py configs/dqn_cartpole.yaml --seed 1
    python benchmarks/policy_churn.py configs/dqn_cartpole.yaml --seed 1 --set optimizer.eps=1e-8

Trains the config (no periodic evaluation) and, after every training call from --probe-from
steps on, compares the Q-network with the one after the previous call on a fixed set of probe
states (--probes of them, drawn from the replay buffer when probing starts: states the agent
visits). Prints, per block of --block env steps: the share of probe states whose greedy action
changed per call ("churn"), the mean action gap |Q(s, a1) - Q(s, a2)| on them, the relative size
of the weights' change per call, the learning rate, and the greedy return over 10 test
episodes at the block's end. The same seed, config and CPU give the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents  # noqa: E402
from rlkit.agent.evaluation import seed_for_testing  # noqa: E402
from rlkit.base.device import describe_cpu  # noqa: E402
from rlkit.experiments.run_config import load_run_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--probe-from", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=4_096)
    parser.add_argument("--block", type=int, default=5_000)
    args = parser.parse_args()

    torch.set_num_threads(1)
    run, config = load_run_config(
        args.config, ["eval_interval=0", *args.overrides], seed=args.seed, device="cpu"
    )
    agent = agents.agent_class(run.agent)(config=config)
    probes: torch.Tensor | None = None
    previous: dict[str, torch.Tensor] = {}
    block: dict[str, list[float]] = {"churn": [], "gap": [], "change": []}
    last_updates = 0

    def q_values(obs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return agent.q_net(obs)

    def callback(a) -> bool:
        nonlocal probes, last_updates
        if a.global_step >= args.probe_from and probes is None:
            index = torch.randperm(len(a.buffer), generator=torch.Generator().manual_seed(0))
            probes = a.buffer.obs[index[: args.probes]].clone()
        if probes is not None and a.n_updates != last_updates:
            last_updates = a.n_updates
            q = q_values(probes)
            weights = torch.cat([p.detach().flatten() for p in a.q_net.parameters()])
            if previous:
                flips = (q.argmax(1) != previous["q"].argmax(1)).float().mean().item()
                block["churn"].append(flips)
                change = (weights - previous["w"]).norm() / previous["w"].norm()
                block["change"].append(change.item())
            top2 = q.topk(2, dim=1).values
            block["gap"].append((top2[:, 0] - top2[:, 1]).mean().item())
            previous.update(q=q, w=weights.clone())
        if a.global_step % args.block == 0 and block["churn"]:
            result = a.evaluate(10, seed=seed_for_testing(args.seed))
            lr = a.optimizer.param_groups[0]["lr"]
            print(
                f"| {a.global_step:,} | {np.mean(block['churn']):.3f} | "
                f"{np.mean(block['gap']):.3f} | {np.mean(block['change']):.2e} | {lr:.2e} | "
                f"{result.mean_return:.0f} |",
                flush=True,
            )
            for values in block.values():
                values.clear()
        return True

    print(f"{args.config} seed {args.seed} {' '.join(args.overrides)}")
    print(f"CPU: {describe_cpu()}")
    print("| step | churn per call | action gap | weight change per call | lr | test return |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    agent.learn(run.total_steps, callback=callback, callback_interval=1)


if __name__ == "__main__":
    main()
