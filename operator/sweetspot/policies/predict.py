"""Final-score prediction for `promote: predicted` (pure; scipy, imported only when a study predicts).

Each trial's early stage evaluates several times (`earlyEvaluation.curvePoints`). Its curve of the early signal
(validation loss by default) is extrapolated to the end of training by a small ensemble of saturating curve
families (as learning-curve extrapolation does it: Domhan et al. 2015), each fit kept between "the curve stops
here" and "it goes on at its last slope", the only places a saturating curve can go. The extrapolated signal is
then mapped to the final objective by a straight line fitted to the study's own (extrapolated, final) pairs, with
an 80% interval from that line's residuals and the ensemble's spread. The published learned predictors (LC-PFN,
ifBO) download their weights at run time, which a cluster without internet cannot do.

Promotion: the trials whose predicted upper bound reaches the bar (the best final score so far, or the best
predicted lower bound if that is higher) train to the end; until `MIN_PAIRS` finals calibrate the line, the best
`promoteTopK` by early score do, as with `promote: topK`.
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sweetspot.api import FineTuneStudySpec
from sweetspot.policies.base import early_signal
from sweetspot.policies.guard import promotion_order
from sweetspot.records import TrialView

Z80 = 1.2816
"""The two-sided 80% normal quantile (scipy.stats.norm.ppf(0.9))."""
MIN_PAIRS = 3
"""(extrapolated, final) pairs a calibration line needs: two points fit any line exactly."""


def _families() -> dict[str, Callable[..., Any]]:
    import numpy as np

    return {
        "power": lambda t, a, b, c: a + b * np.power(t, -c),
        "exponential": lambda t, a, b, c: a + b * np.exp(-c * t),
        "hyperbolic": lambda t, a, b, c: a + b / (t + c),
    }


def extrapolate(points: Sequence[tuple[float, float]], at: float = 1.0) -> tuple[float, float] | None:
    """The value at `at` of a curve measured at `points` (fraction, value), by each saturating family that fits:
    (mean, standard deviation over the families); None below 3 points."""
    return _extrapolate(tuple(points), at)


@functools.lru_cache(maxsize=4096)
def _extrapolate(points: tuple[tuple[float, float], ...], at: float) -> tuple[float, float] | None:
    # Cached: a trial's early curve never changes, and every plan asks again for every trial.
    if len(points) < 3:
        return None
    from scipy.optimize import curve_fit

    ts = [t for t, _ in points]
    ys = [y for _, y in points]
    (t1, y1), (t2, y2) = points[-2], points[-1]
    # A saturating curve ends between where it stands and where its last slope would take it.
    linear = y2 + (y2 - y1) / (t2 - t1) * (at - t2) if t2 > t1 else y2
    low, high = min(y2, linear), max(y2, linear)
    found = []
    for family in _families().values():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # OptimizeWarning on an exact fit: expected with 3 points
                params, _ = curve_fit(
                    family, ts, ys, p0=(y2, ys[0] - y2, 1.0), bounds=([-math.inf, -math.inf, 1e-3], [math.inf] * 3),
                    maxfev=2000,
                )  # fmt: skip
            value = float(family(at, *params))
        except (RuntimeError, ValueError, TypeError, FloatingPointError):
            continue  # this family cannot follow the curve: the others vote
        if math.isfinite(value):
            found.append(min(high, max(low, value)))
    if not found:
        return (low + high) / 2, (high - low) / 2
    return statistics.fmean(found), statistics.pstdev(found) if len(found) > 1 else (high - low) / 2


@dataclass(frozen=True)
class Prediction:
    """A trial's final objective, predicted from its early curve, with an 80% interval."""

    value: float
    low: float
    high: float

    def covers(self, actual: float) -> bool:
        return self.low <= actual <= self.high


@dataclass(frozen=True)
class Calibration:
    """How predictions fared: the share of finals inside their 80% interval, each predicted without its own pair
    (leave one out); None until a trial can be predicted from `MIN_PAIRS` others."""

    pairs: int
    coverage: float | None
    checked: int


def _extrapolated(spec: FineTuneStudySpec, trial: TrialView) -> tuple[float, float] | None:
    if trial.early is None or trial.infeasible:
        return None
    signal = early_signal(spec)
    return extrapolate([(p["fraction"], p[signal]) for p in trial.early.curve])


def _line(pairs: Sequence[tuple[float, float]]) -> tuple[float, float, float] | None:
    """(intercept, slope, residual standard deviation) of final on extrapolated, or None when it is undefined."""
    if len(pairs) < MIN_PAIRS or len({x for x, _ in pairs}) < 2:
        return None
    from scipy import stats as scipy_stats

    fit = scipy_stats.linregress([x for x, _ in pairs], [y for _, y in pairs])
    residuals = [y - (fit.intercept + fit.slope * x) for x, y in pairs]
    spread = math.sqrt(sum(r * r for r in residuals) / max(1, len(pairs) - 2))
    return float(fit.intercept), float(fit.slope), spread


def _predict(line: tuple[float, float, float], pairs: int, curve: tuple[float, float], bounded: bool) -> Prediction:
    intercept, slope, spread = line
    value = intercept + slope * curve[0]
    half = Z80 * math.sqrt(spread * spread * (1 + 1 / pairs) + (slope * curve[1]) ** 2)
    low, high = value - half, value + half
    if bounded:  # a score: F1, accuracy, token F1
        value, low, high = (min(1.0, max(0.0, v)) for v in (value, low, high))
    return Prediction(round(value, 4), round(low, 4), round(high, 4))


def predictions(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> dict[int, Prediction]:
    """Every trial with an early curve, predicted from the line through the study's (extrapolated, final) pairs;
    empty until `MIN_PAIRS` pairs exist."""
    objective = spec.objective.metric
    curves = {t.number: c for t in trials if (c := _extrapolated(spec, t)) is not None}
    pairs = [(curves[t.number][0], t.final.metric(objective)) for t in trials if t.final and t.number in curves]
    line = _line(pairs)
    if line is None:
        return {}
    return {n: _predict(line, len(pairs), c, objective != "loss") for n, c in curves.items()}


def calibration(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Calibration:
    """The share of finals inside the 80% interval predicted for them from the other pairs alone."""
    objective = spec.objective.metric
    curves = {t.number: c for t in trials if (c := _extrapolated(spec, t)) is not None}
    finals = {t.number: t.final.metric(objective) for t in trials if t.final and t.number in curves}
    inside = checked = 0
    for number, actual in finals.items():
        others = [(curves[n][0], y) for n, y in finals.items() if n != number]
        line = _line(others)
        if line is None:
            continue
        checked += 1
        inside += _predict(line, len(others), curves[number], objective != "loss").covers(actual)
    return Calibration(len(finals), round(inside / checked, 4) if checked else None, checked)


def predicted_promotions(spec: FineTuneStudySpec, trials: Sequence[TrialView], fallback: int) -> list[TrialView]:
    """The trials that train to the end under `promote: predicted` (those with a final score included), the most
    promising first; the best `fallback` by early score until the predictor is calibrated."""
    ranked = promotion_order(spec, trials)
    predicted = predictions(spec, trials)
    if not predicted:
        return ranked[:fallback]
    sign = -1.0 if spec.objective.direction == "minimize" else 1.0
    finals = [sign * t.final.metric(spec.objective.metric) for t in trials if t.final is not None]
    waiting = [t for t in ranked if t.final is None and t.number in predicted]

    def upper(number: int) -> float:
        p = predicted[number]
        return p.high if sign > 0 else -p.low

    def lower(number: int) -> float:
        p = predicted[number]
        return p.low if sign > 0 else -p.high

    bar = max([*finals, *(lower(t.number) for t in waiting)], default=-math.inf)
    chosen = sorted((t for t in waiting if upper(t.number) >= bar), key=lambda t: -sign * predicted[t.number].value)
    return [*(t for t in ranked if t.final is not None), *chosen]
