"""Progress of a training run: a tqdm bar (steps, ETA, recent return or Atari game score,
training steps/s), or, for the seeds of `rlkit train --seeds`, one JSON line per update on
stdout that the parent process reads and shows in its own bar (rlkit.experiments.seeds).

On a terminal tqdm redraws one line in place; in a log file (stderr not a terminal) the bar is
refreshed every 5 seconds only, so CI logs stay short.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from typing import TextIO

from tqdm import tqdm

BAR_FORMAT = "{l_bar}{bar:24}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}{postfix}]"


def make_bar(total: int, stream: TextIO, initial: int = 0, log_interval: float = 5.0) -> tqdm:
    """A tqdm bar of steps on `stream`: redrawn in place on a terminal; in a log file, a line
    of its own every `log_interval` seconds."""
    interactive = stream.isatty()
    return tqdm(
        total=max(int(total), 1),
        initial=initial,
        file=stream if interactive else _LogLines(stream),
        bar_format=BAR_FORMAT,
        mininterval=0.2 if interactive else log_interval,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
    )


class Progress:
    """What a run reports as it goes: its step, the mean of the last 20 episodic returns, and
    steps/s of training alone (evaluation time excluded, as in TensorBoard's
    time/steps_per_second); shown by `view`, a TqdmView or a JsonLinesView."""

    def __init__(self, view: TqdmView | JsonLinesView, start_step: int = 0) -> None:
        self.view = view
        self.returns: deque[float] = deque(maxlen=20)
        self.scores: deque[float] = deque(maxlen=20)
        self.start_step = self.step = start_step
        self.clock_start = time.perf_counter()
        self.excluded = 0.0

    def episode(self, episodic_return: float) -> None:
        self.returns.append(float(episodic_return))

    def game(self, score: float) -> None:
        """A whole Atari game's real score (envs.atari.GameScore): the bar shows these instead
        of the training episodes' returns, which are per life and clipped."""
        self.scores.append(float(score))

    @property
    def shown(self) -> str:
        """What the bar's number is: the recent game score where games are scored."""
        return "score" if self.scores else "return"

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (an evaluation) out of the steps/s figure."""
        self.excluded += seconds

    def evaluation(self, step: int, mean_return: float) -> None:
        """A periodic evaluation's mean return (`rlkit tune` scores and prunes trials by it)."""
        self.view.evaluation(step, mean_return)

    def recent_return(self) -> float | None:
        """The mean of the last 20 game scores where games are scored, else of the last 20
        episodic returns."""
        recent = self.scores or self.returns
        return sum(recent) / len(recent) if recent else None

    def steps_per_second(self) -> float:
        elapsed = time.perf_counter() - self.clock_start - self.excluded
        return (self.step - self.start_step) / max(elapsed, 1e-9)

    def update(self, step: int) -> None:
        self.step = step
        self.view.show(self, final=False)

    def close(self, step: int) -> None:
        self.step = step
        self.view.show(self, final=True)
        self.view.close()


class TqdmView:
    """A tqdm bar of steps with elapsed time and ETA (which counts evaluations, since the user
    waits for them), the recent return and training steps/s."""

    def __init__(self, total: int, stream: TextIO | None = None, start_step: int = 0) -> None:
        self.bar = make_bar(total, stream or sys.stderr, start_step)

    def show(self, progress: Progress, final: bool) -> None:
        shown = min(progress.step, self.bar.total)  # on-policy runs end past total
        if shown > self.bar.n:
            recent = progress.recent_return()
            recent = float("nan") if recent is None else recent
            # set_postfix_str would force a redraw on every call; tqdm redraws on update().
            self.bar.postfix = (
                f"{progress.shown} {recent:.1f}, {progress.steps_per_second():,.0f} steps/s"
            )
            self.bar.update(shown - self.bar.n)

    def evaluation(self, step: int, mean_return: float) -> None:
        pass  # the terminal shows the training return; eval/* is in TensorBoard

    def close(self) -> None:
        self.bar.close()  # draws the final state


class _LogLines:
    """A log file's view of tqdm's output: each redraw ("\\r" + line) as a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip("\n")
        if line.strip():
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class JsonLinesView:
    """The same reports as machine-readable lines, {"step", "return", "sps"}, at most every
    `interval` seconds and at the end, and each periodic evaluation, {"step", "eval"}, for a
    parent process that shows (or scores) many runs at once."""

    def __init__(self, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.last_write = 0.0

    def show(self, progress: Progress, final: bool) -> None:
        now = time.perf_counter()
        if not final and now - self.last_write < self.interval:
            return
        self.last_write = now
        line = {
            "step": progress.step,
            "return": progress.recent_return(),
            "sps": round(progress.steps_per_second(), 1),
        }
        self._write(line)

    def _write(self, line: dict) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(json.dumps(line) + "\n")
            self.stream.flush()
        except BrokenPipeError:  # the parent is gone; the run stops on its own (Ctrl-C)
            self.stream = None

    def evaluation(self, step: int, mean_return: float) -> None:
        """At once, never held back: {"step", "eval"}."""
        self._write({"step": step, "eval": mean_return})

    def close(self) -> None:
        pass
