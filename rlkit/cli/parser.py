"""The `rlkit` command's arguments: train, eval, tune and report. A wrong argument is one line
(exit 2), not argparse's usage block."""

from __future__ import annotations

import argparse
from typing import NoReturn

from rlkit.base.errors import EXIT_USER_ERROR


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
