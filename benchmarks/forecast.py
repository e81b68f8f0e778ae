"""Calibration of the learning-curve forecast (`spec.dataEfficiency.forecast`, `target`): backtests on measured curves.

Each backtest fits the forecast on the small sizes of a measured curve only and compares its 80% band and its middle
with the F1 measured at the larger sizes it never saw. Measured points are replayed from `benchmarks/data/`, so this
runs in seconds and never trains:

- `forecast_ae110k.json`: the built-in tagger on the AE-110k titles (`python -m benchmarks realdata --skip agreement`,
  docs/performance.md, "Real product data" (a)): 50 to 1,568 titles, mean and spread of 3 repeats per size (the
  runs' own scores were not kept, so each backtest here is one sweep of 3 repeats);
- `forecast_builtin.json`: the built-in tagger on the synthetic product pages, 25 to 600 rows, 4 repeats per size,
  every run's own F1 kept (`sweetspot run benchmarks/data/forecast-builtin.yaml`, then `--collect`): each pair and
  each triple of repeats is one more sweep to backtest.

A backtest fits a window of at least 3 consecutive sizes ending at a cut point (every start and cut point; sizes
before the onset of learning, F1 0, are never fitted), with the mean and spread of its repeats, and predicts every
larger size; the measured value is the same repeats' mean there.
Reported: the share of measured values inside the 80% band (goal: at least 70%), and the median absolute error of the
band's middle, by how far it extrapolates (the size over the largest fitted one; goal: at most 0.03 F1 at 4x).

    python -m benchmarks forecast [--data examples/ae-110k | --data builtin] [--json out.json]
    python -m benchmarks forecast --collect .sweetspot/core/forecast/default-forecast-builtin   (rebuild the replay)

It ends with the AE-110k answer: the whole curve, forecast to 2x, 4x and 8x the titles there are, and how many titles
reach F1 0.75 and 0.80.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweetspot.core.curve import MIN_POINTS, SizeResult
from sweetspot.core.forecast import ForecastError, forecast, learning

DATA = Path(__file__).parent / "data"
SETS = {"ae-110k": DATA / "forecast_ae110k.json", "builtin": DATA / "forecast_builtin.json"}
SEEDS_PER_SWEEP = (2, 3)
"""Repeats per sweep when a set keeps every run's score: each combination of 2 or 3 of its runs is one sweep."""
RATIO_BUCKETS = ((1.0, 2.5, "<= 2.5x"), (2.5, 5.0, "2.5-5x (4x)"), (5.0, 1e9, "> 5x"))
TARGETS = (0.75, 0.80)


@dataclass(frozen=True)
class Backtest:
    dataset: str
    sweep: str
    fitted: tuple[int, ...]
    samples: int
    measured: float
    low: float
    middle: float
    high: float

    @property
    def ratio(self) -> float:
        return self.samples / self.fitted[-1]

    @property
    def inside(self) -> bool:
        return self.low <= self.measured <= self.high

    @property
    def error(self) -> float:
        return abs(self.middle - self.measured)


def _sweeps(data: dict[str, Any]) -> list[tuple[str, list[SizeResult]]]:
    """The sweeps a set holds: its mean curve, or every combination of `SEEDS_PER_SWEEP` of its kept runs."""
    points = data["points"]
    if "runs" not in points[0]:
        curve = [SizeResult(p["samples"], p["f1"], p["spread"], p["repeats"]) for p in points]
        return [("mean", curve)]
    repeats = min(len(p["runs"]) for p in points)
    sweeps = []
    combinations = (c for k in SEEDS_PER_SWEEP for c in itertools.combinations(range(repeats), k))
    for chosen in combinations:
        curve = []
        for p in points:
            runs = [p["runs"][r] for r in chosen]
            curve.append(SizeResult(p["samples"], statistics.fmean(runs), statistics.stdev(runs), len(runs)))
        sweeps.append(("repeats " + "+".join(map(str, chosen)), curve))
    return sweeps


def backtests(name: str, data: dict[str, Any]) -> list[Backtest]:
    out = []
    for sweep, measured in _sweeps(data):
        # Windows start at the onset of learning: the sizes before it are left out of every fit (forecast.learning),
        # so a window that starts earlier repeats a backtest.
        curve = learning(measured)
        for start, end in itertools.combinations(range(len(curve) + 1), 2):
            window = curve[start:end]
            ahead = curve[end:]
            if len(window) < MIN_POINTS or not ahead:
                continue
            try:
                result = forecast(window, [p.samples for p in ahead])
            except ForecastError:
                continue
            for point, predicted in zip(ahead, result.sizes, strict=True):
                band = predicted.f1
                out.append(
                    Backtest(
                        name,
                        sweep,
                        tuple(p.samples for p in window),
                        point.samples,
                        point.score,
                        band.low,
                        band.middle,
                        band.high,
                    )
                )
    return out


def summary_rows(tests: Sequence[Backtest]) -> list[dict[str, Any]]:
    rows = []
    groups: list[tuple[str, str, list[Backtest]]] = []
    for dataset in sorted({t.dataset for t in tests}):
        mine = [t for t in tests if t.dataset == dataset]
        for low, high, label in RATIO_BUCKETS:
            groups.append((dataset, label, [t for t in mine if low < t.ratio <= high]))
        groups.append((dataset, "all", mine))
    groups.append(("both", "all", list(tests)))
    for dataset, label, group in groups:
        if not group:
            continue
        rows.append(
            {
                "data": dataset,
                "extrapolation": label,
                "backtests": len(group),
                "coverage": sum(t.inside for t in group) / len(group),
                "medianAbsError": statistics.median(t.error for t in group),
                "medianBandWidth": statistics.median(t.high - t.low for t in group),
            }
        )
    return rows


def answer_ae110k(data: dict[str, Any]) -> dict[str, Any]:
    """The AE-110k study's answer: the forecast past all 1,568 titles and the titles to reach each target."""
    curve = [SizeResult(p["samples"], p["f1"], p["spread"], p["repeats"]) for p in data["points"]]
    largest = curve[-1].samples
    to = [largest * 2, largest * 4, largest * 8]
    answers: dict[str, Any] = {"forecast": [], "targets": {}}
    for target in TARGETS:
        result = forecast(curve, to, target)
        answers["forecast"] = [
            {"samples": p.samples, "f1": p.f1.middle, "low": p.f1.low, "high": p.f1.high} for p in result.sizes
        ]
        answers["plateau"] = {"f1": result.plateau.middle, "low": result.plateau.low, "high": result.plateau.high}
        answers["forms"] = dict(result.weights)
        assert result.target is not None
        rows = result.target.rows
        answers["targets"][f"{target:.2f}"] = {
            "reach": result.target.reach,
            "abovePlateau": result.target.above_plateau,
            "rows": rows.middle if rows else None,
            "rowsLow": rows.low if rows else None,
            "rowsHigh": rows.high if rows else None,
        }
    return answers


def render(rows: Sequence[dict[str, Any]], answer: dict[str, Any] | None) -> str:
    lines = [
        "| data | extrapolation | backtests | inside the 80% band | median abs. error | median band width |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['data']} | {row['extrapolation']} | {row['backtests']} | {row['coverage']:.0%} | "
            f"{row['medianAbsError']:.3f} | {row['medianBandWidth']:.3f} |"
        )
    if answer is not None:
        lines.append("")
        lines.append("AE-110k, all 1,568 titles fitted:")
        for p in answer["forecast"]:
            lines.append(f"  at {p['samples']:,} titles: F1 {p['f1']:.3f} (80% band {p['low']:.3f}-{p['high']:.3f})")
        plateau = answer["plateau"]
        lines.append(f"  plateau {plateau['f1']:.3f} (80% band {plateau['low']:.3f}-{plateau['high']:.3f})")
        for target, each in answer["targets"].items():
            if each["abovePlateau"]:
                text = f"above the plateau's band ({each['reach']:.0%} of the forecasts reach it)"
            else:
                high = f"{each['rowsHigh']:,}" if each["rowsHigh"] else "not reached"
                if each["rows"]:
                    text = f"~{each['rows']:,} titles (80% band {each['rowsLow']:,} to {high})"
                else:
                    text = (
                        f"only {each['reach']:.0%} of the forecasts reach it (the most hopeful tenth by "
                        f"{each['rowsLow']:,} titles)"
                    )
            lines.append(f"  F1 {target}: {text}")
    return "\n".join(lines)


def collect(folder: Path) -> dict[str, Any]:
    """Every run's final F1 by size from a finished sweep's run folder (`<workdir>/<namespace>-<study>`)."""
    by_size: dict[int, list[float]] = {}
    for result in sorted((folder / "runs").glob("*/result-full.json")):
        data = json.loads(result.read_text())
        by_size.setdefault(data["samples"], []).append(data["evaluations"][-1]["f1"])
    return {
        "description": "Built-in tagger on the synthetic product pages: final micro-F1 of every run of "
        "benchmarks/data/forecast-builtin.yaml (hold: epochs; 150 validation pages)",
        "points": [{"samples": n, "runs": runs} for n, runs in sorted(by_size.items())],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks forecast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="all", help="examples/ae-110k (or ae-110k), builtin, or all (default)")
    parser.add_argument("--json", type=Path, help="write every backtest and the table here")
    parser.add_argument("--collect", type=Path, help="rebuild forecast_builtin.json from this finished sweep")
    args = parser.parse_args(argv)
    if args.collect:
        SETS["builtin"].write_text(json.dumps(collect(args.collect), indent=1) + "\n")
        print(f"wrote {SETS['builtin']}")
        return 0
    chosen = Path(args.data).name if args.data != "all" else "all"
    names = list(SETS) if chosen == "all" else [chosen]
    if any(n not in SETS for n in names):
        print(f"unknown --data {args.data}: examples/ae-110k, builtin or all", file=sys.stderr)
        return 2
    loaded = {n: json.loads(SETS[n].read_text()) for n in names}
    tests = [t for n in names for t in backtests(n, loaded[n])]
    rows = summary_rows(tests)
    answer = answer_ae110k(loaded["ae-110k"]) if "ae-110k" in loaded else None
    print(render(rows, answer))
    if args.json:
        payload = {"summary": rows, "answer": answer, "backtests": [t.__dict__ | {"ratio": t.ratio} for t in tests]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0
