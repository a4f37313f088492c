"""A small progress bar for training: steps, recent return and steps/s on one line.

On a terminal it redraws one line in place; when stderr is a file or pipe (CI logs) it prints a
plain line every `interval` seconds instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TextIO


class ProgressBar:
    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.total = max(int(total), 1)
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.interval = 0.2 if self.interactive else interval
        self.start_time = time.perf_counter()
        self.last_draw = self.start_time  # first line after one interval, with a real rate
        self.returns: deque[float] = deque(maxlen=20)
        self.start_step: int | None = None

    def episode(self, episodic_return: float) -> None:
        self.returns.append(float(episodic_return))

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (an evaluation) out of the steps/s figure."""
        self.start_time += seconds

    def update(self, step: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.start_step is None:
            self.start_step = step
        if not force and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        elapsed = max(now - self.start_time, 1e-9)
        sps = (step - self.start_step) / elapsed
        fraction = min(step / self.total, 1.0)
        recent = f"{sum(self.returns) / len(self.returns):8.1f}" if self.returns else "     n/a"
        width = 24
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"[{bar}] {step:>9,}/{self.total:,} steps  return(last {len(self.returns):>2}) {recent}"
            f"  {sps:7.0f} steps/s  {elapsed:6.0f}s"
        )
        if self.interactive:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, step: int) -> None:
        self.update(step, force=True)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
