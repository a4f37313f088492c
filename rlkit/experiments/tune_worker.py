"""A worker of `rlkit tune`: runs trials of a study here, a few at a time, each trial K seeds of
`rlkit train` in their own processes; reports each evaluation to Optuna, prunes, keeps its
trials alive with heartbeats, and ends cleanly on Ctrl-C or SIGTERM (rlkit.experiments.tune
has the setup, the storage and the scores)."""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from rlkit.base.errors import UserError
from rlkit.experiments.seeds import available_cores, stop_signals
from rlkit.experiments.tune import (
    DETAIL,
    OUTCOME,
    TuneSetup,
    format_values,
    new_scores,
    trial_score,
)


def counts_toward_budget(trial: Any) -> bool:
    """Trials that ran, run or will run to an end; not those lost with their worker (stale),
    stopped by Ctrl-C, or started in excess by a race at the end of the budget."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get(OUTCOME) == "failed"
    return True


@dataclasses.dataclass
class TrialRun:
    """A trial of this worker: its Optuna trial, its seeds and how far it is scored."""

    trial: Any
    experiment: Any
    reported: int = 0
    score: float | None = None
    pruned: bool = False
    started: float = dataclasses.field(default_factory=time.monotonic)


class Worker:
    """One `rlkit tune` process: runs up to `jobs` trials at a time until the study holds
    `trials` trials that count toward the budget (see `counts_toward_budget`)."""

    def __init__(self, study: Any, setup: TuneSetup, folder: Path, trials: int, jobs: int,
                 heartbeat: int | None, log: Any = None) -> None:  # fmt: skip
        self.study = study
        self.setup = setup
        self.space = setup.space
        self.folder = folder
        self.trials = trials
        self.jobs = jobs
        self.heartbeat = heartbeat
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.active: list[TrialRun] = []
        self.stop_requested = 0
        self.last_beat = 0.0
        self.cores_per_trial = max(1, available_cores() // jobs)

    def request_stop(self) -> None:
        """Ctrl-C: no new trials; the seeds of the running ones stop and save."""
        self.stop_requested += 1
        if self.stop_requested == 1:
            self.log("rlkit: stopping; the running trials end as interrupted (Ctrl-C again "
                     "to abort)")  # fmt: skip
        for run in self.active:
            run.experiment.request_stop()

    def run(self) -> int:
        """Run trials until the budget is spent; 130 if stopped by Ctrl-C, else 0."""
        from rlkit.base.errors import EXIT_INTERRUPTED

        with stop_signals(self.request_stop):
            waiting_said = False
            while True:
                for run in list(self.active):
                    self._watch(run)
                self._beat()
                while not self.stop_requested and len(self.active) < self.jobs:
                    run = self._next_trial()
                    if run is None:
                        break
                    self.active.append(run)
                if not self.active:
                    if self.stop_requested or not self._others_running():
                        break
                    if not waiting_said:
                        waiting_said = True
                        self.log("rlkit: the budget is taken; waiting for the trials of other "
                                 "workers to end (or go stale)")  # fmt: skip
                    time.sleep(min(5.0, (self.heartbeat or 5) / 2))
                    continue
                waiting_said = False
                time.sleep(0.1)
        return EXIT_INTERRUPTED if self.stop_requested else 0

    # ---------------------------------------------------------------- trials

    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def _others_running(self) -> bool:
        """Trials of other workers still running, when this worker's heartbeat can tell a
        dead worker's: wait for them, since one may go stale and free its slot."""
        from optuna.trial import TrialState

        if self.heartbeat is None:
            return False
        return any(t.state == TrialState.RUNNING for t in self._trials())

    def _next_trial(self) -> TrialRun | None:
        """Ask Optuna for the next trial (a queued retry first), or None if the budget is
        taken."""
        import optuna
        from optuna.trial import TrialState

        optuna.storages.fail_stale_trials(self.study)
        trials = self._trials()
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and sum(map(counts_toward_budget, trials)) >= self.trials:
            return None
        with warnings.catch_warnings():  # ask/tell with heartbeats recorded here, by design
            warnings.simplefilter("ignore")
            trial = self.study.ask()
        self._beat_trial(trial)
        retry = bool(trial._fixed_params)  # a queued retry of a lost trial: already counted
        if not retry:
            before = [t for t in self._trials() if t.number < trial.number]
            if sum(map(counts_toward_budget, before)) >= self.trials:
                # Another worker took the last slot between the count and the ask.
                trial.set_user_attr(OUTCOME, "surplus")
                self.study.tell(trial, state=TrialState.FAIL)
                return None
        try:
            values = self.space.suggest(trial)
            experiment = self.setup.create_trial(
                self.folder, trial.number, values, self.cores_per_trial
            )
        except UserError as error:
            trial.set_user_attr(OUTCOME, "failed")
            trial.set_user_attr(DETAIL, str(error))
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"rlkit: trial {trial.number} FAILED: {error}")
            return None
        trial.set_user_attr("folder", str(experiment.parent))
        seeds = ", ".join(map(str, self.setup.seeds))
        self.log(f"rlkit: trial {trial.number} started: {format_values(values)} "
                 f"(seeds {seeds}; {experiment.parent})")  # fmt: skip
        return TrialRun(trial, experiment)

    def _watch(self, run: TrialRun) -> None:
        """Poll a trial's seeds: report each evaluation all of them have made; prune; end."""
        experiment = run.experiment
        going = experiment.poll(len(self.setup.seeds))
        scores = [] if run.pruned else new_scores(experiment, run.reported)
        for k, score in scores:
            run.reported, run.score = k, score
            run.trial.report(score, k)
            if run.trial.should_prune() and not self.stop_requested:
                run.pruned = True
                experiment.request_stop()
                break
        if not going:
            self._end(run)

    def _end(self, run: TrialRun) -> None:
        from optuna.trial import TrialState

        self.active.remove(run)
        trial, experiment = run.trial, run.experiment
        minutes = (time.monotonic() - run.started) / 60
        failure = experiment.failure()
        if run.pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            self.log(f"rlkit: trial {trial.number} pruned at evaluation {run.reported} "
                     f"(score {run.score:.2f}; {minutes:.1f} min)")  # fmt: skip
        elif self.stop_requested:
            trial.set_user_attr(OUTCOME, "interrupted")
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"rlkit: trial {trial.number} interrupted")
        elif failure is not None:
            trial.set_user_attr(OUTCOME, "failed")
            trial.set_user_attr(DETAIL, failure)
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"rlkit: trial {trial.number} FAILED: {failure}")
        else:
            per_seed = [r.evaluations for r in experiment.runs]
            score = trial_score(per_seed)
            self.study.tell(trial, score)
            best = self.study.best_trial
            self.log(f"rlkit: trial {trial.number} scored {score:.2f} ({minutes:.1f} min); "
                     f"best so far: trial {best.number}, {best.value:.2f}")  # fmt: skip

    def _beat(self) -> None:
        if self.heartbeat is None or time.monotonic() - self.last_beat < self.heartbeat / 2:
            return
        self.last_beat = time.monotonic()
        for run in self.active:
            self._beat_trial(run.trial)

    def _beat_trial(self, trial: Any) -> None:
        if self.heartbeat is not None:
            self.study._storage.record_heartbeat(trial._trial_id)
