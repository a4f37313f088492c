"""`rlkit train CONFIG --seeds 1-10 [--jobs N]`: one config over many seeds.

The parent folder holds the config as given (experiment.yaml), what was asked
(experiment.json: seeds, the options every seed gets, which seeds finished), one run folder per
seed (seed_<k>/, exactly what a single `rlkit train` writes), each seed's log
(logs/seed_<k>.log) and, once the seeds are done, the report (rlkit.experiments.report).

Each seed is a single `rlkit train` in its own process, `--jobs` at a time, so a seed keeps
every guarantee of a single run (atomic files, checkpoints, resume) and a crash or a SIGKILL
takes down that seed only. The seeds report their progress as JSON lines on stdout
(rlkit.io.progress.JsonLinesProgress); one tqdm bar shows them all. The children run in their own
process groups: Ctrl-C reaches this process only, which passes it on to every running seed
(each saves a checkpoint and its agent, as a single run does) and starts no new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.base.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError
from rlkit.base.files import atomic_write_bytes

EXPERIMENT_FILE = "experiment.json"
CONFIG_FILE = "experiment.yaml"


def parse_seeds(text: str) -> list[int]:
    """'1-10', '1,4,7' or '1-3,8' -> the seeds in the order given; UserError for an empty or
    malformed list, a reversed range, or a seed listed twice."""
    seeds: list[int] = []
    parts = [part.strip() for part in str(text).split(",")]
    if not text or not text.strip() or any(not part for part in parts):
        raise UserError(f"--seeds {text!r}: give seeds as 1-10 or 1,4,7")
    for part in parts:
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise UserError(f"--seeds {text!r}: {part!r} is not a seed or a range a-b") from None
        if low < 0 or high < low:
            raise UserError(f"--seeds {text!r}: {part!r} is not a range of seeds >= 0")
        seeds.extend(range(low, high + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"--seeds {text!r}: seed {repeated[0]} is listed twice")
    return seeds


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    log: Path
    process: subprocess.Popen | None = None
    step: int = 0
    recent_return: float | None = None
    status: str = "pending"  # pending, running, done, failed, interrupted
    detail: str = ""
    refusal: str | None = None  # its one-line error, if it refused to start (exit 2)
    reported: bool = False
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (step, mean return)
    reader: threading.Thread | None = field(default=None, repr=False)


class Experiment:
    """The seeds of one config in one parent folder: start, resume, watch, stop."""

    def __init__(self, parent: Path, info: dict[str, Any]) -> None:
        self.parent = parent
        self.info = info
        self.total_steps = int(info["total_steps"])
        self.runs = [
            SeedRun(s, parent / f"seed_{s}", parent / "logs" / f"seed_{s}.log")
            for s in info["seeds"]
        ]
        self.stop_requested = 0
        self.pending: list[SeedRun] = []
        self.fresh = False  # created by this process: no seed has trained yet
        self.config_error: str | None = None  # the message of a config every seed refused

    # ------------------------------------------------------------------ set-up

    @classmethod
    def create(cls, config: Path, parent: Path, seeds: list[int], jobs: int,
               train_args: list[str], total_steps: int,
               config_text: bytes | None = None) -> Experiment:  # fmt: skip
        """A fresh folder for the seeds of `config` (its text: `config_text` if given, else
        the file's)."""
        if parent.exists() and any(parent.iterdir()):
            raise UserError(
                f"folder {parent} already exists and is not empty; choose another --run-dir "
                f"or continue it with --resume {parent}"
            )
        (parent / "logs").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            parent / CONFIG_FILE, config.read_bytes() if config_text is None else config_text
        )
        info = {
            "config": str(config),
            "seeds": seeds,
            "jobs": jobs,
            "train_args": train_args,
            "total_steps": total_steps,
            "finished": [],
        }
        experiment = cls(parent, info)
        experiment.fresh = True
        experiment.save_info()
        return experiment

    @classmethod
    def open(cls, parent: Path) -> Experiment:
        path = parent / EXPERIMENT_FILE
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path}: {error}") from None
        return cls(parent, info)

    @staticmethod
    def is_experiment(folder: Path) -> bool:
        return (folder / EXPERIMENT_FILE).is_file()

    def save_info(self) -> None:
        text = json.dumps(self.info, indent=2) + "\n"
        atomic_write_bytes(self.parent / EXPERIMENT_FILE, text.encode())

    # ------------------------------------------------------------------ running

    def _command(self, run: SeedRun) -> list[str]:
        """`rlkit train` for one seed: a fresh run, or the resume of its folder."""
        base = [sys.executable, "-m", "rlkit.cli", "train", "--progress-jsonl"]
        if (run.run_dir / "config.yaml").is_file():
            # (imported here: a fresh experiment starts its seeds before torch is loaded)
            from rlkit.io.checkpoint import newest_good_checkpoint

            if newest_good_checkpoint(run.run_dir)[0] is not None:
                return [*base, "--resume", str(run.run_dir)]
        if run.run_dir.exists():
            # Killed before its first whole checkpoint: nothing in it can be resumed.
            shutil.rmtree(run.run_dir)
        return [
            *base, str(self.parent / CONFIG_FILE), "--seed", str(run.seed),
            "--run-dir", str(run.run_dir), *self.info["train_args"],
        ]  # fmt: skip

    def _start(self, run: SeedRun) -> None:
        command = self._command(run)
        run.log.parent.mkdir(parents=True, exist_ok=True)
        with open(run.log, "ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            run.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the parent, which passes it on
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        run.status = "running"
        run.reader = threading.Thread(target=self._read_progress, args=(run,), daemon=True)
        run.reader.start()

    @staticmethod
    def _read_progress(run: SeedRun) -> None:
        assert run.process is not None and run.process.stdout is not None
        for raw in run.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            run.step = int(line.get("step", run.step))
            if "eval" in line:
                run.evaluations.append((run.step, float(line["eval"])))
            elif line.get("return") is not None:
                run.recent_return = float(line["return"])

    def _finish(self, run: SeedRun, code: int) -> None:
        if run.reader is not None:
            run.reader.join(timeout=5)
        if code == 0:
            run.status = "done"
            if run.seed not in self.info["finished"]:
                self.info["finished"] = sorted([*self.info["finished"], run.seed])
                self.save_info()
        elif code == EXIT_INTERRUPTED or (self.stop_requested and code == -signal.SIGINT):
            run.status, run.detail = "interrupted", "saved; resumable"
        else:
            run.status = "failed"
            if code < 0:
                run.detail = f"killed by {signal.Signals(-code).name}"
            else:
                run.detail = f"exit code {code}"
            if code == EXIT_USER_ERROR and not (run.run_dir / "config.yaml").is_file():
                run.refusal = _last_line(run.log)
                run.detail = run.refusal.split(": error: ", 1)[-1]

    def _undecided_refusal(self) -> bool:
        """In a fresh folder where no seed has trained yet, a seed refused to start: a
        mistake in the config or options that every seed will repeat, or one of that seed
        alone (its training seeds overlap the eval_seed, say). No new seed starts until the
        ones starting now tell which: if they all refuse, `config_error` is set."""
        if not self.fresh or self.info["finished"]:
            return False
        if any((r.run_dir / "config.yaml").is_file() for r in self.runs):
            return False  # a seed trains: a refusal is that seed's failure
        refused = [r for r in self.runs if r.refusal is not None]
        if refused and not any(r.status == "running" for r in self.runs):
            self.config_error = refused[0].detail
        return bool(refused)

    def request_stop(self) -> None:
        """Ctrl-C: no new seeds; the running ones get SIGINT (the second time too: abort)."""
        self.stop_requested += 1
        for run in self.runs:
            if run.status == "running" and run.process is not None:
                with contextlib.suppress(ProcessLookupError):  # it just ended
                    os.killpg(run.process.pid, signal.SIGINT)

    def discard(self) -> None:
        """Stop the seeds at once and remove the folder (a config that the seeds refused:
        the folder was empty before, and nothing has trained yet)."""
        for run in self.runs:
            if run.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)
                run.process.wait()
        shutil.rmtree(self.parent, ignore_errors=True)

    def run(self, jobs: int, progress: bool = True, header: str = "") -> int:
        """Run every unfinished seed, `jobs` at a time; 0 if all finished, 130 if stopped by
        Ctrl-C, 1 if a seed failed (the others still run to the end), 2 if the seeds refused
        the config (then `config_error` says why, and a fresh folder is removed). `header` is
        printed once a seed trains, so that a refused config prints its error alone."""
        display = _Display(self, progress, header)
        try:
            with stop_signals(self.request_stop):
                self.begin()
                while self.poll(jobs, display):
                    display.update()
                    time.sleep(0.05)
        finally:
            display.close()
        return self.exit_code()

    def begin(self) -> None:
        """Before the first poll: the finished seeds marked done, the others queued."""
        for run in self.runs:
            if run.seed in self.info["finished"]:
                run.status, run.step = "done", self.total_steps
        self.pending = [r for r in self.runs if r.status == "pending"]

    def poll(self, jobs: int, display: _Display | None = None) -> bool:
        """One look at the seeds, without waiting: note the ones that ended (to `display`),
        start pending ones up to `jobs` running. False once none runs and none will start
        (then see `exit_code`); a config every seed refused is discarded here."""
        for run in self.runs:
            if run.status == "running":
                code = run.process.poll()
                if code is not None:
                    self._finish(run, code)
        waiting = self._undecided_refusal()
        if self.config_error is not None:
            self.discard()
            return False
        for run in self.runs:
            ended = run.status in ("done", "failed", "interrupted")
            if ended and not run.reported and not waiting:
                run.reported = True
                if display is not None:
                    display.report(run)
        running = [r for r in self.runs if r.status == "running"]
        while self.pending and len(running) < jobs and not self.stop_requested and not waiting:
            run = self.pending.pop(0)
            self._start(run)
            running.append(run)
        return bool(running) or bool(self.pending and not self.stop_requested)

    def failure(self) -> str | None:
        """After the last poll: why the experiment failed (a config every seed refused, or
        the seeds that failed, with their logs), or None."""
        failed = [r for r in self.runs if r.status == "failed"]
        if self.config_error is not None or not failed:
            return self.config_error
        return "; ".join(f"seed {r.seed}: {r.detail} (log {r.log})" for r in failed)

    def exit_code(self) -> int:
        """After the last poll: as `run` returns."""
        if self.config_error is not None:
            return EXIT_USER_ERROR
        if self.stop_requested:
            return EXIT_INTERRUPTED
        return 1 if any(r.status == "failed" for r in self.runs) else 0


@contextlib.contextmanager
def stop_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """Within: Ctrl-C and SIGTERM (a job scheduler's stop) alike call `request_stop` (which
    passes them on to the children, each saving); the previous handlers come back after."""
    previous = {
        sig: signal.signal(sig, lambda *_: request_stop())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; 1 where that is unknown)."""
    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1


def thread_args(configured: int, processes: int, cores: int | None = None) -> list[str]:
    """`rlkit train` options that share `cores` (default: all available) among `processes`
    runs at once, one `torch_threads` each, unless the config sets its own (`configured`):
    more threads than cores make them wait on each other (docs/guide/seeds.md)."""
    if configured:
        return []
    cores = available_cores() if cores is None else cores
    return [f"--set=torch_threads={max(1, cores // processes)}"]


def stop_when_parent_dies(interval: float = 1.0) -> None:
    """In a seed: once the parent process is gone (SIGKILLed, say), stop as Ctrl-C would,
    saving a checkpoint, rather than train on with no one to watch (the seeds run in their
    own sessions, so the parent's terminal signals never reach them)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="rlkit-parent-watch", daemon=True).start()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"see {path}"


class _Display:
    """One tqdm bar over all seeds: the steps of all of them, the ETA, and each running
    seed's recent return; a line when a seed ends."""

    def __init__(self, experiment: Experiment, enabled: bool, header: str) -> None:
        self.experiment = experiment
        self.enabled = enabled
        self.header = header
        self.started = False
        self.bar = None

    def _start(self) -> None:
        """On the first sign of training: the header, then the bar."""
        self.started = True
        if self.header:
            print(self.header, file=sys.stderr)
        if self.enabled:
            from rlkit.io.progress import make_bar

            total = self.experiment.total_steps * len(self.experiment.runs)
            self.bar = make_bar(total, sys.stderr, log_interval=10.0)

    def update(self) -> None:
        runs = self.experiment.runs
        if not self.started and any(r.step > 0 or r.status == "done" for r in runs):
            self._start()
        if self.bar is None:
            return
        done = sum(min(r.step, self.experiment.total_steps) for r in runs)
        returns = "  ".join(
            f"seed {r.seed}: {r.recent_return:.1f}"
            for r in runs
            if r.status == "running" and r.recent_return is not None
        )
        finished = sum(r.status == "done" for r in runs)
        self.bar.postfix = f"{finished}/{len(runs)} seeds done" + (
            f", {returns}" if returns else ""
        )
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def report(self, run: SeedRun) -> None:
        if self.experiment.config_error is not None:
            return  # said once, by the caller
        if not self.started:
            self._start()
        if run.status == "done":
            message = f"rlkit: seed {run.seed} finished ({run.run_dir})"
        elif run.status == "interrupted":
            message = f"rlkit: seed {run.seed} stopped at step {run.step:,} ({run.detail})"
        else:
            message = f"rlkit: seed {run.seed} FAILED ({run.detail}); its log: {run.log}"
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.close()
