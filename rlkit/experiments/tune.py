"""`rlkit tune CONFIG --trials N`: hyperparameter search with Optuna over the config's
`search:` block (rlkit.experiments.search).

Each trial trains K seeds of one configuration, each a single `rlkit train` process (through
rlkit.experiments.seeds, as `rlkit train --seeds` does), in runs/<study>/trial_<n>/. Its score is
the IQM over seeds of each seed's mean validation return over the last third of its run (an area
under the learning curve, less noisy than the last evaluation), reported to Optuna after every
evaluation so that a pruner can stop a bad trial early.

The study lives in an Optuna storage: by default the SQLite file runs/<study>/study.db, which a
second `rlkit tune` with the same --study joins; a PostgreSQL (or other SQLAlchemy) URL shares
it across machines; `--ray ADDRESS` hands the trials to Ray Tune instead
(rlkit.experiments.tune_ray).

A worker keeps each of its running trials alive with a heartbeat in the storage. A trial whose
worker died (SIGKILL, a lost machine) goes stale after the grace period; the next worker to
look marks it failed and, with --retry-failed, queues it again with the same values. The budget
--trials counts the trials that ran to an end (complete, pruned, or failed by their own
config); a trial lost with its worker, or stopped by Ctrl-C, leaves its slot to another.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlkit.base.config import ConfigError, apply_overrides, load_yaml, set_dotted
from rlkit.base.errors import UserError
from rlkit.experiments.search import SEARCH_KEY, SearchSpace

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Optuna user attributes of a trial: how it ended (failed | interrupted | surplus), and why.
OUTCOME, DETAIL = "rlkit_outcome", "rlkit_detail"
# ... of the study: what it searches, so that a worker with another config cannot join it.
STUDY_SETUP = "rlkit_setup"
NOT_SEARCHABLE = ("seed", "device", "total_steps", "checkpoint_interval", "keep_checkpoints",
                  "torch_threads", "agent")  # fmt: skip


def need(module: str, extra: str) -> Any:
    """Import an optional dependency, or say in one line what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"rlkit tune needs {module.split('.')[0]}: pip install 'rlkit[{extra}]'"
        ) from None


# ----------------------------------------------------------------------------- scores


def last_third_mean(evaluations: Sequence[tuple[int, float]]) -> float:
    """Mean return of the evaluations in the last third of a run so far: those at a step >=
    2/3 of the last evaluation's step ((step, mean return) pairs, in order)."""
    if not evaluations:
        raise ValueError("no evaluations")
    last_step = evaluations[-1][0]
    window = [value for step, value in evaluations if step >= last_step * 2 / 3]
    return sum(window) / len(window)


def trial_score(per_seed: Sequence[Sequence[tuple[int, float]]]) -> float:
    """A trial's score: the IQM over seeds of each seed's last-third mean."""
    from rlkit.math.stats import iqm

    return float(iqm([last_third_mean(evaluations) for evaluations in per_seed]))


def new_scores(experiment: Any, reported: int, held_back: int = 0) -> list[tuple[int, float]]:
    """(k, the trial's score after its k-th evaluation) for each evaluation past the first
    `reported` that every seed has made, but the last `held_back` of them."""
    per_seed = [r.evaluations for r in experiment.runs]
    made = min(len(e) for e in per_seed) - held_back
    return [(k, trial_score([e[:k] for e in per_seed])) for k in range(reported + 1, made + 1)]


# ----------------------------------------------------------------------------- set-up


@dataclasses.dataclass
class TuneSetup:
    """What every worker of a study must agree on (stored in the study): the base config
    without its search block, the search block, the seeds of a trial, the steps of a trial."""

    config: dict[str, Any]
    search: dict[str, Any]
    seeds: list[int]
    steps: int
    eval_interval: int

    @property
    def evaluations(self) -> int:
        """Periodic evaluations in a trial."""
        return max(1, self.steps // self.eval_interval)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.parse(self.search)

    def trial_config(self, values: Mapping[str, Any], steps: int | None = None) -> dict[str, Any]:
        """The base config with a trial's values set (and `steps` as total_steps if given)."""
        data = dict(self.config)
        for key, value in values.items():
            data = set_dotted(data, key, value, where=f"{SEARCH_KEY}.{key}")
        if steps is not None:
            data["total_steps"] = steps
        return data

    def create_trial(self, folder: Path, number: int, values: Mapping[str, Any],
                     cores: int | None = None) -> Any:  # fmt: skip
        """The seeds folder of trial `number` (an Experiment, begun): its config with the
        trial's values, its seeds all at once, sharing `cores` (default: all available)."""
        from rlkit.experiments.seeds import Experiment, thread_args

        config = self.trial_config(values, steps=self.steps)
        parent = folder / f"trial_{number}"
        experiment = Experiment.create(
            parent / "experiment.yaml", parent, self.seeds, len(self.seeds),
            thread_args(config.get("torch_threads", 0), len(self.seeds), cores), self.steps,
            config_text=yaml.safe_dump(config, sort_keys=False).encode(),
        )  # fmt: skip
        experiment.begin()
        return experiment


def read_setup(
    config_path: str | Path, overrides: Sequence[str], seeds_per_trial: int, steps: int | None
) -> TuneSetup:
    """Read and check the config and its search block: every key must be one the agent has,
    and the values at the ends of each range must pass the agent's own checks."""
    from rlkit.base.config import config_from_dict
    from rlkit.experiments.run_config import RUN_KEYS, split_run_settings

    data = apply_overrides(load_yaml(config_path), overrides)
    if SEARCH_KEY not in data:
        raise ConfigError(
            f"{config_path} has no {SEARCH_KEY}: block of keys to vary, such as "
            f"`{SEARCH_KEY}: {{optimizer.lr: {{log_uniform: [1.0e-5, 1.0e-2]}}}}` (docs/guide/"
            "tuning.md)"
        )
    search = data.pop(SEARCH_KEY)
    space = SearchSpace.parse(search)
    for dimension in space.dimensions:
        top = dimension.key.split(".")[0]
        if top in NOT_SEARCHABLE or top == SEARCH_KEY:
            raise ConfigError(
                f"{SEARCH_KEY}.{dimension.key}: {top} is a setting of the run, not a "
                "hyperparameter" + ("; use --steps" if top == "total_steps" else "")
            )
    run, agent_data = split_run_settings(data)
    steps = run.total_steps if steps is None else steps
    import agents  # (torch: 2 s) once the file, its YAML and its search block have passed

    agent_cls = agents.agent_class(run.agent)
    base = config_from_dict(agent_cls.Config, agent_data, also_known=RUN_KEYS)
    if not base.eval_interval or not base.eval_episodes:
        raise ConfigError(
            "rlkit tune scores a trial by its periodic evaluations: set eval_interval > 0 "
            "and eval_episodes > 0 in the config"
        )
    if base.eval_interval > steps:
        raise ConfigError(
            f"eval_interval {base.eval_interval} is longer than a trial's {steps:,} "
            "steps: the trial would be scored by one evaluation at its end"
        )
    for dimension in space.dimensions:
        for value in dimension.extremes():
            trial_data = set_dotted(data, dimension.key, value, f"{SEARCH_KEY}.{dimension.key}")
            try:
                agent_data = split_run_settings(trial_data)[1]
                config_from_dict(agent_cls.Config, agent_data, also_known=RUN_KEYS)
            except ConfigError as error:
                message = str(error)
                if message.startswith("unknown config key"):
                    raise ConfigError(
                        f"{SEARCH_KEY}.{dimension.key}: the {run.agent} agent has no such "
                        f"key ({message})"
                    ) from None
                raise ConfigError(
                    f"{SEARCH_KEY}.{dimension.key} = {value!r} (an end of its range): {message}"
                ) from None
    seeds = [base.seed + i for i in range(seeds_per_trial)]
    return TuneSetup(data, dict(search), seeds, steps, base.eval_interval)


# ----------------------------------------------------------------------------- storage


def default_storage(study: str, runs: Path) -> str:
    return f"sqlite:///{runs / study / 'study.db'}"


def quiet_optuna() -> Any:
    """Optuna, without its info logs and its "experimental feature" notices (heartbeats)."""
    optuna = need("optuna", "tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str, heartbeat: int | None = None, retry_failed: bool = False) -> Any:
    """An Optuna RDB storage for `url` with heartbeats (so that trials of dead workers are
    found), or a one-line UserError: nothing is created when the URL cannot be reached."""
    optuna = quiet_optuna()
    need("sqlalchemy", "tune")
    url = _with_driver(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise UserError(f"--storage {url}: folder {Path(path).parent} does not exist")
        # Wait for the file's lock rather than fail at once when two workers write together.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": 10}}
    if heartbeat is not None:
        kwargs["heartbeat_interval"] = heartbeat
        kwargs["grace_period"] = 2 * heartbeat
        if retry_failed:
            kwargs["heartbeat_stale_trial_callback"] = (
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
            )
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except ImportError as error:
            raise UserError(f"--storage {url}: {error}") from None
        except Exception as error:  # sqlalchemy's errors: bad URL, refused connection, ...
            # Two workers making Optuna's tables in a new database at once: one of them loses
            # the race to CREATE TABLE ("already exists" in SQLite, a duplicate key in
            # PostgreSQL's catalog, or a second row for the schema version); the tables are there
            # for its next try.
            lost_race = re.search(
                r"already exists|duplicate key|unique constraint", str(error), re.IGNORECASE
            )
            if not lost_race or attempt == 4:
                message = f"--storage {hide_password(url)}: {first_line(error)}"
                raise UserError(message) from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """postgresql:// names SQLAlchemy's default driver, psycopg2; rlkit's extra installs
    psycopg (3), so use it unless psycopg2 is there."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return (text.splitlines() or [type(error).__name__])[0]


def make_sampler(name: str) -> Any:
    optuna = need("optuna", "tune")
    if name == "tpe":
        return optuna.samplers.TPESampler()
    return optuna.samplers.RandomSampler()  # the notes' advice: random search


def make_pruner(name: str, evaluations: int) -> Any:
    """Median pruning (as the RL Zoo): once 5 trials have ended, stop a trial whose running
    score falls below the median of the others' at the same evaluation; never in the first
    third of the run, where every score is still noise."""
    optuna = need("optuna", "tune")
    if name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, evaluations // 3))


def load_or_create_study(
    name: str, storage: Any, setup: TuneSetup, sampler: Any, pruner: Any
) -> Any:
    """The study `name` in `storage`, made now or joined; a study made from another config or
    search block is refused."""
    optuna = quiet_optuna()
    wanted = json_safe(dataclasses.asdict(setup))
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner,
            direction="maximize", load_if_exists=True,
        )  # fmt: skip
    except Exception as error:
        raise UserError(f"cannot open study {name}: {first_line(error)}") from None
    have = study.user_attrs.get(STUDY_SETUP)
    if have is None:
        study.set_user_attr(STUDY_SETUP, wanted)
    elif have != wanted:
        differs = [key for key in wanted if have.get(key) != wanted[key]]
        raise UserError(
            f"study {name} was started with another {' and '.join(differs)}; give the same "
            f"config, --set, --seeds-per-trial and --steps to join it, or another --study"
        )
    return study


def json_safe(data: Any) -> Any:
    """Plain JSON data as the storage gives it back (tuples become lists)."""
    import json

    return json.loads(json.dumps(data))


def load_study(name: str, storage: Any) -> Any:
    optuna = quiet_optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UserError(f"no study named {name} in the storage") from None


# ----------------------------------------------------------------------------- budget


def format_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={short_value(value)}" for key, value in values.items())


def short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


# ----------------------------------------------------------------------------- report
