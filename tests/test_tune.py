"""`rlkit tune` through the real CLI in real processes: two workers sharing one SQLite study,
a worker SIGKILLed mid-trial (its trial fails or is retried, the database stays whole, the
study still ends with --trials trials), the report, and one-line errors for bad input. The
PostgreSQL and Ray paths are in test_tune_backends.py."""

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rlkit.experiments.run_config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ppo_cartpole.yaml"
# Trials of 1,024 steps with 4 evaluations: a few seconds each, most of it starting Python.
TINY = ["--steps", "1024", "--set", "eval_interval=256", "--set", "eval_episodes=2",
        "--set", "checkpoint_interval=0", "--set", "n_epochs=4"]  # fmt: skip


def tune_command(*args) -> list[str]:
    return [sys.executable, "-m", "rlkit.cli", "tune", *map(str, args)]


def _tune(cwd, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        tune_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _worker(cwd, *args) -> subprocess.Popen:
    return subprocess.Popen(
        tune_command(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _study(cwd: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/runs/{name}/study.db")


def _one_line_error(result, words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert words in lines[0], lines[0]


def test_two_workers_share_one_sqlite_study(tmp_path):
    args = [CONFIG, "--trials", 4, "--seeds-per-trial", 2, "--jobs", 1, "--study", "shared",
            "--pruner", "none", *TINY]  # fmt: skip
    workers = [_worker(tmp_path, *args) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err
    # Both workers ran trials (they shared the study), and together exactly 4.
    started = [err.count("started:") for _, err in outputs]
    assert all(n >= 1 for n in started) and sum(started) == 4, started
    study = _study(tmp_path, "shared")
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    folders = {t.user_attrs["folder"] for t in trials}
    assert folders == {f"runs/shared/trial_{n}" for n in range(4)}
    for n in range(4):
        trial_dir = tmp_path / "runs" / "shared" / f"trial_{n}"
        for seed in (1, 2):
            assert (trial_dir / f"seed_{seed}" / "agent.safetensors").is_file()
        # The trial's config holds its values.
        config = yaml.safe_load((trial_dir / "experiment.yaml").read_text())
        assert config["optimizer"]["lr"] == pytest.approx(trials[n].params["optimizer.lr"])
        assert config["total_steps"] == 1024 and "search" not in config
        assert len(trials[n].intermediate_values) == 4  # evaluations at 256 .. 1,024 steps
    # The report: best.yaml is a config ready to train, with the best values.
    out = tmp_path / "runs" / "shared"
    best = study.best_trial
    run, agent_config = load_run_config(out / "best.yaml")
    assert agent_config.optimizer.lr == pytest.approx(best.params["optimizer.lr"])
    assert agent_config.network.hidden_sizes == yaml.safe_load(best.params["network.hidden_sizes"])
    assert run.total_steps == 100_000  # the config's own budget, not the trials'
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,score,optimizer.lr,network.hidden_sizes")
    assert len(rows) == 5
    for png in ("optimization_history.png", "param_importances.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _running_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # tables not made yet
        return 0


def _seed_processes(folder: Path) -> list[str]:
    """Command lines of live processes training in `folder` (the seeds of a trial)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in command and "rlkit.cli train" in command:
                found.append(command)
    return found


LONGER = ["--steps", "4096", "--set", "eval_interval=1024", "--set", "eval_episodes=2",
          "--set", "checkpoint_interval=0", "--set", "n_epochs=4"]  # fmt: skip


def _one_seed_trials(study: str, trials: int, *more, steps: int = 4096) -> list:
    """Trials of one seed, `steps` steps: long enough to be killed in the middle of one."""
    return [CONFIG, "--trials", trials, "--seeds-per-trial", 1, "--jobs", 1, "--study", study,
            "--pruner", "none", *more, *LONGER, "--steps", steps]  # fmt: skip


def _start_worker(tmp_path, args, running: int) -> subprocess.Popen:
    """A worker, once the study has `running` trials running (its own among them)."""
    worker = _worker(tmp_path, *args)
    db = tmp_path / "runs" / args[args.index("--study") + 1] / "study.db"
    _wait_for(lambda: _running_trials(db) == running, 120, f"{running} running trial(s)")
    return worker


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the seeds")
def test_sigkilled_worker_its_trial_fails_the_others_go_on(tmp_path):
    # The survivor starts first, and the victim is killed a second after its own trial
    # started: still running however fast trials are. (Killed after the survivor's start
    # instead, the victim's 4,096-step trial once ended first on CI, and the kill hit an idle
    # worker; trials long enough to rule that out took 150 s.)
    args = _one_seed_trials("fault", 3, "--heartbeat", 1)
    db = tmp_path / "runs" / "fault" / "study.db"
    survivor = _start_worker(tmp_path, args, running=1)
    victim = _start_worker(tmp_path, args, running=2)
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    trials = _study(tmp_path, "fault").get_trials()
    states = [t.state for t in trials]
    # The killed worker's trial failed (stale heartbeat); the survivor ran 3 in all besides.
    assert states.count(TrialState.FAIL) == 1, states
    assert states.count(TrialState.COMPLETE) == 3, states
    assert TrialState.RUNNING not in states
    lost = next(t for t in trials if t.state == TrialState.FAIL)
    # Its seed noticed its parent was gone and stopped (saving a checkpoint).
    _wait_for(lambda: not _seed_processes(tmp_path / "runs" / "fault" / f"trial_{lost.number}"),
              30, "the lost trial's seed to stop")  # fmt: skip
    # The study is done: running the command again runs nothing more.
    again = _tune(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "started:" not in again.stderr
    assert len(_study(tmp_path, "fault").get_trials()) == 4


def test_killed_trial_is_retried_with_its_values(tmp_path):
    args = _one_seed_trials("retry", 1, "--heartbeat", 1)
    worker = _start_worker(tmp_path, args, running=1)
    time.sleep(1.0)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    # Once its heartbeat is 2 s old, the next worker fails it and reruns its values.
    result = _tune(tmp_path, *args, "--retry-failed", timeout=600)
    assert result.returncode == 0, result.stderr
    trials = _study(tmp_path, "retry").get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], states  # its slot refilled
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].params == trials[0].params


def test_ctrl_c_ends_trials_as_interrupted_and_a_rerun_fills_their_slots(tmp_path):
    args = _one_seed_trials("stop", 1)
    worker = _start_worker(tmp_path, args, running=1)
    time.sleep(2.0)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, err
    assert "trial 0 interrupted" in err and "Traceback" not in err
    assert not _seed_processes(tmp_path / "runs" / "stop" / "trial_0")
    result = _tune(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    states = [t.state for t in _study(tmp_path, "stop").get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE], states  # its slot refilled


def test_report_of_a_finished_study_and_of_a_missing_one(tmp_path):
    result = _tune(tmp_path, CONFIG, "--trials", 1, "--seeds-per-trial", 1, "--study", "one",
                   *TINY)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (tmp_path / "runs" / "one" / "best.yaml").unlink()
    report = _tune(tmp_path, "--report", "one")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "runs" / "one" / "best.yaml").is_file()
    _one_line_error(_tune(tmp_path, "--report", "nothing"), "no study nothing")


@pytest.mark.parametrize(
    "args, words",
    [
        ([CONFIG, "--trials", 0], "--trials must be at least 1"),
        ([CONFIG], "--trials must be at least 1"),
        ([CONFIG, "--trials", 2, "--sampler", "grid"], "invalid choice: 'grid'"),
        ([CONFIG, "--trials", 2, "--pruner", "hyperband"], "invalid choice: 'hyperband'"),
        ([CONFIG, "--trials", 2, "--seeds-per-trial", 0], "--seeds-per-trial must be at least"),
        ([CONFIG, "--trials", 2, "--jobs", 0], "--jobs must be at least 1"),
        ([CONFIG, "--trials", 2, "--study", "a/b"], "study name 'a/b'"),
        ([CONFIG, "--trials", 2, "--set", "search.gamma=3"], "expected one distribution"),
        ([CONFIG, "--trials", 2, "--set", "search=[]"], "expected a mapping of dotted"),
        ([CONFIG, "--trials", 2, "--set", "search.momentum={uniform: [0, 1]}"],
         "the ppo agent has no such key"),
        ([CONFIG, "--trials", 2, "--set", "search.gamma={uniform: [0.9, 0.8]}"],
         "bounds must be low < high"),
        ([CONFIG, "--trials", 2, "--storage", "postgresql://rlkit@127.0.0.1:1/rlkit"],
         "--storage postgresql"),
        ([CONFIG, "--trials", 2, "--storage", "sqlite:////no/such/folder/study.db"],
         "does not exist"),
        ([CONFIG, "--trials", 2, "--storage", "nosuchdb://x"], "--storage nosuchdb://x"),
        (["--trials", 2], "give a CONFIG file with a search: block"),
        ([ROOT / "configs" / "dqn_cartpole.yaml", "--trials", 2], "has no search: block"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, words):
    result = _tune(tmp_path, *args)
    _one_line_error(result, words)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_worker_with_another_search_cannot_join(tmp_path):
    first = _tune(tmp_path, CONFIG, "--trials", 1, "--seeds-per-trial", 1, "--study", "s", *TINY)
    assert first.returncode == 0, first.stderr
    other = _tune(tmp_path, CONFIG, "--trials", 2, "--seeds-per-trial", 1, "--study", "s",
                  *TINY, "--set", "search.gamma={uniform: [0.9, 0.99]}")  # fmt: skip
    _one_line_error(other, "study s was started with another search")
    assert len(_study(tmp_path, "s").get_trials()) == 1


def test_without_optuna_it_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['optuna'] = None; from rlkit.cli import main; "
        f"sys.exit(main(['tune', {str(CONFIG)!r}, '--trials', '2']))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    _one_line_error(result, "rlkit tune needs optuna: pip install 'rlkit[tune]'")
    code = code.replace("'optuna'", "'ray'").replace("'2']", "'2', '--ray', '127.0.0.1:1']")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    _one_line_error(result, "rlkit tune needs ray: pip install 'rlkit[ray]'")


def test_workers_opening_a_new_database_at_once_both_get_it(tmp_path):
    # Both make Optuna's tables; the loser of the CREATE TABLE race tries again.
    (tmp_path / "runs").mkdir()
    code = (
        "from rlkit.experiments.tune import open_storage; "
        "open_storage('sqlite:///runs/study.db', 60)"
    )
    for _ in range(4):
        (tmp_path / "runs" / "study.db").unlink(missing_ok=True)
        command = [sys.executable, "-c", code]
        pair = [
            subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for process in pair:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
