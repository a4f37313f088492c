"""IQM and stratified-bootstrap confidence intervals against hand-computed examples."""

import itertools

import numpy as np
import pytest

from rlkit.math.stats import iqm, stratified_bootstrap_ci, summarize


def test_iqm_of_hand_computed_examples():
    # n = 8: cut 2 off each end of 1..8 -> mean(3, 4, 5, 6) = 4.5; order does not matter.
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    # n = 10: cut 2 off each end (-1000, 1, and 8, 1000) -> mean(2, ..., 7).
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8, 1000, -1000]) == pytest.approx((2 + 3 + 4 + 5 + 6 + 7) / 6)
    # An outlier seed does not move the IQM; it moves the mean.
    assert iqm([500, 500, 500, 500, 9]) == 500.0
    # n < 4: nothing is cut.
    assert iqm([1.0, 2.0, 6.0]) == 3.0
    # Along an axis: one IQM per row.
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 4], [5, 5, 5, 9]]), axis=-1), [2.5, 5.0])


def test_iqm_matches_scipy_trim_mean_definition():
    rng = np.random.default_rng(0)
    for n in range(1, 30):
        x = rng.normal(size=n)
        cut = n // 4
        expected = np.sort(x)[cut : n - cut].mean()
        assert iqm(x) == pytest.approx(expected)


def test_bootstrap_ci_matches_the_exact_bootstrap_distribution():
    # Four scores 0, 1, 2, 10: a bootstrap resample is one of 4^4 = 256 equally likely draws,
    # and its IQM is the mean of its middle two sorted values. Counting the draws by hand:
    # IQM <= 0.5 in 43, <= 1 in 98, <= 2 in 189, <= 5 in 195 of 256; so the distribution's 25%
    # quantile is 1.0 and its 75% quantile 5.0 (a 50% interval), and its 2.5% and 97.5%
    # quantiles are 0 (13 draws, 5.1%) and 10 (13 draws).
    scores = [0.0, 1.0, 2.0, 10.0]
    draws = [iqm(list(r)) for r in itertools.product(scores, repeat=4)]
    counts = [sum(d <= v for d in draws) for v in (0.5, 1.0, 2.0, 5.0)]
    assert counts == [43, 98, 189, 195]
    assert stratified_bootstrap_ci([scores], confidence=0.5, reps=100_000, seed=1) == (1.0, 5.0)
    assert stratified_bootstrap_ci([scores], reps=100_000, seed=1) == (0.0, 10.0)


def test_stratified_bootstrap_keeps_each_stratum_in_every_resample():
    # Two envs whose scores are constant within each: every stratified resample holds 2 of
    # one and 2 of the other, so the statistic (mean) is always 50.5: a zero-width CI. An
    # unstratified bootstrap over the 4 scores would spread from 1 to 100.
    low, high = stratified_bootstrap_ci([[1.0, 1.0], [100.0, 100.0]], statistic=_mean, reps=500)
    assert low == high == pytest.approx(50.5)


def test_bootstrap_is_reproducible_and_contains_the_iqm():
    scores = np.random.default_rng(3).normal(100, 20, size=10)
    first = stratified_bootstrap_ci([scores], seed=7)
    assert first == stratified_bootstrap_ci([scores], seed=7)
    assert first[0] < iqm(scores) < first[1]


def test_summarize_counts_seeds_reaching_the_threshold():
    summary = summarize([500, 500, 480, 200], threshold=475)
    assert summary["reached"] == 3 and summary["n"] == 4
    assert summary["median"] == 490.0 and summary["min"] == 200.0
    assert summary["iqm"] == pytest.approx(490.0)  # (480 + 500) / 2 after cutting 1 each end
    assert "reached" not in summarize([1.0, 2.0])


def test_no_scores_is_an_error():
    with pytest.raises(ValueError):
        iqm([])
    with pytest.raises(ValueError):
        stratified_bootstrap_ci([[]])


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)
