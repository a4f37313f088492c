"""`rlkit tune CONFIG --trials N`: hyperparameter search over the config's search: block (here,
or as Ray Tune trials on a Ray cluster); `rlkit tune --report STUDY` writes a study's report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlkit.base.errors import EXIT_INTERRUPTED, UserError
from rlkit.cli.train import jobs_from_args, say


def cmd_tune(args: argparse.Namespace) -> int:
    from rlkit.experiments import tune
    from rlkit.experiments.tune_report import write_report
    from rlkit.experiments.tune_worker import Worker

    runs = Path("runs")
    if args.report is not None:
        if args.config is not None or args.trials is not None:
            raise UserError("--report STUDY writes the report of a study; drop CONFIG/--trials")
        name = _study_name(args.report)
        url = args.storage or tune.default_storage(name, runs)
        if args.storage is None and not (runs / name / "study.db").is_file():
            raise UserError(f"no study {name}: {runs / name / 'study.db'} does not exist")
        study = tune.load_study(name, tune.open_storage(url))
        write_report(study, runs / name, log=say)
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

    jobs = jobs_from_args(args, default=max(1, available_cores() // args.seeds_per_trial))
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
    say(
        f"rlkit: study {name} ({tune.hide_password(url)}): {args.trials} trials of "
        f"{len(setup.seeds)} seeds x {setup.steps:,} steps, "
        + (f"on Ray at {args.ray}" if args.ray else f"{jobs} at a time here")
        + f"; {args.sampler} sampler, {args.pruner} pruner; folder {folder}"
    )
    if args.ray is not None:
        from rlkit.experiments.tune_ray import run_on_ray

        code = run_on_ray(args.ray, study, setup, folder, args.trials, args.pruner)
    else:
        code = Worker(study, setup, folder, args.trials, jobs, args.heartbeat).run()
    write_report(study, folder, log=say)
    if code == EXIT_INTERRUPTED:
        say("rlkit: interrupted; continue the study with the same command")
    return code


def _study_name(name: str) -> str:
    from rlkit.experiments.tune import STUDY_NAME

    if not STUDY_NAME.match(name):
        raise UserError(
            f"study name {name!r}: use letters, digits, '_', '.' and '-' (it names a folder)"
        )
    return name
