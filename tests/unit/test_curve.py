"""The learning-curve fit and the sweet-spot rule on known curves: clean, noisy, non-monotonic, never saturating."""

from __future__ import annotations

import numpy as np
import pytest

from sweetspot.core.curve import MIN_POINTS, TOO_FEW, SizeResult, fit_curve, judge

SIZES = [50, 100, 200, 500, 1000, 2000, 4000, 6500, 10000]


def power_law(plateau: float = 0.88, scale: float = 0.35, exponent: float = 0.8) -> list[SizeResult]:
    """The seed's shape: a steep start (~0.7 at 50 samples), slowing past ~1,000, flat near ~6,500."""
    return [SizeResult(n, plateau - scale * (n / 50) ** -exponent) for n in SIZES]


def test_a_clean_power_law_is_recovered() -> None:
    fit = fit_curve(power_law())
    assert fit is not None and fit.shape == "power"
    assert fit.plateau == pytest.approx(0.88, abs=1e-3)
    assert fit.rmse < 1e-4
    assert fit.gain_per_thousand(100) > 10 * fit.gain_per_thousand(4000) > 0


def test_the_sweet_spot_is_the_smallest_size_within_tolerance_of_the_plateau() -> None:
    curve = power_law()
    verdict = judge(curve, tolerance=0.01)
    assert verdict.saturated and verdict.sweet_spot is not None
    # 0.35 * (n / 50) ** -0.8 <= 0.01 first holds at n = 50 * 35 ** 1.25 ~ 4,270: the next measured size.
    assert verdict.sweet_spot.samples == 6500
    assert judge(curve, tolerance=0.05).sweet_spot.samples == 1000  # type: ignore[union-attr]


def test_noise_moves_the_sweet_spot_little() -> None:
    rng = np.random.default_rng(7)
    noisy = [SizeResult(p.samples, p.score + float(rng.normal(0, 0.005))) for p in power_law()]
    verdict = judge(noisy, tolerance=0.02)
    assert verdict.sweet_spot is not None and 1000 <= verdict.sweet_spot.samples <= 4000


def test_a_non_monotonic_curve_still_finds_its_plateau() -> None:
    wobbly = [
        SizeResult(n, a) for n, a in [(100, 0.60), (200, 0.78), (400, 0.86), (800, 0.84), (1600, 0.87), (3200, 0.86)]
    ]
    verdict = judge(wobbly, tolerance=0.02)
    assert verdict.saturated and verdict.fit is not None and 0.84 <= verdict.fit.plateau <= 0.88
    assert verdict.sweet_spot is not None and verdict.sweet_spot.samples in (400, 800)


def test_a_curve_that_never_saturates_gets_no_sweet_spot() -> None:
    rising = [SizeResult(n, 0.3 + n / 20000) for n in SIZES]
    verdict = judge(rising, tolerance=0.01)
    assert not verdict.saturated and verdict.sweet_spot is None
    assert verdict.recommendation.startswith("not saturated") and "label more data" in verdict.recommendation


def test_too_few_sizes_are_said_so() -> None:
    verdict = judge([SizeResult(100, 0.5), SizeResult(200, 0.6)], tolerance=0.01)
    assert verdict.fit is None and verdict.sweet_spot is None
    assert verdict.recommendation.startswith("too few sizes to fit: add sizes (2 measured")


def test_as_many_sizes_as_parameters_get_no_fit_and_no_advice() -> None:
    """The quickstart's old three sizes: a three-parameter shape passes through them exactly, so its plateau (it
    printed 1.000) and its advice ("label more data") came from the shape, not the data."""
    three = [SizeResult(50, 0.22), SizeResult(150, 0.41), SizeResult(300, 0.52)]
    assert fit_curve(three) is None
    verdict = judge(three, tolerance=0.01)
    assert verdict.fit is None and verdict.sweet_spot is None and not verdict.saturated
    assert verdict.recommendation.startswith(TOO_FEW) and "label more data" not in verdict.recommendation
    # One more size leaves a degree of freedom: now a shape is fitted, and its residual means something.
    four = [*three, SizeResult(600, 0.58)]
    assert len(four) == MIN_POINTS and fit_curve(four) is not None


def test_a_curve_flat_at_zero_is_nothing_learned_not_a_sweet_spot() -> None:
    verdict = judge([SizeResult(n, 0.0) for n in (50, 100, 200, 400)], tolerance=0.01)
    assert verdict.fit is None and verdict.sweet_spot is None and not verdict.saturated
    assert verdict.recommendation.startswith("nothing learned at any size")


def test_the_attribute_behind_late_gains_is_named() -> None:
    curve = [
        SizeResult(n, a, attribute_scores={"brand": b, "rating": r})
        for n, a, b, r in [(200, 0.80, 0.95, 0.30), (1000, 0.86, 0.96, 0.55), (6500, 0.88, 0.96, 0.75)]
    ]
    verdict = judge(curve, tolerance=0.05)
    assert verdict.leading_attribute == {200: "rating", 1000: "rating"}
