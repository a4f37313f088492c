"""`rlkit tune` beyond one process's SQLite file, against real servers on 127.0.0.1 started
here: two workers sharing a study in a PostgreSQL server (Debian's package, installed by this
set-up if missing; skipped with the reason where it cannot be), and the trials run as Ray Tune
trials on a local `ray start --head` with two worker slots. Either way every trial is counted
in the database: all there, each run once."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.test_tune import CONFIG, TINY, tune_command

N_TRIALS = 4
# On the Ray head (two slots): one more trial than slots is enough to make one wait.
RAY_TRIALS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _install_postgres() -> str | None:
    """Install Debian's postgresql package; None if done, else why it could not be."""
    if not shutil.which("apt-get"):
        return "no apt-get to install PostgreSQL with (install it and rerun)"
    if os.geteuid() != 0:
        return (
            "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own on 127.0.0.1 (a fresh cluster in a temporary folder,
    trust authentication for the rlkit user), stopped and removed afterwards."""
    pg_bin = _postgres_bin()
    if pg_bin is None:
        reason = _install_postgres()
        pg_bin = _postgres_bin()
        if pg_bin is None:
            pytest.skip(f"no PostgreSQL server: {reason or 'installed, but initdb not found'}")
    # The server refuses to run as root: as root, run it as the package's postgres user.
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="rlkit-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root, and there is no postgres user")
        as_user = ["runuser", "-u", "postgres", "--"]
        base.chmod(0o755)
        shutil.chown(base, "postgres")
    port = _free_port()
    data, log = base / "data", base / "server.log"

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert result.returncode == 0, f"{command[0]}: {result.stdout}{result.stderr}"

    run(str(pg_bin / "initdb"), "-D", str(data), "-U", "rlkit", "-A", "trust", "--no-sync")
    run(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off", "start")  # fmt: skip
    try:
        yield f"postgresql://rlkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _check_every_trial_once(study, folder: Path, n_trials: int = N_TRIALS) -> None:
    """All N trials in the database, complete, numbered 0..N-1, and each trained once: its
    folder holds one run of its seed (the seed's log records every start)."""
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials, trials
    assert sorted(t.number for t in trials) == list(range(n_trials))
    for t in trials:
        trial_dir = folder / f"trial_{t.number}"
        assert (trial_dir / "seed_1" / "agent.safetensors").is_file()
        starts = (trial_dir / "logs" / "seed_1.log").read_text().count("\n$ ")
        assert starts == 1, f"trial {t.number} started {starts} times"
    assert len(list(folder.glob("trial_*"))) == n_trials


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    args = [CONFIG, "--trials", N_TRIALS, "--seeds-per-trial", 1, "--jobs", 1,
            "--study", "pg", "--storage", postgres_url, "--pruner", "none", *TINY]  # fmt: skip
    workers = [
        subprocess.Popen(tune_command(*args), cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    for worker, err in zip(workers, errors, strict=True):
        assert worker.returncode == 0, err
    assert all("started:" in err for err in errors), errors  # both took trials
    study = optuna.load_study(study_name="pg", storage=postgres_url.replace(
        "postgresql://", "postgresql+psycopg://"))  # fmt: skip
    _check_every_trial_once(study, tmp_path / "runs" / "pg")
    # Counted in the server's own tables too.
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(
            "SELECT t.state, COUNT(*) FROM trials t JOIN studies s USING (study_id) "
            "WHERE s.study_name = 'pg' GROUP BY t.state"
        ).fetchall()
    assert rows == [("COMPLETE", N_TRIALS)]
    assert (tmp_path / "runs" / "pg" / "best.yaml").is_file()


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head on 127.0.0.1 with two worker slots (CPUs); stopped afterwards."""
    pytest.importorskip("ray.tune", reason="the ray extra is not installed")
    ray = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live here
    result = subprocess.run(
        [ray, "start", "--head", "--num-cpus=2", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        time.sleep(1)
        shutil.rmtree(temp, ignore_errors=True)


def test_trials_run_on_a_local_ray_head(tmp_path, ray_head):
    # The env comes from a module in the folder tune runs from ("module:Name-v0"): Ray's
    # workers start the trials in Ray's own folders, where only the driver's PYTHONPATH that
    # rlkit passes on finds it.
    (tmp_path / "study_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('StudyCartPole-v0', entry_point="
        "'gymnasium.envs.classic_control:CartPoleEnv', max_episode_steps=200)\n"
    )
    args = [CONFIG, "--trials", RAY_TRIALS, "--seeds-per-trial", 1, "--study", "onray",
            "--ray", ray_head, "--pruner", "none", *TINY,
            "--set", "env=study_envs:StudyCartPole-v0"]  # fmt: skip
    result = subprocess.run(tune_command(*args), cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 at a time" in result.stdout + result.stderr  # the head's two worker slots
    study = optuna.load_study(
        study_name="onray", storage=f"sqlite:///{tmp_path}/runs/onray/study.db"
    )
    _check_every_trial_once(study, tmp_path / "runs" / "onray", RAY_TRIALS)
    assert (tmp_path / "runs" / "onray" / "best.yaml").is_file()
    trained = yaml.safe_load((tmp_path / "runs/onray/trial_0/seed_1/config.yaml").read_text())
    assert trained["env"] == "study_envs:StudyCartPole-v0"
    # Running it again adds nothing: the study has its trials.
    again = subprocess.run(tune_command(*args), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(study.get_trials()) == RAY_TRIALS
