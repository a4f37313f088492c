"""`rlkit train CONFIG` (one run), `rlkit train CONFIG --seeds LIST` (a run per seed, in parallel
processes) and `rlkit train --resume RUN_DIR`: train, save, then test the final and the best
agent on the test seeds."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rlkit.base.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, UserError
from rlkit.base.threads import limit_threads
from rlkit.experiments.run_config import RunConfig, load_run_config, read_run_settings


def _default_run_dir(config_path: str, seed: int) -> Path:
    """runs/<config>_s<seed>_<date-time>, made now: two runs started in the same second (a
    script, a page of commands) get -2, -3, ... rather than one refusing the other's folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{Path(config_path).stem}_s{seed}_{stamp}"
    return _claim_folder(Path("runs"), name)


def _claim_folder(parent: Path, name: str) -> Path:
    """parent/name, or name-2, name-3, ...: the first that this process creates itself (mkdir
    is atomic, so two processes never claim the same one)."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        folder = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise UserError(f"no free run folder named {name}-N in {parent}; give --run-dir")


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return cmd_resume(args)
    if args.config is None:
        raise UserError("give a CONFIG file to train from, or --resume RUN_DIR")
    if args.seeds is not None:
        return cmd_train_seeds(args)
    if args.jobs is not None:
        raise UserError("--jobs runs seeds in parallel; give --seeds too")

    run, agent_config = load_run_config(
        args.config, args.overrides, seed=args.seed, device=args.device, total_steps=args.steps
    )
    import agents

    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None and run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"run folder {run_dir} already exists and is not empty; choose another --run-dir "
            f"or continue it with --resume {run_dir}"
        )
    agent_cls = agents.agent_class(run.agent)
    _, given = read_run_settings(args.config, args.overrides)
    run, agent_config = measured_settings(
        agent_cls, run, agent_config, precision_given="matmul_precision" in given
    )
    limit_threads(run.torch_threads)
    agent = agent_cls(config=agent_config)
    if run_dir is None:  # claimed once the agent exists: a run that cannot start leaves none
        run_dir = _default_run_dir(args.config, agent_config.seed)
    print(
        f"rlkit: training {run.agent} on {agent_config.env} for {run.total_steps:,} steps "
        f"on {agent.device}; run folder {run_dir}",
        file=sys.stderr,
    )
    print(f"rlkit: {agent.describe_memory()}", file=sys.stderr)
    return _train(agent, run, run_dir, progress=_progress_mode(args), resume=False)


def measured_settings(
    agent_cls: type, run: RunConfig, agent_config: Any, precision_given: bool
) -> tuple[RunConfig, Any]:
    """torch_threads and matmul_precision where the config leaves them out: what trains this
    config fastest here, threads with a margin for a busy core and only precisions that keep
    float32 (rlkit.agent.calibration); recorded in the run's config.yaml. On a GPU, and where
    torch has one thread anyway, torch's own count and highest."""
    import torch

    from rlkit.agent.calibration import calibrate
    from rlkit.base.device import resolve_device

    cores = torch.get_num_threads()
    on_cpu = resolve_device(agent_config.device).type == "cpu"
    threads = run.torch_threads or (cores if not on_cpu or cores <= 1 else None)
    precision = agent_config.matmul_precision if precision_given or not on_cpu else None
    threads, precision, how = calibrate(
        agent_cls, agent_config.to_dict(), cores, threads=threads, precision=precision
    )
    if how != "nothing to measure":
        print(
            f"rlkit: torch threads {threads}, matmul_precision {precision} ({how})",
            file=sys.stderr,
        )
    run = dataclasses.replace(run, torch_threads=threads)
    return run, dataclasses.replace(agent_config, matmul_precision=precision)


def _progress_mode(args: argparse.Namespace) -> bool | str:
    if args.progress_jsonl:  # a seed of `rlkit train --seeds` or a trial of `rlkit tune`
        from rlkit.experiments.seeds import stop_when_parent_dies

        stop_when_parent_dies()
        return "jsonl"
    return not args.no_progress


def jobs_from_args(args: argparse.Namespace, default: int) -> int:
    jobs = default if args.jobs is None else args.jobs
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    return jobs


def cmd_train_seeds(args: argparse.Namespace) -> int:
    """`rlkit train CONFIG --seeds LIST`: every seed a single run in its own process."""
    from rlkit.experiments.seeds import Experiment, available_cores, parse_seeds, thread_args

    seeds = parse_seeds(args.seeds)
    if args.seed is not None:
        raise UserError("--seed and --seeds exclude each other")
    jobs = min(jobs_from_args(args, default=available_cores()), len(seeds))
    # The run settings, read without loading torch: the seeds start at once and check the
    # rest of the config themselves; a mistake there ends all of them and is one error here.
    run, data = read_run_settings(args.config, args.overrides, total_steps=args.steps)
    train_args = [f"--set={override}" for override in args.overrides]
    if args.steps is not None:
        train_args.append(f"--steps={args.steps}")
    if args.device is not None:
        train_args.append(f"--device={args.device}")
    train_args += thread_args(run.torch_threads, jobs)  # the cores shared among the seeds
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = (
        Path(args.run_dir)
        if args.run_dir
        else _claim_folder(Path("runs"), f"{Path(args.config).stem}_{stamp}")
    )
    experiment = Experiment.create(
        Path(args.config), parent, seeds, jobs, train_args, run.total_steps
    )
    header = (
        f"rlkit: training {run.agent} on {data.get('env', '?')} for {run.total_steps:,} steps, "
        f"seeds {args.seeds} ({len(seeds)} runs, {jobs} at a time); folder {parent}"
    )
    return _run_experiment(experiment, jobs, args, header)


def _run_experiment(experiment: Any, jobs: int, args: argparse.Namespace, header: str = "") -> int:
    code = experiment.run(jobs, progress=not args.no_progress, header=header)
    if experiment.config_error is not None:  # the seeds' own one-line error, said once
        raise UserError(experiment.config_error)
    parent = experiment.parent
    if code == EXIT_INTERRUPTED:
        print(
            f"rlkit: interrupted; every seed saved; continue with: rlkit train --resume {parent}",
            file=sys.stderr,
        )
        return code
    failed = [r for r in experiment.runs if r.status == "failed"]
    if failed:
        names = ", ".join(f"seed {r.seed} ({r.detail}, log {r.log})" for r in failed)
        print(
            f"rlkit: {len(failed)} of {len(experiment.runs)} seeds failed: {names}; "
            f"the others finished; rerun the failed ones with: rlkit train --resume {parent}",
            file=sys.stderr,
        )
        return 1
    from rlkit.experiments.report import write_report

    write_report([parent], parent)
    print(f"rlkit: watch it with: tensorboard --logdir {parent}", file=sys.stderr)
    return 0


def cmd_resume_seeds(args: argparse.Namespace, parent: Path) -> int:
    from rlkit.experiments.seeds import Experiment

    experiment = Experiment.open(parent)
    jobs = jobs_from_args(args, default=experiment.info["jobs"])
    left = [s for s in experiment.info["seeds"] if s not in experiment.info["finished"]]
    header = f"rlkit: resuming {parent}: {len(left)} of {len(experiment.runs)} seeds unfinished" + (
        f" ({', '.join(map(str, left))})" if left else ""
    )
    return _run_experiment(experiment, jobs, args, header)


def cmd_resume(args: argparse.Namespace) -> int:
    from rlkit.experiments.seeds import Experiment

    ignored = [
        flag
        for flag, value in (
            ("CONFIG", args.config),
            ("--seed", args.seed),
            ("--seeds", args.seeds),
            ("--steps", args.steps),
            ("--run-dir", args.run_dir),
            ("--set", args.overrides),
        )
        if value
    ]
    if ignored:
        raise UserError(
            f"--resume continues a run with its own settings; drop {', '.join(ignored)}"
        )
    run_dir = Path(args.resume)
    if Experiment.is_experiment(run_dir):
        return cmd_resume_seeds(args, run_dir)
    if args.jobs is not None:
        raise UserError(f"{run_dir} is a single run, not a folder of `rlkit train --seeds`")

    import agents
    from rlkit.io.checkpoint import list_checkpoints, remove_stray_files

    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not an rlkit run folder (no config.yaml in it)")
    run, _ = read_run_settings(run_dir / "config.yaml")
    if not list_checkpoints(run_dir):
        raise UserError(
            f"{run_dir} has no checkpoint to resume from: a run writes one every "
            f"checkpoint_interval steps ({run.checkpoint_interval:,} in its config.yaml, of "
            f"{run.total_steps:,}; 0: never) and when stopped with Ctrl-C"
        )
    for path in remove_stray_files(run_dir):
        print(f"rlkit: removed {path} (left by an interrupted write)", file=sys.stderr)
    agent = agents.from_checkpoint(run_dir, device=args.device)
    for reason in agent.skipped_checkpoints:
        print(f"rlkit: skipped damaged checkpoint {reason}", file=sys.stderr)
    if run.torch_threads:
        limit_threads(run.torch_threads)
    print(
        f"rlkit: resuming {run.agent} on {agent.config.env} at step {agent.global_step:,} "
        f"of {run.total_steps:,} on {agent.device}; run folder {run_dir}",
        file=sys.stderr,
    )
    return _train(agent, run, run_dir, progress=_progress_mode(args), resume=True)


def _train(agent: Any, run: RunConfig, run_dir: Path, progress: bool | str, resume: bool) -> int:
    """Train, then save and evaluate. The first Ctrl-C stops at the end of the current step
    and saves a checkpoint and the agent (exit 130); a second one aborts at once, and since
    every file is written atomically, the checkpoints already on disk stay intact."""
    from rlkit.agent.guard import DivergenceError

    def request_stop(signum: int, frame: Any) -> None:
        agent.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nrlkit: stopping; saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    previous_handler = signal.signal(signal.SIGINT, request_stop)
    try:
        agent.learn(
            run.total_steps,
            run_dir=run_dir,
            progress=progress,
            checkpoint_interval=run.checkpoint_interval,
            extra_config=dataclasses.asdict(run),
            keep_checkpoints=run.keep_checkpoints,
            resume=resume,
        )
        if agent.stop_requested:
            checkpoint = agent.save_checkpoint(run_dir, run.keep_checkpoints)
            saved = agent.save(run_dir / "agent.safetensors")
            print(
                f"rlkit: interrupted at step {agent.global_step:,}; checkpoint {checkpoint}, "
                f"agent {saved}; continue with: rlkit train --resume {run_dir}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    except DivergenceError as error:
        print(
            f"rlkit train: {error}; the last good state is saved in {run_dir}/checkpoints",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    saved = agent.save(run_dir / "agent.safetensors")
    if agent.stopped_early:
        cfg = agent.config
        print(
            f"rlkit: stopped at step {agent.global_step:,}: {cfg.stop_patience} evaluation(s) "
            f"in a row reached stop_at_return {cfg.stop_at_return:g}",
            file=sys.stderr,
        )
    print(f"rlkit: agent saved to {saved}", file=sys.stderr)
    _test_final_and_best(agent, run_dir)
    print(f"rlkit: watch it with: tensorboard --logdir {run_dir.parent}", file=sys.stderr)
    agent.close()
    return 0


def _test_final_and_best(agent: Any, run_dir: Path) -> None:
    """After training: the final agent, and the best one of the periodic evaluations, on the
    test seeds (never seen in training or in choosing the best agent)."""
    import agents
    from rlkit.agent import BEST_AGENT_FILE
    from rlkit.agent.evaluation import seed_for_testing

    episodes, seed = agent.config.eval_episodes, seed_for_testing(agent.config.seed)
    if not episodes:
        return
    contenders = [("final", agent, "test")]
    best_file = run_dir / BEST_AGENT_FILE
    if best_file.exists():
        contenders.append(("best", agents.load(best_file, device=str(agent.device)), "test_best"))
    results = {}
    for label, candidate, prefix in contenders:
        results[prefix] = result = candidate.evaluate(episodes, seed=seed)
        where = ""
        if candidate.saved_evaluation is not None:
            saved = candidate.saved_evaluation
            where = f" (step {saved['step']:,}, validation mean {saved['mean_return']:.2f})"
        print(
            f"rlkit: {label} agent{where}: greedy mean return {result.mean_return:.2f} +/- "
            f"{result.std_return:.2f} over {len(result.returns)} test episodes (seed {seed})",
            file=sys.stderr,
        )
    agent.record_test(run_dir, results)
    for _, candidate, _ in contenders[1:]:
        candidate.close()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
