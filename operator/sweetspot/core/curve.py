"""The learning curve: micro-F1 against training-set size, a saturating fit, and the sweet spot (pure; scipy).

Fine-tuning curves rise steeply, slow down and flatten; with very few rows a model may not learn at all first
(flat at the label prior, then a rise). Three saturating shapes are fitted: a power law with a plateau,
`a - b * n**-c`, an exponential approach, `a - b * exp(-n / k)`, and a sigmoid in log n,
`low + (a - low) / (1 + (m / n)**c)` for curves that start flat; the one with the lowest AIC is kept (the
sigmoid's fourth parameter must pay for itself).
A shape is fitted only to more sizes than it has parameters: with as many sizes as parameters a shape passes through
every point whatever the curve, its residual is zero, and its plateau, gains and advice say nothing about the data.
So a fit needs `MIN_POINTS` = 4 sizes (one degree of freedom for the three-parameter shapes) and the sigmoid five;
with fewer, nothing is fitted, no plateau or gain is claimed, and the verdict says `TOO_FEW`.
The **sweet spot** is the smallest measured size whose fitted score is within `tolerance` of the plateau. A
plateau is only believed when the curve has reached it inside the measured range: when even the largest size is
more than `tolerance` below the fitted plateau, the curve has not saturated and no sweet spot is claimed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Shape = Literal["power", "exponential", "sigmoid"]
PARAMETERS = 3
"""Parameters of the smallest shapes (power, exponential)."""
MIN_POINTS = PARAMETERS + 1
"""Sizes a learning curve needs before it is fitted: one more than its parameters (one degree of freedom)."""
TOO_FEW = "too few sizes to fit: add sizes"


def too_few(measured: int) -> str:
    """What a study with too few sizes for a fit is told (no fit, no plateau, no advice)."""
    return (
        f"{TOO_FEW} ({measured} measured; a learning curve has {PARAMETERS} parameters, so a fit needs at least "
        f"{MIN_POINTS})"
    )


@dataclass(frozen=True)
class SizeResult:
    samples: int
    score: float
    """The headline score (micro-F1), mean over repeats."""
    spread: float = 0.0
    """Standard deviation of the score over repeats (0 with one repeat)."""
    repeats: int = 1
    attribute_scores: Mapping[str, float] = field(default_factory=dict)
    """Per-attribute F1, mean over repeats."""
    accuracy: float | None = None
    """Exact match over applicable pairs, mean over repeats (detail beside the score)."""


@dataclass(frozen=True)
class Fit:
    shape: Shape
    params: Mapping[str, float]
    plateau: float
    rmse: float

    def predict(self, samples: float) -> float:
        return float(_SHAPES[self.shape][0](np.asarray([samples], dtype=float), *self.params.values())[0])

    def describe(self) -> str:
        p = self.params
        if self.shape == "power":
            formula = f"{p['a']:.3f} - {p['b']:.3g} * n^-{p['c']:.2f}"
        elif self.shape == "exponential":
            formula = f"{p['a']:.3f} - {p['b']:.3g} * exp(-n / {p['k']:.0f})"
        else:
            formula = f"{p['low']:.3f} + ({p['a']:.3f} - {p['low']:.3f}) / (1 + ({p['m']:.0f} / n)^{p['c']:.2f})"
        return f"{self.shape}: {formula} (rmse {self.rmse:.4f})"

    def gain_per_thousand(self, samples: float) -> float:
        """Score gained by 1,000 more samples at this size, by the fit."""
        return self.predict(samples + 1000) - self.predict(samples)


@dataclass(frozen=True)
class Verdict:
    fit: Fit | None
    sweet_spot: SizeResult | None
    saturated: bool
    leading_attribute: Mapping[int, str]
    """For each size, the attribute that gains most from there to the largest size (the late-gain driver)."""
    recommendation: str


def _power(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return np.asarray(a - b * np.power(n, -c), dtype=float)


def _exponential(n: np.ndarray, a: float, b: float, k: float) -> np.ndarray:
    return np.asarray(a - b * np.exp(-n / k), dtype=float)


def _sigmoid(n: np.ndarray, a: float, low: float, m: float, c: float) -> np.ndarray:
    return np.asarray(low + (a - low) / (1 + np.power(m / n, c)), dtype=float)


_SHAPES: dict[Shape, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "power": (_power, ("a", "b", "c")),
    "exponential": (_exponential, ("a", "b", "k")),
    "sigmoid": (_sigmoid, ("a", "low", "m", "c")),
}
SIGMOID_MIN_POINTS = len(_SHAPES["sigmoid"][1]) + 1


def fit_curve(points: Sequence[SizeResult]) -> Fit | None:
    """The best saturating fit by AIC, or None with fewer than `MIN_POINTS` sizes or when no shape converges."""
    if len(points) < MIN_POINTS:
        return None
    # Imported here: only a study with a data-efficiency sweep fits a curve, and scipy.optimize costs the
    # operator's start-up and memory (about 65 ms and several MiB) for every study that has none.
    from scipy.optimize import OptimizeWarning, curve_fit

    x = np.asarray([p.samples for p in points], dtype=float)
    y = np.asarray([p.score for p in points], dtype=float)
    top, bottom, span = float(y.max()), float(y.min()), float(x.max())
    middle = float(np.exp(np.mean(np.log(x))))
    starts: dict[Shape, tuple[list[float], tuple[list[float], list[float]]]] = {
        # The plateau may lie above the best measured point, never above a score of 1.
        "power": ([min(1.0, top + 0.01), 1.0, 0.5], ([0.0, 0.0, 1e-3], [1.0, 1e3, 5.0])),
        "exponential": ([min(1.0, top + 0.01), 1.0, span / 4], ([0.0, 0.0, 1.0], [1.0, 10.0, 1e8])),
    }
    if len(points) >= SIGMOID_MIN_POINTS:
        starts["sigmoid"] = (
            [min(1.0, top + 0.01), bottom, middle, 2.0],
            ([0.0, 0.0, float(x.min()) / 10, 0.1], [1.0, 1.0, span * 10, 20.0]),
        )
    fits: list[tuple[float, Fit]] = []
    for shape, (start, bounds) in starts.items():
        function, names = _SHAPES[shape]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(function, x, y, p0=start, bounds=bounds, maxfev=20_000)
        except (RuntimeError, ValueError):
            continue
        residuals = y - function(x, *params)
        sse = max(float(np.sum(residuals**2)), 1e-12)
        aic = len(y) * math.log(sse / len(y)) + 2 * len(params)
        rmse = math.sqrt(sse / len(y))
        fits.append((aic, Fit(shape, dict(zip(names, map(float, params), strict=True)), float(params[0]), rmse)))
    return min(fits, key=lambda f: f[0])[1] if fits else None


NO_FIT = "no learning-curve shape fits the measured sizes: no plateau or sweet spot to claim"


def _leading_attributes(points: Sequence[SizeResult]) -> dict[int, str]:
    last = points[-1].attribute_scores
    leading: dict[int, str] = {}
    for point in points[:-1]:
        gains = {a: last[a] - v for a, v in point.attribute_scores.items() if a in last}
        if gains and max(gains.values()) > 0:
            leading[point.samples] = max(sorted(gains), key=lambda a: gains[a])
    return leading


def judge(points: Sequence[SizeResult], tolerance: float) -> Verdict:
    """Fit the curve and find its sweet spot; say plainly when there is none."""
    points = sorted(points, key=lambda p: p.samples)
    leading = _leading_attributes(points)
    if points and all(p.score <= 0.0 for p in points):
        # A curve flat at F1 0 is not a plateau: nothing was learned at any size, so no size is a sweet spot.
        return Verdict(
            None,
            None,
            False,
            leading,
            "nothing learned at any size (F1 0: no value extracted right); train longer (more steps or a higher "
            "learning rate) or check the data before reading a learning curve",
        )
    fit = fit_curve(points)
    if fit is None:
        return Verdict(None, None, False, leading, too_few(len(points)) if len(points) < MIN_POINTS else NO_FIT)
    largest = points[-1]
    saturated = fit.plateau - fit.predict(largest.samples) <= tolerance
    if not saturated:
        gain = fit.gain_per_thousand(largest.samples)
        return Verdict(
            fit,
            None,
            False,
            leading,
            f"not saturated: at {largest.samples:,} samples F1 still gains {gain:.3f} per 1,000 more samples "
            f"(fitted plateau {fit.plateau:.3f}); label more data",
        )
    spot = next(p for p in points if fit.plateau - fit.predict(p.samples) <= tolerance)
    message = (
        f"past ~{spot.samples:,} samples more data stops paying "
        f"(within {tolerance:.3f} of the fitted plateau {fit.plateau:.3f})"
    )
    if spot.samples in leading:
        message += (
            f"; the gains left come from {leading[spot.samples]}: label more pages that have {leading[spot.samples]}"
        )
    return Verdict(fit, spot, True, leading, message)
