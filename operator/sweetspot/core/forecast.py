"""Forecast the learning curve past the measured sizes, with an 80% band, and answer a target F1 (pure; scipy).

The decision a learning curve serves lies past the data: "will 2,000 more labels lift F1 from 0.73 to 0.80, and
how sure is that?". Two uncertainties make the answer unsure, and the band carries both:

- **the curve's form.** Fitted on a few small sizes, saturating forms and power laws agree inside the measured
  range and part outside it: a power law with a plateau (`a - b n^-c`) and an exponential approach
  (`a - b exp(-n/k)`) flatten early and tend to under-predict, a pure power law on the error (`1 - b n^-c`, no
  plateau below 1) tends to over-predict (the bias pair known from learning-curve extrapolation: Hestness et al.
  2017, Mohr and van Rijn 2022; Jain et al. CVPR 2023 extrapolate with power laws and confidence bands). A sigmoid
  in log n joins with five sizes or more (curves that start flat). The forms are an ensemble weighted by their fit:
  Akaike weights with the measurement noise known, `exp(-(SSE / s^2 + 2 k) / 2)`, so a form that misses the
  measured points by more than their noise loses its weight, and one that fits as well with fewer parameters
  gains it.
- **the noise between repeats.** Every size's mean is resampled from its noise (a parametric bootstrap: the spread
  between repeats over the square root of the repeats, with a floor, since two or three repeats estimate a spread
  poorly and one estimates none) and every form refitted, which moves the extrapolation as the measured points
  could have moved; the value a sweep would measure at a new size adds that size's own noise.

The band is the 10th to 90th weighted percentile of these draws; the middle is their weighted median. Draws come
from a fixed seed, so the same points always give the same forecast (the operator recomputes the status each pass).

A target F1 is answered by inverting every drawn curve (the expected F1, not one noisy run): the rows at which it
first reaches the target. A form that never does within `HORIZON` times the largest measured size counts as never;
when fewer than 10% of the draws reach it, the target lies above the band of the plateau (the curve's value at
that horizon), and no size is named.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sweetspot.core.curve import MIN_POINTS, SIGMOID_MIN_POINTS, SizeResult, fit_curve, too_few

Form = Literal["power", "exponential", "powerlaw", "sigmoid"]
LEVEL = 0.8
"""The band's coverage: from the 10th to the 90th percentile."""
NOISE_FLOOR = 0.01
"""The least noise (standard deviation of one run's F1) a point is given. Measured between repeats: 0.002-0.015 on
the AE-110k titles, up to 0.1 on the steep part of the built-in curve; a spread from two or three repeats is often
far too small by chance, and one repeat has none."""
DRAWS = 48
"""Bootstrap draws per form: on the AE-110k backtest windows the band's ends and middle move by at most 0.004 F1
from 48 draws to 400, at a tenth of the time (about 0.4 s against 4 s)."""
HORIZON = 100
"""How far a target is looked for: up to this many times the largest measured size."""
SEED = 0


class ForecastError(ValueError):
    """Bad input, naming the field at fault."""


@dataclass(frozen=True)
class Band:
    """A forecast value: the weighted median of the draws and the band around it."""

    low: float
    middle: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SizeForecast:
    samples: int
    f1: Band
    """The F1 a sweep would measure at this size (mean over as many repeats as the largest measured size had)."""


@dataclass(frozen=True)
class RowsBand:
    """Rows needed to reach a target F1: a `None` end is "not within the horizon"."""

    low: int | None
    middle: int | None
    high: int | None


@dataclass(frozen=True)
class TargetAnswer:
    f1: float
    reach: float
    """The weighted share of the drawn curves that reach the target within the horizon."""
    rows: RowsBand | None
    """None when the target lies above the plateau's band (fewer than 10% of the draws reach it)."""

    @property
    def above_plateau(self) -> bool:
        return self.rows is None


@dataclass(frozen=True)
class Forecast:
    sizes: tuple[SizeForecast, ...]
    plateau: Band
    """The curve's value at `HORIZON` times the largest measured size (the saturating forms' plateau)."""
    weights: Mapping[str, float]
    """Each form's weight in the ensemble."""
    target: TargetAnswer | None = None
    largest: int = 0
    """The largest measured size."""
    noise: float = 0.0
    """The noise of one run assumed (standard deviation of F1)."""
    curve: tuple[SizeForecast, ...] = ()
    """The band at the sizes of `grid` (for a plot)."""


# --- the forms -----------------------------------------------------------------------------------------------


def _power(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return np.asarray(a - b * np.power(n, -c), dtype=float)


def _exponential(n: np.ndarray, a: float, b: float, k: float) -> np.ndarray:
    return np.asarray(a - b * np.exp(-n / k), dtype=float)


def _powerlaw(n: np.ndarray, b: float, c: float) -> np.ndarray:
    return np.asarray(1.0 - b * np.power(n, -c), dtype=float)


def _sigmoid(n: np.ndarray, a: float, low: float, m: float, c: float) -> np.ndarray:
    return np.asarray(low + (a - low) / (1 + np.power(m / n, c)), dtype=float)


def _power_rows(target: float, a: float, b: float, c: float) -> float:
    return (b / (a - target)) ** (1 / c) if a > target else math.inf


def _exponential_rows(target: float, a: float, b: float, k: float) -> float:
    if a <= target:
        return math.inf
    return -k * math.log((a - target) / b) if b > a - target else 0.0  # b <= a - target: above it from the start


def _powerlaw_rows(target: float, b: float, c: float) -> float:
    return (b / (1.0 - target)) ** (1 / c) if target < 1.0 else math.inf


def _sigmoid_rows(target: float, a: float, low: float, m: float, c: float) -> float:
    if target >= a:
        return math.inf
    if target <= low:
        return 0.0
    return float(m / ((a - low) / (target - low) - 1) ** (1 / c))


@dataclass(frozen=True)
class _Form:
    curve: Callable[..., np.ndarray]
    rows: Callable[..., float]
    """The size at which the curve reaches a value (inf when never): the curve inverted."""
    start: Callable[[np.ndarray, np.ndarray], list[float]]
    bounds: Callable[[np.ndarray, np.ndarray], tuple[list[float], list[float]]]


_FORMS: dict[Form, _Form] = {
    "power": _Form(
        _power,
        _power_rows,
        lambda x, y: [min(1.0, float(y.max()) + 0.01), 1.0, 0.5],
        lambda x, y: ([0.0, 0.0, 1e-3], [1.0, 1e3, 5.0]),
    ),
    "exponential": _Form(
        _exponential,
        _exponential_rows,
        lambda x, y: [min(1.0, float(y.max()) + 0.01), 1.0, float(x.max()) / 4],
        lambda x, y: ([0.0, 0.0, 1.0], [1.0, 10.0, 1e8]),
    ),
    "powerlaw": _Form(
        _powerlaw,
        _powerlaw_rows,
        lambda x, y: [1.0, 0.2],
        lambda x, y: ([0.0, 1e-3], [1e3, 5.0]),
    ),
    "sigmoid": _Form(
        _sigmoid,
        _sigmoid_rows,
        lambda x, y: [min(1.0, float(y.max()) + 0.01), float(y.min()), float(np.exp(np.mean(np.log(x)))), 2.0],
        lambda x, y: ([0.0, 0.0, float(x.min()) / 10, 0.1], [1.0, 1.0, float(x.max()) * 10, 20.0]),
    ),
}


def _fit(form: Form, x: np.ndarray, y: np.ndarray, start: Sequence[float] | np.ndarray) -> np.ndarray | None:
    # Imported here, as in curve.py: only a study that forecasts pays scipy.optimize's import.
    from scipy.optimize import OptimizeWarning, curve_fit

    low, high = _FORMS[form].bounds(x, y)
    p0 = np.clip(np.asarray(start, dtype=float), low, high)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(_FORMS[form].curve, x, y, p0=p0, bounds=(low, high), maxfev=5_000)
    except (RuntimeError, ValueError):
        return None
    return np.asarray(params, dtype=float) if np.all(np.isfinite(params)) else None


# --- weighted percentiles ------------------------------------------------------------------------------------


def _quantiles(values: np.ndarray, weights: np.ndarray, levels: Sequence[float]) -> list[float]:
    """Weighted percentiles (the value at which the cumulative weight first reaches each level; inf allowed)."""
    order = np.argsort(values, kind="stable")
    ordered, cumulative = values[order], np.cumsum(weights[order])
    cumulative /= cumulative[-1]
    return [float(ordered[min(int(np.searchsorted(cumulative, level)), len(ordered) - 1)]) for level in levels]


def _tails() -> tuple[float, float, float]:
    return (1 - LEVEL) / 2, 0.5, 1 - (1 - LEVEL) / 2


# --- the forecast --------------------------------------------------------------------------------------------


def learning(points: Sequence[SizeResult]) -> list[SizeResult]:
    """The points from the onset of learning on: the sizes before the first with F1 above 0 say only that the
    curve had not begun (the model answered null everywhere), and no form describes a curve before its onset."""
    ordered = sorted(points, key=lambda p: p.samples)
    onset = next((i for i, p in enumerate(ordered) if p.score > 0.0), len(ordered))
    return ordered[onset:]


def check(points: Sequence[SizeResult], to: Sequence[int], target: float | None) -> None:
    """Raise ForecastError naming the field when the input cannot be forecast."""
    if len(points) < MIN_POINTS:
        raise ForecastError(f"learningCurve: {too_few(len(points))}")
    learned = learning(points)
    if len(learned) < MIN_POINTS:
        raise ForecastError(
            f"learningCurve: {too_few(len(learned))}; counted from the first size at which something was learned "
            "(F1 above 0)"
        )
    largest = max(p.samples for p in points)
    below = [n for n in to if n <= largest]
    if below:
        raise ForecastError(
            f"forecast.to: sizes must lie above the largest measured size ({largest:,}); got {below[0]:,}"
        )
    if target is not None and not 0.0 < target <= 1.0:
        raise ForecastError(f"target.f1: must lie in (0, 1], got {target}")


def _noise(points: Sequence[SizeResult]) -> float:
    """One run's noise: the pooled spread between repeats, at least `NOISE_FLOOR`."""
    repeated = [p for p in points if p.repeats > 1]
    if not repeated:
        return NOISE_FLOOR
    pooled = sum(p.spread**2 * (p.repeats - 1) for p in repeated) / sum(p.repeats - 1 for p in repeated)
    return max(NOISE_FLOOR, math.sqrt(pooled))


@dataclass(frozen=True)
class _Draws:
    """Every drawn curve: its form, parameters and ensemble weight."""

    forms: list[Form] = field(default_factory=list)
    params: list[np.ndarray] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def predict(self, sizes: np.ndarray) -> np.ndarray:
        return np.stack([_FORMS[f].curve(sizes, *p) for f, p in zip(self.forms, self.params, strict=True)])

    def rows(self, target: float) -> np.ndarray:
        return np.asarray([_FORMS[f].rows(target, *p) for f, p in zip(self.forms, self.params, strict=True)])


def _draw(points: Sequence[SizeResult], noise: float, draws: int, seed: int) -> tuple[_Draws, dict[str, float]]:
    x = np.asarray([p.samples for p in points], dtype=float)
    y = np.asarray([p.score for p in points], dtype=float)
    sigma = np.asarray([noise / math.sqrt(max(p.repeats, 1)) for p in points])
    forms: list[Form] = ["power", "exponential", "powerlaw"]
    if len(points) >= SIGMOID_MIN_POINTS:
        forms.append("sigmoid")
    criteria: dict[Form, float] = {}
    fitted: dict[Form, np.ndarray] = {}
    for form in forms:
        params = _fit(form, x, y, _FORMS[form].start(x, y))
        if params is None:
            continue
        residuals = (y - _FORMS[form].curve(x, *params)) / sigma
        criteria[form] = float(np.sum(residuals**2)) + 2 * len(params)
        fitted[form] = params
    if not fitted:
        raise ForecastError("learningCurve: no form of learning curve fits the measured points")
    best = min(criteria.values())
    raw = {form: math.exp(-(value - best) / 2) for form, value in criteria.items()}
    weights = {form: w / sum(raw.values()) for form, w in raw.items()}
    rng = np.random.default_rng(seed)
    out = _Draws()
    for form, params in fitted.items():
        kept = []
        for _ in range(draws):
            again = _fit(form, x, y + rng.normal(0.0, sigma), params)
            if again is not None:
                kept.append(again)
        for again in kept:
            out.forms.append(form)
            out.params.append(again)
            out.weights.append(weights[form] / len(kept))
    return out, {str(form): weight for form, weight in weights.items()}


def forecast(
    points: Sequence[SizeResult],
    to: Sequence[int],
    target: float | None = None,
    *,
    draws: int = DRAWS,
    seed: int = SEED,
    noise: float | None = None,
    grid: Sequence[int] = (),
) -> Forecast:
    """F1 forecast at the sizes `to` with an 80% band, and the rows needed to reach `target` (when given).

    The band is that of a new measurement at each size, as many repeats as the largest measured size had: the
    spread of the drawn curves plus the noise of one such mean. `noise` overrides the noise of one run (by default
    the spread between repeats, at least `NOISE_FLOOR`). `grid`: more sizes, anywhere, for a plot (`Forecast.curve`).
    """
    check(points, to, target)
    points = learning(points)
    noise = max(noise, NOISE_FLOOR) if noise is not None else _noise(points)
    drawn, weights = _draw(points, noise, draws, seed)
    w = np.asarray(drawn.weights)
    rng = np.random.default_rng(seed + 1)
    largest = points[-1]
    measurement = noise / math.sqrt(max(largest.repeats, 1))
    tails = _tails()

    def at(sizes: Sequence[int]) -> tuple[SizeForecast, ...]:
        x = np.asarray(sorted(set(sizes)), dtype=float)
        values = drawn.predict(x) if len(x) else np.zeros((len(w), 0))
        values = np.clip(values + rng.normal(0.0, measurement, values.shape), 0.0, 1.0)
        return tuple(SizeForecast(int(n), Band(*_quantiles(values[:, i], w, tails))) for i, n in enumerate(x))

    forecasts = at(to)
    horizon = float(largest.samples * HORIZON)
    plateau = Band(*_quantiles(np.clip(drawn.predict(np.asarray([horizon]))[:, 0], 0.0, 1.0), w, tails))
    answer = None
    if target is not None:
        rows = drawn.rows(target)
        rows = np.where(rows > horizon, math.inf, np.maximum(rows, 1.0))
        reach = float(np.sum(w[np.isfinite(rows)]))
        band = None
        if reach >= tails[0]:
            low, middle, high = _quantiles(rows, w, tails)
            band = RowsBand(*(math.ceil(v) if math.isfinite(v) else None for v in (low, middle, high)))
        answer = TargetAnswer(target, reach, band)
    return Forecast(forecasts, plateau, weights, answer, largest.samples, noise, at(grid))


def labels_cost(rows: int | None, largest: int, cost_per_label: float | None) -> float | None:
    """What labelling from the largest measured size up to `rows` costs (None without a price or a size)."""
    if rows is None or cost_per_label is None:
        return None
    return max(0, rows - largest) * cost_per_label


def describe(result: Forecast, attribute: str | None = None, cost_per_label: float | None = None) -> str:
    """The forecast in plain words, for the recommendation."""
    what = f"{attribute} F1" if attribute else "F1"
    parts = []
    if result.sizes:
        last = result.sizes[-1]
        parts.append(
            f"at {last.samples:,} rows {what} {last.f1.middle:.3f} (80% band {last.f1.low:.3f}-{last.f1.high:.3f})"
        )
    answer = result.target
    if answer is not None:
        if answer.rows is None:
            parts.append(
                f"{what} {answer.f1:.2f} lies above the plateau's band ({result.plateau.low:.3f}-"
                f"{result.plateau.high:.3f}): more labels are unlikely to reach it"
            )
        elif answer.rows.middle is None:
            parts.append(
                f"{what} {answer.f1:.2f}: only {answer.reach:.0%} of the forecasts reach it (the most hopeful tenth "
                f"by {answer.rows.low:,} rows)"
            )
        elif answer.rows.middle <= result.largest:
            parts.append(f"{what} {answer.f1:.2f} is reached by ~{answer.rows.middle:,} rows, within the measured data")
        else:
            rows, middle = answer.rows, answer.rows.middle
            high = f"{rows.high:,}" if rows.high is not None else f"more than {result.largest * HORIZON:,}"
            text = f"{what} {answer.f1:.2f} needs ~{middle:,} rows (80% band {rows.low:,} to {high})"
            cost = labels_cost(middle, result.largest, cost_per_label)
            if cost is not None:
                text += f", labelling {middle - result.largest:,} more rows costs ~{cost:,.0f}"
            parts.append(text)
    return "; ".join(parts)


ATTRIBUTES = 3
"""Attributes forecast beside the headline score: the late-gain drivers."""
GRID = 40
"""Sizes the band is drawn at for a plot, log-spaced from the smallest measured size to the largest forecast one (at
least four times the largest measured)."""


@dataclass(frozen=True)
class Outlook:
    """Everything a study forecasts: the headline F1, the attributes that drive the late gains, in plain words."""

    overall: Forecast | None
    attributes: Mapping[str, Forecast]
    message: str
    cost_per_label: float | None = None

    def cost(self, rows: int | None) -> float | None:
        largest = self.overall.largest if self.overall else 0
        return labels_cost(rows, largest, self.cost_per_label)


def _drivers(points: Sequence[SizeResult]) -> list[str]:
    """The attributes that gained most over the last doubling or so of the measured sizes (still rising there)."""
    last, before = points[-1].attribute_scores, points[-2].attribute_scores
    gains = {a: last[a] - before[a] for a in last if a in before and all(a in p.attribute_scores for p in points)}
    rising = sorted((a for a, g in gains.items() if g > 0), key=lambda a: (-gains[a], a))
    return rising[:ATTRIBUTES]


def outlook(
    points: Sequence[SizeResult],
    to: Sequence[int],
    target: float | None,
    cost_per_label: float | None = None,
) -> Outlook:
    """The study's forecast: F1 at `to`, the rows to reach `target`, and the same for the late-gain attributes."""
    key = tuple((p.samples, p.score, p.spread, p.repeats, tuple(sorted(p.attribute_scores.items()))) for p in points)
    return _outlook(key, tuple(to), target, cost_per_label)


@functools.lru_cache(maxsize=64)
def _outlook(
    key: tuple[tuple[int, float, float, int, tuple[tuple[str, float], ...]], ...],
    to: tuple[int, ...],
    target: float | None,
    cost_per_label: float | None,
) -> Outlook:
    # Cached: the operator rebuilds a study's status every pass, and the points change only when a run finishes.
    points = sorted(
        (SizeResult(n, score, spread, repeats, dict(attributes)) for n, score, spread, repeats, attributes in key),
        key=lambda p: p.samples,
    )
    if len(points) < MIN_POINTS:
        return Outlook(None, {}, too_few(len(points)), cost_per_label)
    if all(p.score <= 0.0 for p in points):
        return Outlook(None, {}, "nothing learned at any size: nothing to forecast", cost_per_label)
    top = max([*to, points[-1].samples * 4])
    low = points[0].samples
    grid = sorted({round(low * (top / low) ** (i / (GRID - 1))) for i in range(GRID)})
    try:
        overall = forecast(points, to, target, grid=grid)
    except ForecastError as error:
        return Outlook(None, {}, str(error).removeprefix("learningCurve: "), cost_per_label)
    attributes: dict[str, Forecast] = {}
    for attribute in _drivers(points):
        series = [SizeResult(p.samples, p.attribute_scores[attribute], 0.0, p.repeats) for p in points]
        fit = fit_curve(series)
        scatter = fit.rmse * math.sqrt(points[-1].repeats) if fit is not None else overall.noise
        try:
            attributes[attribute] = forecast(series, to, target, noise=max(overall.noise, scatter))
        except ForecastError:
            continue  # no form fits this attribute's points: the headline forecast stands alone
    words = [describe(overall, cost_per_label=cost_per_label)]
    words += [describe(f, attribute=a, cost_per_label=cost_per_label) for a, f in attributes.items()]
    return Outlook(overall, attributes, "; ".join(w for w in words if w), cost_per_label)
