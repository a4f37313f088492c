"""`rlkit eval PATH` (a run folder or an agent file: greedy episodes on the test seeds, or
videos of them) and `rlkit report DIR ...` (what runs over seeds say)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlkit.base.errors import AgentFileError, UserError


def _load_agent(path: Path, which: str | None, device: str) -> tuple[Any, Path]:
    """(agent, the file it came from) for a saved agent file, or for a run folder: the newer of
    its agent.safetensors and its newest good checkpoint (a run still going, or interrupted,
    has checkpoints; one resumed after a Ctrl-C also has the older agent file saved then);
    with which="best", its best_agent.safetensors."""
    if not path.exists():  # answered before torch loads
        raise AgentFileError(f"no such file: {path}")
    import agents
    from rlkit.agent import BEST_AGENT_FILE, FINAL_AGENT_FILE
    from rlkit.io.checkpoint import list_checkpoints

    if not path.is_dir():
        if which is not None and path.exists():
            raise UserError(
                f"--agent {which} picks a file of a run folder; {path} is already an agent file"
            )
        return agents.load(path, device=device), path
    if which == "best":
        best = path / BEST_AGENT_FILE
        if not best.exists():
            raise AgentFileError(
                f"no {BEST_AGENT_FILE} in {path}: the run had no periodic evaluation yet "
                "(eval_interval 0, or none reached)"
            )
        return agents.load(best, device=device), best
    final = path / FINAL_AGENT_FILE
    checkpoints = list_checkpoints(path)
    if final.exists():
        agent = agents.load(final, device=device)
        if not checkpoints or checkpoints[-1].step <= agent.global_step:
            return agent, final
        newer = agents.from_checkpoint(path, device=device)  # (the newest that is intact)
        if newer.global_step > agent.global_step:
            agent.close()
            return newer, newer.checkpoint_file
        newer.close()
        return agent, final
    if checkpoints:
        agent = agents.from_checkpoint(path, device=device)
        return agent, agent.checkpoint_file
    raise AgentFileError(
        f"no saved agent in run folder {path} (no {FINAL_AGENT_FILE}, no checkpoints)"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    agent, source = _load_agent(Path(args.path), args.agent, args.device)
    print(f"rlkit: evaluating {source} (step {agent.global_step:,})", file=sys.stderr)
    if args.video is not None:
        from rlkit.agent.video import record_episodes

        result, files = record_episodes(agent, args.episodes, Path(args.video), seed=args.seed)
        print(f"rlkit: {len(files)} videos in {args.video}", file=sys.stderr)
    else:
        result = agent.evaluate(args.episodes, seed=args.seed)
    agent.close()
    if args.json:
        print(json.dumps({**result.to_dict(), "file": str(source), "step": agent.global_step}))
    else:
        print(
            f"{agent.config.env}: mean return {result.mean_return:.2f} +/- "
            f"{result.std_return:.2f} over {len(result.returns)} episodes ({source})"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rlkit.experiments.report import write_report

    out = Path(args.out) if args.out else Path(args.dirs[0])
    write_report([Path(d) for d in args.dirs], out, args.allow_mixed, args.per_seed)
    return 0
