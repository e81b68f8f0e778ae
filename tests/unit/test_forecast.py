"""The learning-curve forecast: bands that hold the truth of known curves, widen with noise and distance, a target
answered in rows or refused above the plateau, late-gain attributes, cost, and errors that name the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweetspot.core.curve import SizeResult
from sweetspot.core.forecast import _FORMS, HORIZON, ForecastError, describe, forecast, labels_cost, outlook

SIZES = [50, 100, 200, 400]


def saturating(n: float) -> float:
    """A plateau at 0.80: 0.80 - 0.9 n^-0.5 (0.673 at 50, 0.755 at 400, 0.78 at 2,000)."""
    return 0.80 - 0.9 * n**-0.5


def measured(curve: object = saturating, spread: float = 0.01, repeats: int = 3) -> list[SizeResult]:
    return [SizeResult(n, curve(n), spread, repeats) for n in SIZES]  # type: ignore[operator]


def test_the_band_holds_a_known_curve_four_times_past_the_data() -> None:
    result = forecast(measured(), [800, 1600])
    for point in result.sizes:
        assert point.f1.contains(saturating(point.samples))
        assert point.f1.low < point.f1.middle < point.f1.high
        assert abs(point.f1.middle - saturating(point.samples)) < 0.02
    # Further out is less sure.
    near, far = result.sizes
    assert far.f1.high - far.f1.low > near.f1.high - near.f1.low
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.largest == 400


def test_noise_between_repeats_widens_the_band() -> None:
    quiet = forecast(measured(spread=0.0), [1600]).sizes[0].f1
    noisy = forecast(measured(spread=0.05), [1600]).sizes[0].f1
    assert noisy.high - noisy.low > 1.5 * (quiet.high - quiet.low)
    # No repeats, no spread measured: the floor stands in for it.
    assert forecast(measured(spread=0.0, repeats=1), [1600]).noise == pytest.approx(0.01)


def test_the_same_points_give_the_same_forecast() -> None:
    assert forecast(measured(), [1600], 0.78) == forecast(measured(), [1600], 0.78)


def test_a_reachable_target_is_answered_in_rows_around_the_truth() -> None:
    truth = (0.9 / (0.80 - 0.78)) ** 2  # 2,025 rows
    answer = forecast(measured(), [1600], 0.78).target
    assert answer is not None and answer.rows is not None and not answer.above_plateau
    assert answer.rows.low is not None and answer.rows.middle is not None
    assert answer.rows.low <= truth
    assert answer.rows.high is None or truth <= answer.rows.high
    assert answer.rows.low <= answer.rows.middle and answer.reach >= 0.5
    # Four small sizes leave the form open (a pure power law fits them too, and reaches 0.78 sooner); two more
    # sizes settle it near the truth.
    longer = [SizeResult(n, saturating(n), 0.01, 3) for n in (*SIZES, 800, 1600)]
    settled = forecast(longer, [3200], 0.78).target
    assert settled is not None and settled.rows is not None and settled.rows.middle is not None
    assert abs(settled.rows.middle - truth) < 0.1 * truth


def test_a_target_above_the_plateau_names_no_size() -> None:
    result = forecast(measured(), [1600], 0.95)
    assert result.target is not None and result.target.above_plateau and result.target.rows is None
    assert result.plateau.high < 0.95
    words = describe(result)
    assert "F1 0.95 lies above the plateau's band" in words


def test_a_target_already_met_is_met_within_the_data() -> None:
    answer = forecast(measured(), [], 0.70).target
    assert answer is not None and answer.rows is not None and answer.rows.middle is not None
    assert answer.rows.middle <= 400


def test_a_curve_still_rising_like_a_power_law_keeps_its_optimistic_form() -> None:
    def rising(n: float) -> float:
        return 1 - 0.9 * n**-0.15  # no plateau below 1: 0.50 at 50, 0.59 at 400

    result = forecast(measured(rising, spread=0.005), [3200])
    assert result.weights["powerlaw"] > 0.3
    assert result.sizes[0].f1.contains(rising(3200))


@pytest.mark.parametrize(
    ("to", "target", "field"),
    [
        ([400], None, "forecast.to"),
        ([300, 800], None, "forecast.to"),
        ([800], 0.0, "target.f1"),
        ([], 1.2, "target.f1"),
    ],
)
def test_bad_input_names_the_field(to: list[int], target: float | None, field: str) -> None:
    with pytest.raises(ForecastError, match=field):
        forecast(measured(), to, target)


def test_as_many_sizes_as_parameters_are_too_few() -> None:
    """Three sizes and three-parameter forms: every form passes through every point, so nothing is forecast."""
    for few in (measured()[:2], measured()[:3]):
        with pytest.raises(ForecastError, match="too few sizes to fit: add sizes"):
            forecast(few, [800])
    assert forecast(measured(), [800]).sizes


def test_the_outlook_forecasts_the_late_gain_attribute_and_prices_the_labels() -> None:
    def point(n: int) -> SizeResult:
        # brand is learned early; rating (rare) rises late and decides whether 0.78 is reached.
        rating = 0.9 - 4.0 * n**-0.5
        return SizeResult(n, saturating(n), 0.01, 3, {"brand": 0.95, "rating": rating})

    view = outlook([point(n) for n in SIZES], [1600], 0.78, cost_per_label=0.25)
    assert view.overall is not None and list(view.attributes) == ["rating"]
    rating = view.attributes["rating"]
    assert rating.sizes[0].f1.contains(0.9 - 4.0 * 1600**-0.5)
    assert rating.target is not None and rating.target.rows is not None
    assert view.cost(2400) == pytest.approx(500.0)
    assert "rating F1" in view.message and "costs ~" in view.message
    # Cached by value: the operator asks again every pass.
    assert outlook([point(n) for n in SIZES], [1600], 0.78, cost_per_label=0.25) is view


def test_an_outlook_before_four_sizes_says_so() -> None:
    view = outlook(measured()[:3], [1600], 0.78)
    assert view.overall is None and view.attributes == {}
    assert view.message.startswith("too few sizes to fit: add sizes (3 measured")
    flat = [SizeResult(n, 0.0, 0.0, 2) for n in SIZES]
    assert "nothing learned" in outlook(flat, [1600], 0.5).message


def test_labelling_cost_counts_rows_past_the_largest_measured_size() -> None:
    assert labels_cost(1000, 400, 0.1) == pytest.approx(60.0)
    assert labels_cost(300, 400, 0.1) == 0.0
    assert labels_cost(None, 400, 0.1) is None
    assert labels_cost(1000, 400, None) is None


def test_the_horizon_bounds_the_rows_a_target_may_need() -> None:
    result = forecast(measured(), [1600], 0.7999)
    answer = result.target
    assert answer is not None
    rows = answer.rows
    assert rows is None or rows.high is None or rows.high <= 400 * HORIZON
    assert math.isfinite(result.plateau.high)


def test_sizes_before_the_onset_of_learning_are_not_fitted() -> None:
    onset = [SizeResult(20, 0.0, 0.0, 2), SizeResult(25, 0.0, 0.0, 2), *measured()]
    with_zeros = forecast(onset, [1600]).sizes[0].f1
    assert with_zeros == forecast(measured(), [1600]).sizes[0].f1
    too_early = [SizeResult(25, 0.0, 0.0, 2), SizeResult(50, 0.0, 0.0, 2), *measured()[:2]]
    with pytest.raises(ForecastError, match="something was learned"):
        forecast(too_early, [1600])
    assert "something was learned" in outlook(too_early, [1600], 0.78).message


def test_every_form_inverts_its_curve() -> None:
    params = {
        "power": (0.8, 0.9, 0.5),
        "exponential": (0.8, 0.3, 200.0),
        "powerlaw": (0.9, 0.15),
        "sigmoid": (0.9, 0.05, 100.0, 2.0),
    }
    for name, p in params.items():
        form = _FORMS[name]  # type: ignore[index]
        rows = form.rows(0.7, *p)
        assert float(form.curve(np.asarray([rows]), *p)[0]) == pytest.approx(0.7), name
        # Above a plateau (0.8 or 0.9) no size reaches 0.95; the pure power law has none below 1.
        assert math.isinf(form.rows(0.95, *p)) == (name != "powerlaw"), name
    # A curve already above the target with no data needs none (and a flat one divides by nothing).
    assert _FORMS["exponential"].rows(0.5, 0.8, 0.0, 100.0) == 0.0
    assert _FORMS["exponential"].rows(0.5, 0.8, 0.2, 100.0) == 0.0
