"""Statistics over training seeds, as rliable (Agarwal et al., NeurIPS 2021) recommends for
few-run deep RL: the interquartile mean (IQM) as the point estimate, with a 95% percentile
confidence interval from the stratified bootstrap.

Written here rather than taken from rliable: the two functions below are all of it that a
report needs, rliable's repository was archived in Oct 2025, and it pulls in arch, scipy,
pandas and seaborn. The definitions follow rliable's: IQM is scipy's `trim_mean(x, 0.25)`
(the mean of what is left after cutting floor(n / 4) values off each end of the sorted
scores), and the stratified bootstrap resamples the runs of each task (stratum) with
replacement, keeping each task's run count, so that every resample still covers every task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def iqm(scores: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean along `axis`: the mean of the scores left after cutting
    floor(n / 4) off each end of the sorted scores (for n < 4, the plain mean)."""
    x = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = n // 4
    middle = np.take(x, np.arange(cut, n - cut), axis=axis)
    result = middle.mean(axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def stratified_bootstrap_ci(
    strata: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], np.ndarray] = iqm,
    confidence: float = 0.95,
    reps: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """(low, high) percentile confidence interval of `statistic` over all scores, from `reps`
    resamples that draw each stratum's scores with replacement, as many as it has.

    `strata`: the scores per task (one list for a single env). `statistic` takes a
    (reps, n) array and reduces its last axis. The seed fixes the resamples, so a report is
    reproducible."""
    groups = [np.asarray(g, dtype=np.float64) for g in strata if len(g)]
    if not groups:
        raise ValueError("bootstrap of no scores")
    rng = np.random.default_rng(seed)
    resampled = np.concatenate(
        [g[rng.integers(0, len(g), size=(reps, len(g)))] for g in groups], axis=1
    )
    values = statistic(resampled, axis=-1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summarize(scores: Sequence[float], threshold: float | None = None) -> dict:
    """Across seeds: mean, std, median, min, max, IQM with its 95% bootstrap CI, and how many
    reached `threshold` (when given)."""
    x = np.asarray(scores, dtype=np.float64)
    low, high = stratified_bootstrap_ci([x])
    summary = {
        "n": len(x),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "median": float(np.median(x)),
        "min": float(x.min()),
        "max": float(x.max()),
        "iqm": iqm(x),
        "iqm_ci95": [low, high],
    }
    if threshold is not None:
        summary["threshold"] = threshold
        summary["reached"] = int((x >= threshold).sum())
    return summary
