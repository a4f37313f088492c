"""Issue 15's search, end to end, as a user would run it:

    1. two `rlkit tune` processes, started together, sharing one SQLite study: a random search
       of --trials trials over the `search:` block of the config (PPO CartPole: the learning
       rate and the network width), --seeds-per-trial seeds of --steps steps per trial;
    2. the study's best.yaml retrained from scratch with `rlkit train --seeds` on fresh seeds
       (never used in the search) for the config's own budget (100,000 steps), and reported
       with `rlkit report` (IQM of the final agents' greedy test returns, test seeds).

Prints the commands, the wall times, the trials, the best values and the retrained scores.

    .venv/bin/python benchmarks/tune_search.py [--out runs/bench_tune] [--trials 12]
        [--seeds-per-trial 2] [--steps 30000] [--retrain-seeds 101-105]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import learning  # noqa: F401  (puts the repository on sys.path)
import optuna

from rlkit.base.device import describe_cpu
from rlkit.experiments.seeds import parse_seeds

ROOT = Path(__file__).resolve().parents[1]
RLKIT = [sys.executable, "-m", "rlkit.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "ppo_cartpole.yaml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_tune"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds-per-trial", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--retrain-seeds", default="101-105")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"CPU: {describe_cpu()}; Optuna {optuna.__version__}")

    tune = [*RLKIT, "tune", args.config, "--trials", str(args.trials), "--seeds-per-trial",
            str(args.seeds_per_trial), "--steps", str(args.steps), "--study", "search",
            "--jobs", "1"]  # fmt: skip
    print(f"search ({args.workers} processes, in {out}):\n  {' '.join(tune[2:])}")
    start = time.perf_counter()
    workers = []
    for i in range(args.workers):
        log = open(out / f"worker_{i}.log", "w")  # noqa: SIM115 (closed with the process)
        workers.append((subprocess.Popen(tune, cwd=out, stderr=log, stdout=log), log))
    for worker, log in workers:
        worker.wait()
        log.close()
        if worker.returncode != 0:
            sys.exit(f"a worker failed (exit {worker.returncode}); see {log.name}")
    search_seconds = time.perf_counter() - start

    storage = f"sqlite:///{out}/runs/search/study.db"
    study = optuna.load_study(study_name="search", storage=storage)
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    counts = ", ".join(f"{name} {states.count(name)}" for name in sorted(set(states)))
    print(f"\nsearch wall time: {search_seconds / 60:.1f} min; trials by state: {counts}")
    print("\n| trial | state | score | optimizer.lr | network.hidden_sizes | evaluations |")
    print("|---|---|---|---|---|---|")
    for t in trials:
        score = "" if t.value is None else f"{t.value:.1f}"
        lr, width = t.params.get("optimizer.lr", 0), t.params.get("network.hidden_sizes")
        print(f"| {t.number} | {t.state.name} | {score} | {lr:.2e} | {width} "
              f"| {len(t.intermediate_values)} |")  # fmt: skip
    best = study.best_trial
    print(f"\nbest: trial {best.number}, score {best.value:.1f}, {best.params}")

    seeds = parse_seeds(args.retrain_seeds)
    retrain = [*RLKIT, "train", str(out / "runs" / "search" / "best.yaml"), "--seeds",
               args.retrain_seeds, "--run-dir", str(out / "retrain"), "--no-progress"]  # fmt: skip
    print(f"\nretrain on fresh seeds {args.retrain_seeds}:\n  {' '.join(retrain[2:])}")
    start = time.perf_counter()
    subprocess.run(retrain, cwd=out, check=True, capture_output=True)
    retrain_seconds = time.perf_counter() - start
    summary = json.loads((out / "retrain" / "summary.json").read_text())
    print(f"retrain wall time: {retrain_seconds / 60:.1f} min for {len(seeds)} seeds")
    (config,) = summary["configs"]
    for which in ("final", "best"):
        stats = config[which]
        per_seed = ", ".join(f"{s[which]:.1f}" for s in config["seeds"])
        low, high = stats["iqm_ci95"]
        print(f"{which} agents, greedy test return: IQM {stats['iqm']:.1f} (95% CI {low:.1f} .. "
              f"{high:.1f}), min {stats['min']:.1f}, {stats['reached']}/{stats['n']} >= "
              f"{stats['threshold']:g}; per seed: {per_seed}")  # fmt: skip


if __name__ == "__main__":
    main()
