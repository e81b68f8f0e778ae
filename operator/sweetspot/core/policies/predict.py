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

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.base import early_signal
from sweetspot.core.policies.guard import promotion_order
from sweetspot.core.records import TrialView

MAX_EVALUATIONS = 200
"""Function evaluations a family's fit may take: a fit to a few points converges in tens, and a family that cannot
follow the curve (a straight line, say) would otherwise spend seconds failing."""
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
                bounds = ([-math.inf, -math.inf, 1e-3], [math.inf, math.inf, 10.0])  # a rate: positive, not absurd
                params, _ = curve_fit(family, ts, ys, p0=(y2, ys[0] - y2, 1.0), bounds=bounds, max_nfev=MAX_EVALUATIONS)
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


Features = dict[str, tuple[float, float]]
"""A trial's candidate predictors of its final score, each (value, spread): `last`, its early signal where it was
judged; `curve`, that signal extrapolated to the end of training by the families above."""


def _features(spec: FineTuneStudySpec, trial: TrialView) -> Features | None:
    if trial.early is None or trial.infeasible:
        return None
    signal = early_signal(spec)
    found = {"last": (trial.early.metric(signal), 0.0)}
    if (curve := extrapolate([(p["fraction"], p[signal]) for p in trial.early.curve])) is not None:
        found["curve"] = curve
    return found


Line = tuple[float, float, float]
"""(intercept, slope, residual standard deviation) of the final score on a feature."""


def _line(pairs: Sequence[tuple[float, float]], minimum: int = MIN_PAIRS) -> Line | None:
    """The least-squares line, once `minimum` distinct feature values support it (the same configuration trained
    twice is one point of evidence, not two)."""
    if len({x for x, _ in pairs}) < minimum:
        return None
    from scipy import stats as scipy_stats

    fit = scipy_stats.linregress([x for x, _ in pairs], [y for _, y in pairs])
    residuals = [y - (fit.intercept + fit.slope * x) for x, y in pairs]
    spread = math.sqrt(sum(r * r for r in residuals) / max(1, len(pairs) - 2))
    return float(fit.intercept), float(fit.slope), spread


def _held_out_error(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean squared error of each pair predicted by the line through the others (inf where one is undefined)."""
    errors = []
    for i, (x, y) in enumerate(pairs):
        line = _line([*pairs[:i], *pairs[i + 1 :]], minimum=2)
        if line is None:
            return math.inf
        errors.append((y - line[0] - line[1] * x) ** 2)
    return statistics.fmean(errors)


@dataclass(frozen=True)
class Model:
    """The calibration chosen on the study's own pairs: the feature whose line predicts held-out finals best."""

    feature: str
    line: Line
    pairs: int
    distinct: int
    """Distinct feature values among the pairs (what the line's degrees of freedom count)."""

    def predict(self, features: Features, bounded: bool) -> Prediction | None:
        if self.feature not in features:
            return None
        value, spread = features[self.feature]
        from scipy import stats as scipy_stats

        intercept, slope, residual = self.line
        mean = intercept + slope * value
        # Student's t with the line's degrees of freedom: a line through 3 points knows little about its scatter.
        quantile = float(scipy_stats.t.ppf(0.9, max(1, self.distinct - 2)))
        half = quantile * math.sqrt(residual * residual * (1 + 1 / self.pairs) + (slope * spread) ** 2)
        low, high = mean - half, mean + half
        if bounded:  # a score: F1, accuracy, token F1
            mean, low, high = (min(1.0, max(0.0, v)) for v in (mean, low, high))
        return Prediction(round(mean, 4), round(low, 4), round(high, 4))


def _model(features: dict[int, Features], finals: dict[int, float]) -> Model | None:
    best: tuple[float, Model] | None = None
    for name in ("last", "curve"):
        pairs = [(features[n][name][0], y) for n, y in finals.items() if name in features[n]]
        line = _line(pairs)
        if line is None:
            continue
        error = _held_out_error(pairs)
        if best is None or error < best[0]:
            best = (error, Model(name, line, len(pairs), len({x for x, _ in pairs})))
    return best[1] if best else None


def _observed(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> tuple[dict[int, Features], dict[int, float]]:
    features = {t.number: f for t in trials if (f := _features(spec, t)) is not None}
    objective = spec.objective.metric
    finals = {t.number: t.final.metric(objective) for t in trials if t.final is not None and t.number in features}
    return features, finals


def model(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Model | None:
    """The study's calibration now; None until `MIN_PAIRS` (early, final) pairs exist."""
    return _model(*_observed(spec, trials))


def predictions(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> dict[int, Prediction]:
    """Every judged trial's final score with an 80% interval; empty until the study's pairs calibrate a model."""
    features, finals = _observed(spec, trials)
    chosen = _model(features, finals)
    if chosen is None:
        return {}
    bounded = spec.objective.metric != "loss"
    return {n: p for n, f in features.items() if (p := chosen.predict(f, bounded)) is not None}


def calibration(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Calibration:
    """The share of finals inside the 80% interval predicted for them from the other pairs alone (the model chosen
    again without each)."""
    features, finals = _observed(spec, trials)
    bounded = spec.objective.metric != "loss"
    inside = checked = 0
    for number, actual in finals.items():
        chosen = _model(features, {n: y for n, y in finals.items() if n != number})
        predicted = chosen.predict(features[number], bounded) if chosen else None
        if predicted is None:
            continue
        checked += 1
        inside += predicted.covers(actual)
    return Calibration(len(finals), round(inside / checked, 4) if checked else None, checked)


@dataclass(frozen=True)
class Forecast:
    """What the status, the metrics and the report show of the predictor."""

    predictions: dict[int, Prediction]
    model: Model | None
    calibration: Calibration


def forecast(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Forecast:
    return Forecast(predictions(spec, trials), model(spec, trials), calibration(spec, trials))


def predicted_promotions(spec: FineTuneStudySpec, trials: Sequence[TrialView], fallback: int) -> list[TrialView]:
    """The trials that train to the end under `promote: predicted` (those with a final score included), the most
    promising first; the best `fallback` by early score until the predictor is calibrated, and after it for a trial
    it cannot predict (one without the chosen feature: a curve cut short by few steps, a reused trial)."""
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
    unpredicted = [t for t in ranked[:fallback] if t.final is None and t.number not in predicted]
    return [*(t for t in ranked if t.final is not None), *chosen, *unpredicted]
