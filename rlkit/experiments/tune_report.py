"""The report of a study of `rlkit tune`: best.yaml (the best trial's config, ready for
`rlkit train`), trials.csv, and Optuna's plots where matplotlib is installed."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import yaml

from rlkit.base.errors import UserError
from rlkit.base.files import atomic_write_bytes
from rlkit.experiments.tune import (
    DETAIL,
    OUTCOME,
    STUDY_SETUP,
    TuneSetup,
    first_line,
    format_values,
    short_value,
)


def write_report(study: Any, folder: Path, log: Any = print) -> None:
    """best.yaml (a config ready to train, the best values filled in), trials.csv, and
    Optuna's optimization history and parameter importances as PNGs, in `folder`."""
    from optuna.trial import TrialState

    if STUDY_SETUP not in study.user_attrs:
        raise UserError(f"study {study.study_name} was not made by rlkit tune: no report")
    setup = TuneSetup(**study.user_attrs[STUDY_SETUP])
    space = setup.space
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    keys = [d.key for d in space.dimensions]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "state", "score", *keys, "evaluations", "minutes", "folder",
                     "note"])  # fmt: skip
    for t in trials:
        values = (
            space.values_of(t.params)
            if set(t.params) >= {d.param_name for d in space.dimensions}
            else {}
        )
        minutes = (
            f"{(t.datetime_complete - t.datetime_start).total_seconds() / 60:.2f}"
            if t.datetime_complete and t.datetime_start
            else ""
        )
        writer.writerow([
            t.number, t.state.name, "" if t.value is None else f"{t.value:.4f}",
            *[short_value(values[k]) if k in values else "" for k in keys],
            len(t.intermediate_values), minutes, t.user_attrs.get("folder", ""),
            t.user_attrs.get(OUTCOME, "") + (
                f": {t.user_attrs[DETAIL]}" if DETAIL in t.user_attrs else ""
            ),
        ])  # fmt: skip
    atomic_write_bytes(folder / "trials.csv", out.getvalue().encode())
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    log(f"rlkit: study {study.study_name}: {len(trials)} trials ({summary}); "
        f"{folder / 'trials.csv'}")  # fmt: skip
    if not complete:
        log("rlkit: no trial has completed yet: no best.yaml")
        return
    best = max(complete, key=lambda t: t.value)
    values = space.values_of(best.params)
    config = setup.trial_config(values)
    header = (
        f"# The best trial of rlkit tune study {study.study_name}: trial {best.number}, score "
        f"{best.value:.2f}\n# (IQM over seeds {setup.seeds} of the mean validation return over "
        f"the last third of {setup.steps:,}-step runs).\n# Its values: "
        f"{format_values(values)}\n"
    )
    atomic_write_bytes(
        folder / "best.yaml", (header + yaml.safe_dump(config, sort_keys=False)).encode()
    )
    log(f"rlkit: best: trial {best.number}, score {best.value:.2f}: {format_values(values)}; "
        f"train it with: rlkit train {folder / 'best.yaml'}")  # fmt: skip
    _plots(study, folder, len(complete), log)


def _plots(study: Any, folder: Path, complete: int, log: Any) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots
    except ImportError:
        log("rlkit: plots skipped: pip install 'rlkit[plot]'")
        return
    with warnings.catch_warnings():  # "experimental" notices of Optuna's matplotlib plots
        warnings.simplefilter("ignore")
        plots = [("optimization_history.png", optuna_plots.plot_optimization_history)]
        if complete >= 2 and len(study.best_trial.params) >= 1:
            plots.append(("param_importances.png", optuna_plots.plot_param_importances))
        for name, plot in plots:
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:  # too few trials for importances
                log(f"rlkit: {name} skipped: {first_line(error)}")
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            plt.close(figure)
            atomic_write_bytes(folder / name, buffer.getvalue())
    log(f"rlkit: plots in {folder}")
