"""`rlkit tune ... --ray ADDRESS`: the trials of a study as Ray Tune trials on a Ray cluster.

Ray schedules the trials, one per worker slot (one CPU each), and its OptunaSearch draws the
values from the same search space into the same Optuna study and storage as the local workers
(so `rlkit tune --report` and best.yaml work alike). A trial runs its seeds as `rlkit train`
processes on the node that Ray gave it, exactly as a local trial does, and reports its running
score after each evaluation; with --pruner median, Ray's median stopping rule stops the trials
below the median (the Optuna trial is then marked pruned).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray.tune.schedulers import MedianStoppingRule, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from rlkit.base.errors import EXIT_INTERRUPTED, UserError
from rlkit.experiments.search import SearchSpace
from rlkit.experiments.tune import (
    OUTCOME,
    TuneSetup,
    format_values,
    new_scores,
    trial_score,
)
from rlkit.experiments.tune_worker import counts_toward_budget

TRIAL_NUMBER = "__rlkit_trial"  # the Optuna trial number, added to a Ray trial's config
METRIC = "score"


def ray_trial(config: dict[str, Any], setup: dict[str, Any], folder: str) -> None:
    """One Ray trial (runs in a Ray worker, on one CPU slot): train the seeds, report after
    each evaluation."""
    from ray import tune as ray_tune

    tune_setup = TuneSetup(**setup)
    number = config[TRIAL_NUMBER]
    values = tune_setup.space.values_of(config)
    parent = Path(folder) / f"trial_{number}"
    if parent.exists():  # Ray restarts a trial whose node was lost: it starts over
        shutil.rmtree(parent)
    experiment = tune_setup.create_trial(Path(folder), number, values, cores=1)
    reported = 0
    while experiment.poll(len(tune_setup.seeds)):
        for k, score in new_scores(experiment, reported, held_back=1):  # the last: as final
            ray_tune.report({METRIC: score, "evaluation": k, "final": False})
            reported = k
        time.sleep(0.1)
    failure = experiment.failure()
    if failure is not None:
        raise RuntimeError(f"trial {number} failed: {failure}")
    per_seed = [r.evaluations for r in experiment.runs]
    score = trial_score(per_seed)
    ray_tune.report({METRIC: score, "evaluation": min(map(len, per_seed)), "final": True})


class RlkitOptunaSearch(OptunaSearch):
    """OptunaSearch that tells each Ray trial its Optuna trial number (its folder), and marks
    a trial that Ray stopped early as pruned, not complete."""

    rlkit_folder = Path("runs")  # the study's folder

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is not None:
            ot_trial = self._ot_trials[trial_id]
            config[TRIAL_NUMBER] = ot_trial.number
            ot_trial.set_user_attr("folder", str(self.rlkit_folder / f"trial_{ot_trial.number}"))
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:  # fmt: skip
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if not error and not (result or {}).get("final"):
            self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        if error:
            self._ot_trials[trial_id].set_user_attr(OUTCOME, "failed")
        super().on_trial_complete(trial_id, result, error)


class MedianStopping(MedianStoppingRule):
    """Ray's median stopping rule, except that a trial is never paused to let others run while
    there are too few results to compare (a paused function trial starts over)."""

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        return TrialScheduler.CONTINUE


class DefineByRun:
    """The search space as OptunaSearch's define-by-run function (a class, so that Ray can
    pickle the searcher into its experiment state)."""

    def __init__(self, search: dict[str, Any]) -> None:
        self.search = search

    def __call__(self, trial: Any) -> None:
        SearchSpace.parse(self.search).suggest(trial)  # Optuna records what is suggested


def run_on_ray(address: str, study: Any, setup: TuneSetup, folder: Path, trials: int,
               pruner: str) -> int:  # fmt: skip
    """Run the study's remaining trials on the Ray cluster at `address`."""
    import dataclasses
    import functools
    import logging

    import ray
    from ray import tune as ray_tune

    remaining = trials - sum(map(counts_toward_budget, study.get_trials(deepcopy=False)))
    if remaining <= 0:
        print(f"rlkit: study {study.study_name} already has {trials} trials", flush=True)
        return 0
    # An env id "module:Name-v0" whose module the driver found in its own folder: the trials'
    # processes, started by Ray's workers in Ray's folders, look there too (the study's folder
    # is shared between the nodes already).
    import envs

    folder_of_env = envs.env_module_folder(setup.config.get("env", ""))
    runtime_env = None
    if folder_of_env is not None:
        paths = [folder_of_env, *filter(None, [os.environ.get("PYTHONPATH")])]
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
    try:
        ray.init(
            address=address, logging_level=logging.WARNING, log_to_driver=False,
            runtime_env=runtime_env,
        )  # fmt: skip
    except Exception as error:  # ConnectionError and Ray's own
        raise UserError(f"--ray {address}: cannot connect: {str(error).splitlines()[0]}") from None
    try:
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        space = setup.space
        searcher = RlkitOptunaSearch(
            space=DefineByRun(setup.search),
            metric=METRIC, mode="max", sampler=study.sampler,
            study_name=study.study_name, storage=study._storage,
        )  # fmt: skip
        searcher.rlkit_folder = folder
        scheduler = None
        if pruner == "median":
            scheduler = MedianStopping(
                time_attr="evaluation", metric=METRIC, mode="max",
                grace_period=max(1, setup.evaluations // 3), min_samples_required=5,
            )  # fmt: skip
        trainable = ray_tune.with_resources(
            functools.partial(
                ray_trial, setup=dataclasses.asdict(setup), folder=str(folder.resolve())
            ),
            {"cpu": 1},
        )
        tuner = ray_tune.Tuner(
            trainable,
            tune_config=ray_tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                max_concurrent_trials=slots,
            ),
            run_config=ray_tune.RunConfig(
                name="ray", storage_path=str(folder.resolve()), verbose=0,
            ),
        )  # fmt: skip
        print(f"rlkit: {remaining} trials on Ray at {address}, {slots} at a time", flush=True)
        results = tuner.fit()
        for result in results:
            if result.error is None and result.metrics:
                values = space.values_of(result.config)
                print(f"rlkit: trial {result.config[TRIAL_NUMBER]}: {format_values(values)}: "
                      f"{result.metrics.get(METRIC, float('nan')):.2f}", flush=True)  # fmt: skip
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        ray.shutdown()
    return 0
