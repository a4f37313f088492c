"""Schedules: exploration rate and learning-rate multipliers as pure functions of progress, and
the step intervals the run loop keeps (evaluation, checkpoints, training calls)."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """`start` at step 0, moving linearly to `end` at `duration`, then held at `end`."""
    if duration <= 0:
        return end
    fraction = min(max(step / duration, 0.0), 1.0)
    return start + fraction * (end - start)


def multiples_between(previous: int, current: int, interval: int) -> int:
    """How many multiples of `interval` lie in (previous, current]."""
    return max(current // interval - previous // interval, 0)


def crossed(previous: int, current: int, interval: int) -> bool:
    """True when a multiple of `interval` lies in (previous, current]: with N env copies the step
    counter moves by N, so `step % interval == 0` would skip intervals N does not divide."""
    return multiples_between(previous, current, interval) > 0
