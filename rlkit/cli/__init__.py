"""Command line: `rlkit train CONFIG ...` (also over many seeds), `rlkit eval PATH ...`,
`rlkit report DIR ...` and `rlkit tune CONFIG ...` (hyperparameter search).

A user's mistake (missing file, bad key, unknown env, ...) prints one line on stderr and exits
with code 2; a traceback means a bug in rlkit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import signal
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rlkit.base.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_yaml,
    require,
)
from rlkit.base.errors import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_OS_ERROR,
    EXIT_USER_ERROR,
    AgentFileError,
    UserError,
)


@dataclasses.dataclass
class RunConfig(Config):
    """Settings of a CLI run; every other key in the YAML file configures the agent."""

    agent: str = "dqn"
    """Which agent to train (dqn)."""
    total_steps: int = 50_000
    """Environment steps to train for."""
    checkpoint_interval: int = 10_000
    """Environment steps between training checkpoints in the run folder (0: none)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    torch_threads: int = 0
    """Threads of torch and of numpy's BLAS for the run (0: their defaults)."""

    def validate(self) -> None:
        require(self.total_steps >= 1, f"total_steps must be >= 1, got {self.total_steps}")
        require(
            self.checkpoint_interval >= 0,
            f"checkpoint_interval must be >= 0, got {self.checkpoint_interval}",
        )
        require(
            self.keep_checkpoints >= 1,
            f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}",
        )
        require(self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}")


RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlkit", description="Train and evaluate rlkit agents.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an agent from a YAML config")
    train.add_argument(
        "config", metavar="CONFIG", nargs="?", help="YAML config file (see configs/)"
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest good checkpoint (no CONFIG then)",
    )
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument(
        "--seeds",
        metavar="LIST",
        help="train one run per seed (1-10 or 1,4,7) in parallel processes, each in "
        "PARENT/seed_<k>; PARENT is --run-dir (default: runs/<config>_<time>)",
    )
    train.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="with --seeds: how many seeds run at a time (default: the number of cores; "
        "torch threads are divided among them)",
    )
    train.add_argument("--steps", type=int, help="override total_steps")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--run-dir", help="run folder (default: runs/<config>_s<seed>_<time>)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimizer.lr=3e-4 (repeatable)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    # For the seeds of --seeds: progress as JSON lines on stdout, for the parent to show.
    train.add_argument("--progress-jsonl", action="store_true", help=argparse.SUPPRESS)

    ev = sub.add_parser("eval", help="run greedy episodes with a saved agent")
    ev.add_argument("path", metavar="PATH", help="a run folder or a saved agent file")
    ev.add_argument(
        "--agent",
        choices=("final", "best"),
        help="of a run folder: its final agent (default; the newest checkpoint of an unfinished "
        "run) or the best one of its periodic evaluations",
    )
    ev.add_argument("--episodes", type=int, default=20, help="number of episodes (default 20)")
    ev.add_argument(
        "--seed",
        type=int,
        help="seed of the evaluation episodes (default: the agent's test seeds, its training "
        "seed + 10,000)",
    )
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--video",
        metavar="DIR",
        help="record the episodes as MP4 files in DIR (one env copy, episode i on seed + i; "
        "needs the video extra)",
    )

    tune = sub.add_parser(
        "tune", help="hyperparameter search with Optuna over the config's search: block"
    )
    tune.add_argument(
        "config", metavar="CONFIG", nargs="?", help="YAML config with a search: block"
    )
    tune.add_argument("--trials", type=int, help="trials in the study in all (all workers)")
    tune.add_argument(
        "--seeds-per-trial", type=int, default=2, metavar="K",
        help="seeds each trial trains, scored by their IQM (default 2)",
    )  # fmt: skip
    tune.add_argument(
        "--sampler", choices=("random", "tpe"), default="random",
        help="random search (default) or Optuna's TPE",
    )  # fmt: skip
    tune.add_argument(
        "--pruner", choices=("median", "none"), default="median",
        help="stop trials below the median of the others at the same evaluation (default)",
    )  # fmt: skip
    tune.add_argument("--study", help="study name (default: the config's name); runs/<study>/")
    tune.add_argument(
        "--storage", metavar="URL",
        help="Optuna storage (default sqlite:///runs/<study>/study.db); e.g. "
        "postgresql://user:password@host/db to share the study between machines",
    )  # fmt: skip
    tune.add_argument(
        "--jobs", type=int, metavar="J",
        help="trials this process runs at once (default: cores / seeds per trial)",
    )  # fmt: skip
    tune.add_argument(
        "--steps", type=int, help="environment steps per trial (default: the config's)"
    )
    tune.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value for every trial (repeatable)",
    )  # fmt: skip
    tune.add_argument(
        "--ray", metavar="ADDRESS",
        help="run the trials as Ray Tune trials on the Ray cluster at ADDRESS (host:port)",
    )  # fmt: skip
    tune.add_argument(
        "--retry-failed", action="store_true",
        help="rerun, with the same values, a trial whose worker died",
    )  # fmt: skip
    tune.add_argument(
        "--heartbeat", type=int, default=60, metavar="SECONDS",
        help="how often a worker marks its trials alive; a trial silent for twice this is "
        "taken as lost (default 60)",
    )  # fmt: skip
    tune.add_argument(
        "--report", metavar="STUDY",
        help="only write the study's best.yaml, trials.csv and plots (with --storage if not "
        "the default)",
    )  # fmt: skip

    report = sub.add_parser(
        "report", help="summary and learning curves of runs over seeds (one DIR per config)"
    )
    report.add_argument(
        "dirs", metavar="DIR", nargs="+",
        help="a folder of `rlkit train --seeds` (or any folder of run folders, or one run)",
    )  # fmt: skip
    report.add_argument("--out", metavar="DIR", help="where to write (default: the first DIR)")
    report.add_argument(
        "--allow-mixed", action="store_true", help="allow runs of different envs in one plot"
    )
    report.add_argument("--per-seed", action="store_true", help="also draw each seed's curve")
    return parser


def load_run_config(
    path: str | Path, overrides: Sequence[str] = (), **flags: Any
) -> tuple[RunConfig, Any]:
    """Read a YAML config, apply --set overrides and flags; return (run settings, agent config)."""
    run, data = read_run_settings(path, overrides, **flags)
    import agents  # (torch: 2 s) once the file, its YAML and the run's settings have passed

    agent_cls = agents.agent_class(run.agent)
    agent_config = config_from_dict(agent_cls.Config, data, also_known=RUN_KEYS)
    return run, agent_config


def read_run_settings(
    path: str | Path, overrides: Sequence[str] = (), **flags: Any
) -> tuple[RunConfig, dict[str, Any]]:
    """The first half of load_run_config, without loading torch: (run settings, the agent's
    keys, not yet checked)."""
    data = apply_overrides(load_yaml(path), overrides)
    for key, value in flags.items():
        if value is not None:
            data[key] = value
    return split_run_settings(data)


def split_run_settings(data: Mapping[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """Config data -> (run settings, the agent's keys, not yet checked)."""
    data = dict(data)
    run_data = {key: data.pop(key) for key in RUN_KEYS if key in data}
    data.pop("search", None)  # what `rlkit tune` varies (experiments.search); not training
    return config_from_dict(RunConfig, run_data), data


def limit_threads(threads: int) -> None:
    """`torch_threads`: torch's intra-op threads, and numpy's BLAS threads alike (the acting
    path of the policy-gradient agents multiplies in numpy, and OpenBLAS keeps a pool of its
    own: with 4 seeds on 2 cores, its spinning threads made 256-wide PPO runs ~30x slower)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


def _default_run_dir(config_path: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}_s{seed}_{stamp}"


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

    run_dir = (
        Path(args.run_dir) if args.run_dir else _default_run_dir(args.config, agent_config.seed)
    )
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"run folder {run_dir} already exists and is not empty; choose another --run-dir "
            f"or continue it with --resume {run_dir}"
        )
    if run.torch_threads:
        limit_threads(run.torch_threads)
    agent = agents.agent_class(run.agent)(config=agent_config)
    print(
        f"rlkit: training {run.agent} on {agent_config.env} for {run.total_steps:,} steps "
        f"on {agent.device}; run folder {run_dir}",
        file=sys.stderr,
    )
    print(f"rlkit: {agent.describe_memory()}", file=sys.stderr)
    return _train(agent, run, run_dir, progress=_progress_mode(args), resume=False)


def _progress_mode(args: argparse.Namespace) -> bool | str:
    if args.progress_jsonl:  # a seed of `rlkit train --seeds` or a trial of `rlkit tune`
        from rlkit.experiments.seeds import stop_when_parent_dies

        stop_when_parent_dies()
        return "jsonl"
    return not args.no_progress


def _jobs(args: argparse.Namespace, default: int) -> int:
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
    jobs = min(_jobs(args, default=available_cores()), len(seeds))
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
        Path(args.run_dir) if args.run_dir else Path("runs") / f"{Path(args.config).stem}_{stamp}"
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
    jobs = _jobs(args, default=experiment.info["jobs"])
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
    from rlkit.agent.core import BEST_AGENT_FILE
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


def _load_agent(path: Path, which: str | None, device: str) -> tuple[Any, Path]:
    """(agent, the file it came from) for a saved agent file, or for a run folder: the newer of
    its agent.safetensors and its newest good checkpoint (a run still going, or interrupted,
    has checkpoints; one resumed after a Ctrl-C also has the older agent file saved then);
    with which="best", its best_agent.safetensors."""
    if not path.exists():  # answered before torch loads
        raise AgentFileError(f"no such file: {path}")
    import agents
    from rlkit.agent.core import BEST_AGENT_FILE, FINAL_AGENT_FILE
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


def cmd_tune(args: argparse.Namespace) -> int:
    from rlkit.experiments import tune

    runs = Path("runs")
    if args.report is not None:
        if args.config is not None or args.trials is not None:
            raise UserError("--report STUDY writes the report of a study; drop CONFIG/--trials")
        name = _study_name(args.report)
        url = args.storage or tune.default_storage(name, runs)
        if args.storage is None and not (runs / name / "study.db").is_file():
            raise UserError(f"no study {name}: {runs / name / 'study.db'} does not exist")
        study = tune.load_study(name, tune.open_storage(url))
        tune.write_report(study, runs / name, log=_say)
        return 0
    if args.config is None:
        raise UserError("give a CONFIG file with a search: block (or --report STUDY)")
    if args.trials is None or args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if args.seeds_per_trial < 1:
        raise UserError(f"--seeds-per-trial must be at least 1, got {args.seeds_per_trial}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.heartbeat < 1:
        raise UserError(f"--heartbeat must be at least 1 second, got {args.heartbeat}")
    from rlkit.experiments.seeds import available_cores

    jobs = _jobs(args, default=max(1, available_cores() // args.seeds_per_trial))
    name = _study_name(args.study or Path(args.config).stem)
    tune.need("optuna", "tune")
    if args.ray is not None:
        tune.need("ray.tune", "ray")
    setup = tune.read_setup(args.config, args.overrides, args.seeds_per_trial, args.steps)
    folder = runs / name
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    url = args.storage or tune.default_storage(name, runs)
    try:
        # Ray keeps its trials alive itself; the heartbeats are for rlkit's own workers.
        heartbeat = None if args.ray else args.heartbeat
        storage = tune.open_storage(url, heartbeat, args.retry_failed)
        known = {s.study_name for s in storage.get_all_studies()}
        if name not in known and any(folder.glob("trial_*")):
            raise UserError(
                f"{folder} holds trial folders of a study that is not in {url}; choose another "
                "--study, or remove the folder"
            )
        study = tune.load_or_create_study(
            name, storage, setup, tune.make_sampler(args.sampler),
            tune.make_pruner(args.pruner, setup.evaluations),
        )  # fmt: skip
    except BaseException:
        if made:  # nothing of a study that could not be opened is left behind
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    _say(
        f"rlkit: study {name} ({tune.hide_password(url)}): {args.trials} trials of "
        f"{len(setup.seeds)} seeds x {setup.steps:,} steps, "
        + (f"on Ray at {args.ray}" if args.ray else f"{jobs} at a time here")
        + f"; {args.sampler} sampler, {args.pruner} pruner; folder {folder}"
    )
    if args.ray is not None:
        from rlkit.experiments.tune_ray import run_on_ray

        code = run_on_ray(args.ray, study, setup, folder, args.trials, args.pruner)
    else:
        code = tune.Worker(study, setup, folder, args.trials, jobs, args.heartbeat).run()
    tune.write_report(study, folder, log=_say)
    if code == EXIT_INTERRUPTED:
        _say("rlkit: interrupted; continue the study with the same command")
    return code


def _study_name(name: str) -> str:
    from rlkit.experiments.tune import STUDY_NAME

    if not STUDY_NAME.match(name):
        raise UserError(
            f"study name {name!r}: use letters, digits, '_', '.' and '-' (it names a folder)"
        )
    return name


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from rlkit.experiments.report import write_report

    out = Path(args.out) if args.out else Path(args.dirs[0])
    write_report([Path(d) for d in args.dirs], out, args.allow_mixed, args.per_seed)
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # gymnasium colours its warnings for a terminal and prefixes them "WARN: "; ours say so.
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(message)).removeprefix("WARN: ")
    return f"rlkit: warning: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # a notice, not a source listing
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "tune":
            return cmd_tune(args)
        return cmd_eval(args)
    except UserError as error:
        print(f"rlkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:  # disk full, permissions: the machine's state, not a bug
        print(f"rlkit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_OS_ERROR
    except KeyboardInterrupt:
        print("\nrlkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
