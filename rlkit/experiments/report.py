"""`rlkit report DIR [DIR ...]`: what runs over seeds say, one DIR per config.

Read from each run folder's TensorBoard event files (tensorboard's own reader): the periodic
evaluations (`eval/mean_return`, validation seeds) as learning curves, and the test of the
final and the best agent after training (`test/mean_return`, `test_best/mean_return`, test
seeds). Written to the output folder:

- summary.json, summary.md: per seed, the final and best agents' test returns; across seeds
  mean +/- std, median, IQM with its 95% stratified-bootstrap CI (rlkit.math.stats), and
  k/N seeds >= the env's reward threshold where it has one;
- curves.csv: per config, the IQM of the evaluation return and its 95% CI against env steps
  and against wall time (what curves.png draws);
- curves.png (with the `plot` extra: matplotlib).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlkit.base.config import load_yaml
from rlkit.base.errors import EnvError, UserError
from rlkit.base.files import atomic_write_bytes
from rlkit.math.stats import iqm, stratified_bootstrap_ci, summarize

EVAL_TAG = "eval/mean_return"
CURVE_REPS = 2_000  # bootstrap resamples per point of a curve (the summary uses 10,000)
TIME_POINTS = 100


@dataclass
class RunData:
    folder: Path
    seed: int
    env: str
    agent: str
    steps: np.ndarray  # evaluation steps
    seconds: np.ndarray  # wall time of each evaluation since the run's first event
    returns: np.ndarray  # evaluation mean returns
    final: float | None  # test/mean_return of the final agent
    best: float | None  # test_best/mean_return


@dataclass
class Group:
    """The runs of one config (one DIR)."""

    label: str
    folder: Path
    runs: list[RunData] = field(default_factory=list)

    @property
    def envs(self) -> list[str]:
        return sorted({r.env for r in self.runs})


def find_runs(folder: Path) -> list[Path]:
    """The run folders in `folder`: itself if it is one, else its subfolders that are."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    if (folder / "config.yaml").is_file():
        return [folder]
    runs = [p for p in sorted(folder.iterdir()) if (p / "config.yaml").is_file()]
    if not runs:
        raise UserError(f"no runs in {folder} (no run folder with a config.yaml in it)")
    return runs


def read_run(folder: Path) -> RunData:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_yaml(folder / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        accumulator.Reload()
    scalars = {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}
    start = min((events[0].wall_time for events in scalars.values() if events), default=0.0)
    events = scalars.get(EVAL_TAG, [])

    def last(tag: str) -> float | None:
        return float(scalars[tag][-1].value) if scalars.get(tag) else None

    return RunData(
        folder=folder,
        seed=int(config.get("seed", 0)),
        env=str(config.get("env", "?")),
        agent=str(config.get("agent", "?")),
        steps=np.array([e.step for e in events], dtype=np.int64),
        seconds=np.array([e.wall_time - start for e in events], dtype=np.float64),
        returns=np.array([e.value for e in events], dtype=np.float64),
        final=last("test/mean_return"),
        best=last("test_best/mean_return"),
    )


def reward_threshold(env_id: str) -> float | None:
    import envs  # (registers rlkit's envs)

    try:
        return envs.env_spec(env_id).reward_threshold
    except EnvError:
        return None


def carried_forward(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The latest y at or before each grid point (NaN before the first x): a run's score at
    any step is that of its latest evaluation. After a run's last evaluation its value is
    carried on (its final agent; runs stopped early by stop_at_return end sooner)."""
    if not len(xs):
        return np.full(len(grid), np.nan)
    index = np.searchsorted(xs, grid, side="right") - 1
    return np.where(index >= 0, ys[np.clip(index, 0, None)], np.nan)


def curve(runs: list[RunData], axis: str, grid: np.ndarray) -> dict[str, np.ndarray]:
    """IQM over runs and its 95% stratified-bootstrap CI at each grid point (strata: envs)."""
    table = np.stack([
        carried_forward(getattr(r, axis), r.returns, grid) for r in runs
    ])  # fmt: skip
    env_of_run = np.array([r.env for r in runs])
    env_masks = [env_of_run == env for env in np.unique(env_of_run)]
    centre, low, high = (np.full(len(grid), np.nan) for _ in range(3))
    count = np.zeros(len(grid), dtype=np.int64)
    for j, column in enumerate(table.T):
        present = ~np.isnan(column)
        count[j] = present.sum()
        if count[j]:
            centre[j] = iqm(column[present])
            strata = [column[present & mask] for mask in env_masks]
            low[j], high[j] = stratified_bootstrap_ci(strata, reps=CURVE_REPS, seed=j)
    return {"x": grid, "iqm": centre, "low": low, "high": high, "runs": count, "table": table}


def load_groups(folders: list[Path], allow_mixed: bool) -> list[Group]:
    groups = []
    labels: dict[str, int] = {}
    for folder in folders:
        label = folder.resolve().name
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label} ({labels[label]})"
        group = Group(label, folder, [read_run(run) for run in find_runs(folder)])
        groups.append(group)
    all_envs = sorted({env for g in groups for env in g.envs})
    if len(all_envs) > 1 and not allow_mixed:
        raise UserError(
            f"runs of different envs ({', '.join(all_envs)}) in one report; their returns are "
            "not on one scale (report them separately, or pass --allow-mixed)"
        )
    return groups


def summarize_group(group: Group) -> dict:
    envs = group.envs
    threshold = reward_threshold(envs[0]) if len(envs) == 1 else None
    seeds = [
        {"seed": r.seed, "env": r.env, "folder": str(r.folder), "final": r.final,
         "best": r.best, "last_eval_step": int(r.steps[-1]) if len(r.steps) else None}
        for r in sorted(group.runs, key=lambda r: r.seed)
    ]  # fmt: skip
    summary = {"label": group.label, "folder": str(group.folder), "envs": envs,
               "agent": sorted({r.agent for r in group.runs}), "reward_threshold": threshold,
               "seeds": seeds}  # fmt: skip
    for which in ("final", "best"):
        scores = [s[which] for s in seeds if s[which] is not None]
        summary[which] = summarize(scores, threshold) if scores else None
        missing = len(seeds) - len(scores)
        if missing:
            summary[f"{which}_missing"] = missing  # runs not finished, or no test episodes
    return summary


def _fmt(value: float | None) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
    )


def summary_markdown(summaries: list[dict]) -> str:
    lines = ["# Results over seeds", ""]
    lines.append(
        "Test returns (greedy, on the test seeds) of each seed's final agent and of its best "
        "agent (highest validation mean); IQM with its 95% stratified-bootstrap CI."
    )
    for s in summaries:
        lines += ["", f"## {s['label']}: {', '.join(s['agent'])} on {', '.join(s['envs'])}", ""]
        lines += ["| agent | n | mean +/- std | median | IQM [95% CI] | min | reached |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for which in ("final", "best"):
            t = s[which]
            if t is None:
                lines.append(f"| {which} | 0 | - | - | - | - | - |")
                continue
            reached = f"{t['reached']}/{t['n']} >= {t['threshold']:g}" if "reached" in t else "-"
            lines.append(
                f"| {which} | {t['n']} | {t['mean']:.1f} +/- {t['std']:.1f} | {t['median']:.1f} "
                f"| {t['iqm']:.1f} [{t['iqm_ci95'][0]:.1f}, {t['iqm_ci95'][1]:.1f}] "
                f"| {t['min']:.1f} | {reached} |"
            )
        lines += [
            "",
            "| seed | final | best | last evaluation step |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for seed in s["seeds"]:
            step = "-" if seed["last_eval_step"] is None else f"{seed['last_eval_step']:,}"
            lines.append(
                f"| {seed['seed']} | {_fmt(seed['final'])} | {_fmt(seed['best'])} | {step} |"
            )
    return "\n".join(lines) + "\n"


def compute_curves(groups: list[Group]) -> list[tuple[Group, dict, dict]]:
    """Per group: its curve against env steps and against wall time."""
    results = []
    for group in groups:
        runs = [r for r in group.runs if len(r.steps)]
        if not runs:
            continue
        steps = np.unique(np.concatenate([r.steps for r in runs]))
        horizon = max(float(r.seconds[-1]) for r in runs)
        seconds = np.linspace(0.0, horizon, TIME_POINTS)
        results.append((group, curve(runs, "steps", steps), curve(runs, "seconds", seconds)))
    return results


def curves_csv(curves: list[tuple[Group, dict, dict]]) -> str:
    rows = ["config,axis,x,runs,iqm,ci95_low,ci95_high"]
    for group, by_steps, by_time in curves:
        for axis, c in (("env_steps", by_steps), ("wall_seconds", by_time)):
            for x, n, m, lo, hi in zip(c["x"], c["runs"], c["iqm"], c["low"], c["high"],
                                       strict=True):  # fmt: skip
                rows.append(f"{group.label},{axis},{x:g},{n},{m:.4f},{lo:.4f},{hi:.4f}")
    return "\n".join(rows) + "\n"


def plot_curves(curves: list[tuple[Group, dict, dict]], path: Path, per_seed: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    thresholds = set()
    for k, (group, by_steps, by_time) in enumerate(curves):
        color = colors[k % len(colors)]
        n = len([r for r in group.runs if len(r.steps)])
        for ax, c in ((axes[0], by_steps), (axes[1], by_time)):
            if per_seed:
                for row in c["table"]:
                    ax.plot(c["x"], row, color=color, linewidth=0.5, alpha=0.35)
            ax.fill_between(c["x"], c["low"], c["high"], color=color, alpha=0.25, linewidth=0)
            ax.plot(c["x"], c["iqm"], color=color, linewidth=2,
                    label=f"{group.label} (IQM of {n} seeds, 95% CI)")  # fmt: skip
        if len(group.envs) == 1:
            thresholds.add(reward_threshold(group.envs[0]))
    for ax in axes:
        for threshold in thresholds - {None}:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.set_ylabel("evaluation return (greedy)")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("wall time since the first episode (s)")
    envs = sorted({env for group, _, _ in curves for env in group.envs})
    fig.suptitle(f"{', '.join(envs)}: evaluation return over seeds")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png")
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())


def write_report(
    folders: list[Path], out: Path, allow_mixed: bool = False, per_seed: bool = False
) -> list[Path]:
    """Summary, curves and plot of the runs in `folders` (one per config), written to `out`;
    returns the files written."""
    import sys

    groups = load_groups(folders, allow_mixed)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize_group(g) for g in groups]
    written = []
    for name, text in (
        ("summary.json", json.dumps({"configs": summaries}, indent=2) + "\n"),
        ("summary.md", summary_markdown(summaries)),
    ):
        atomic_write_bytes(out / name, text.encode())
        written.append(out / name)
    curves = compute_curves(groups)
    if curves:
        atomic_write_bytes(out / "curves.csv", curves_csv(curves).encode())
        written.append(out / "curves.csv")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "rlkit: no curves.png: plotting needs matplotlib: pip install 'rlkit[plot]'",
                file=sys.stderr,
            )
        else:
            plot_curves(curves, out / "curves.png", per_seed)
            written.append(out / "curves.png")
    else:
        print("rlkit: no evaluation curves (the runs had eval_interval 0)", file=sys.stderr)
    for s in summaries:
        final = s["final"]
        if final is not None:
            reached = (
                f", {final['reached']}/{final['n']} >= {final['threshold']:g}"
                if "reached" in final
                else ""
            )
            print(
                f"rlkit: {s['label']}: final agents IQM {final['iqm']:.1f} "
                f"[{final['iqm_ci95'][0]:.1f}, {final['iqm_ci95'][1]:.1f}] over {final['n']} "
                f"seeds{reached}",
                file=sys.stderr,
            )
    print(f"rlkit: report in {out}: {', '.join(p.name for p in written)}", file=sys.stderr)
    return written
