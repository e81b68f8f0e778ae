"""Multi-objective HPO efficiency (issue 29): hypervolume reached against compute spent, replayed on the tabular
benchmark like `benchmarks/hpo_replay.py` (same tables, same nearest-configuration rule, same payment: a strategy
pays each configuration's recorded training seconds up to where it stops it, and training one again pays again).

Two objectives: the table's score (`accuracy` on the built-in table, micro-`f1` on AE-110k; maximised) and
`computeSeconds`, the compute of training the configuration to the end (minimised: its final checkpoint's seconds;
for Sweetspot's trials what their early and final stages spent together, which is the same number, as
`sweetspot.core.objectives.final_values` computes it). A strategy's front is the non-dominated set of the
configurations it trained to the end, each valued at its true final (score, seconds): an early stage, or a trial
stopped early, adds nothing. A configuration counts the moment the stage that trains it to the end is paid.

Hypervolume: `sweetspot.core.pareto.hypervolume` of that front, with a fixed reference point per table: the worst
final score and the largest full-training seconds over the table, each pushed `MARGIN` (10%) of the table's range
beyond, so that both ends of the front (the best configuration, the cheapest one) add a volume that is not
negligible. Reported as a share of the hypervolume of the table's true front (every configuration trained).

Strategies (seeded; one trial at a time):
- `mo-random-full`  random search, every trial trained to the end
- `mo-tpe-full`     Optuna's TPE (multi-objective: MOTPE), every trial trained to the end
- `mo-nsga2-full`   Optuna's NSGA-II, every trial trained to the end, with its default population (50: its first
                    generation is random search's trials, seed for seed, and these budgets hold 20 to 60 trials) ...
- `mo-nsga2/8-full` ... and with a population of 8 (generations small enough to evolve within the budget)
- `mo-proxy@0.2`    Sweetspot's planner and store, `objectives: [{metric: <table metric>, direction: maximize},
                    {metric: computeSeconds, direction: minimize}]`, `policy: proxy` judged at 20%: TPE learns from
                    (validation loss, compute projected from the early stage); the first `promoteTopK` (3) of the
                    early Pareto ranking (front, then crowding) are trained to the end; maxTrials 8, raised to 16, 32,
                    64 each time the study finishes (as `proxy@F` in `hpo_replay`)
- `mo-proxy-k6@0.2` the same with `promoteTopK: 6`: a front needs more finals than one best does (3, 4, 5, 6 and 8
                    were tried on both tables: 3 is the worst on AE-110k, 4 to 8 within a few points of each other;
                    none meets the goal)
- `mo-prune@0.2`    Sweetspot, `policy: prune` at 20%: a trial stops when a trial judged before it dominates its
                    early (validation loss, projected compute) (`successiveHalving`: one; after 2 judged); the
                    survivors finish at once; one study of maxTrials 64

Reported per strategy over the seeds: the median hypervolume share reached within 25, 50 and 100% of the compute of
training every configuration once; the target, within 1% (relative) of the median hypervolume share `mo-tpe-full`
reaches with that whole budget; the median compute to reach it (a seed that never did counting as infinite; and in
how many seeds it did) and that compute as a ratio to `mo-tpe-full`'s; the median number of configurations trained
to the end, of the table's true front among them, and of compute spent. The goal of issue 29: the target for at
most 0.35x `mo-tpe-full`'s compute.

    python -m benchmarks hpo --multi-objective [--seeds 20] [--table benchmarks/data/hpo_table.json] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core import pareto
from sweetspot.core.records import TrialView

from .hpo_replay import (
    BUDGETS,
    DEFAULT_TABLE,
    TOLERANCE,
    Config,
    Strategy,
    Table,
    Trace,
    _default_spec_space,
    _fmt,
    sweetspot_strategy,
)

MARGIN = 0.1
"""How far beyond the table's worst score and largest seconds the reference point lies, as a share of each range."""
BASELINE = "mo-tpe-full"
GOAL = 0.35
"""Issue 29's goal: the baseline's hypervolume (within `TOLERANCE`) for at most this share of its compute."""
FRACTION = 0.2
PROMOTE_TOP_K = (6,)
"""The `promoteTopK` values of the `mo-proxy-k{K}` rows, beside the default's 3."""
NSGA2_POPULATION = 8

Vector = tuple[float, float]


def point(config: Config) -> Vector:
    """A configuration trained to the end, minimised: (-its final score, its full training seconds)."""
    return (-config.final.score, config.final.seconds)


@dataclass(frozen=True)
class Volume:
    """A table's yardstick: the reference point and the hypervolume of its true front."""

    reference: Vector
    """Minimised, like `point`: (-(worst score - MARGIN of the range), largest seconds + MARGIN of the range)."""
    total: float
    front: tuple[int, ...]
    """The configurations on the table's true front (indices)."""

    @classmethod
    def of(cls, table: Table) -> Volume:
        scores = [c.final.score for c in table.configs]
        seconds = [c.final.seconds for c in table.configs]
        score_span = (max(scores) - min(scores)) or 1.0
        seconds_span = (max(seconds) - min(seconds)) or 1.0
        reference = (-(min(scores) - MARGIN * score_span), max(seconds) + MARGIN * seconds_span)
        points = [point(c) for c in table.configs]
        first = pareto.fronts(points)[0]
        total = pareto.hypervolume([points[i] for i in first], reference)
        return cls(reference, total, tuple(table.configs[i].index for i in first))

    def share(self, points: Sequence[Vector]) -> float:
        return pareto.hypervolume(points, self.reference) / self.total


@dataclass
class FrontTrace(Trace):
    """What a run paid, and the hypervolume share of the front of what it trained to the end after each payment:
    `history` holds (compute spent, hypervolume share) each time the share grew, `incumbent` the last share."""

    volume: Volume | None = None
    trained: list[int] = field(default_factory=list)
    """The configurations trained to the end (indices), in order; one trained twice is listed twice."""
    points: dict[int, Vector] = field(default_factory=dict)

    @classmethod
    def for_table(cls, table: Table) -> FrontTrace:
        return cls(volume=Volume.of(table))

    def trained_to_end(self, config: Config) -> None:
        assert self.volume is not None, "made by for_table"
        self.trained.append(config.index)
        if config.index not in self.points:
            self.points[config.index] = point(config)
            self.finished(self.volume.share(list(self.points.values())))

    def ran(self, config: Config, stage: str) -> None:
        if stage != "early":  # `final` continues the early stage's checkpoint to the end
            self.trained_to_end(config)

    def saw(self, table: Table, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> None:
        pass  # counted when the stage that trained it to the end was paid (`ran`), not a pass later

    @property
    def on_front(self) -> int:
        assert self.volume is not None
        return len(set(self.points) & set(self.volume.front))


def objectives(table: Table) -> list[dict[str, str]]:
    """The replayed study's `spec.objectives`: the table's score and the compute of training to the end."""
    return [{"metric": table.metric, "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}]


def optuna_strategy(sampler: Callable[[int], optuna.samplers.BaseSampler]) -> Strategy:
    """A plain multi-objective Optuna loop: ask, train the configuration to the end, tell (score, seconds)."""

    def run(table: Table, seed: int, budget: float) -> Trace:
        space = _default_spec_space()
        study = optuna.create_study(
            study_name=f"replay-{seed}", directions=["maximize", "minimize"], sampler=sampler(seed)
        )
        trace = FrontTrace.for_table(table)
        while trace.spent < budget:
            trial = study.ask(space)
            config = table.nearest(trial.params)
            trace.pay(config.final.seconds)
            trace.trained_to_end(config)
            study.tell(trial, [config.final.score, config.final.seconds])
        return trace

    return run


def strategies(table: Table) -> dict[str, Strategy]:
    goals = objectives(table)
    found: dict[str, Strategy] = {
        "mo-random-full": optuna_strategy(lambda seed: optuna.samplers.RandomSampler(seed=seed)),
        BASELINE: optuna_strategy(lambda seed: optuna.samplers.TPESampler(seed=seed)),
        "mo-nsga2-full": optuna_strategy(lambda seed: optuna.samplers.NSGAIISampler(seed=seed)),
        f"mo-nsga2/{NSGA2_POPULATION}-full": optuna_strategy(
            lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
        ),
    }

    def sweetspot(policy: str, early: Mapping[str, Any] | None = None) -> Strategy:
        return sweetspot_strategy(policy, FRACTION, early=early, objectives=goals, trace_type=FrontTrace)

    found[f"mo-proxy@{FRACTION}"] = sweetspot("proxy")
    for k in PROMOTE_TOP_K:
        found[f"mo-proxy-k{k}@{FRACTION}"] = sweetspot("proxy", {"promoteTopK": k})
    found[f"mo-prune@{FRACTION}"] = sweetspot("prune")
    return found


# --- reports ----------------------------------------------------------------------------------------------


def _median_inf(values: Sequence[float | None]) -> float:
    """The median, a missing value counting as infinite."""
    return statistics.median([math.inf if v is None else v for v in values]) if values else math.inf


def summarize(table: Table, traces: Mapping[str, Sequence[FrontTrace]]) -> dict[str, Any]:
    """The report's numbers, from the traces alone: the target and one row per strategy."""
    budget = table.all_once
    volume = Volume.of(table)
    whole = statistics.median(t.best_within(budget) or 0.0 for t in traces[BASELINE])
    target = (1 - TOLERANCE) * whole
    rows: list[dict[str, Any]] = []
    for name, runs in traces.items():
        costs = [t.compute_to(target) for t in runs]
        row: dict[str, Any] = {
            "strategy": name,
            "seeds": len(runs),
            "reached": sum(c is not None for c in costs),
            "medianCompute": _median_inf(costs),
            "medianComputeReached": _median_inf([c for c in costs if c is not None]),
        }
        for share in BUDGETS:
            row[f"hv@{share:.0%}"] = statistics.median(t.best_within(share * budget) or 0.0 for t in runs)
        row["medianTrained"] = statistics.median(len(t.trained) for t in runs)
        row["medianDistinct"] = statistics.median(len(t.points) for t in runs)
        row["medianOnFront"] = statistics.median(t.on_front for t in runs)
        row["medianSpent"] = statistics.median(t.spent for t in runs)
        rows.append(row)
    baseline = next(r["medianCompute"] for r in rows if r["strategy"] == BASELINE)
    for row in rows:
        row["vsBaseline"] = row["medianCompute"] / baseline if math.isfinite(baseline) and baseline else math.nan
    return {
        "metric": table.metric,
        "configurations": len(table.configs),
        "allOnce": budget,
        "reference": {table.metric: -volume.reference[0], "computeSeconds": volume.reference[1]},
        "trueFront": list(volume.front),
        "trueVolume": volume.total,
        "baselineWhole": whole,
        "target": target,
        "goal": GOAL,
        "strategies": rows,
    }


def render(table: Table, report: Mapping[str, Any]) -> str:
    reference = report["reference"]
    lines = [
        f"Multi-objective HPO efficiency on {report['configurations']} configurations "
        f"({table.meta.get('machine', '?')}): {table.metric} (max) and computeSeconds to the end (min)",
        f"true front: {len(report['trueFront'])} configurations {report['trueFront']}; reference point: "
        f"{table.metric} {reference[table.metric]:.4f}, {reference['computeSeconds']:.1f}s "
        f"(worst and largest, {MARGIN:.0%} of the range beyond); hypervolume shares of the true front's "
        f"{report['trueVolume']:.3f}",
        f"all once = {report['allOnce']:.0f}s; target = within {TOLERANCE:.0%} of {BASELINE}'s median share with the "
        f"whole budget ({report['baselineWhole']:.4f}): {report['target']:.4f}",
        "",
        f"{'strategy':<20}" + "".join(f"{'hv@' + format(b, '.0%'):>9}" for b in BUDGETS)
        + f"{'reached':>9}{'median s':>10}{'x' + BASELINE:>14}{'trained':>9}{'distinct':>9}{'on front':>9}"
        f"{'spent s':>9}",
    ]  # fmt: skip
    for row in report["strategies"]:
        lines.append(
            f"{row['strategy']:<20}"
            + "".join(f"{row[f'hv@{b:.0%}']:>9.4f}" for b in BUDGETS)
            + f"{str(row['reached']) + '/' + str(row['seeds']):>9}{_fmt(row['medianCompute'], '.0f'):>10}"
            f"{_fmt(row['vsBaseline'], '.2f'):>14}{row['medianTrained']:>9g}{row['medianDistinct']:>9g}"
            f"{row['medianOnFront']:>6g}/{len(report['trueFront'])}{row['medianSpent']:>9.0f}"
        )
    lines.append("")
    for row in report["strategies"]:
        if not row["strategy"].startswith("mo-p"):
            continue
        ratio = row["vsBaseline"]
        verdict = f"met: {ratio:.2f}x" if math.isfinite(ratio) and ratio <= GOAL else f"missed: {_fmt(ratio, '.2f')}x"
        if math.isinf(ratio):
            verdict = "missed: the median seed never reached the target"
        lines.append(
            f"{row['strategy']}: goal (the target for at most {GOAL:.2f}x {BASELINE}'s compute) {verdict}; reached in "
            f"{row['reached']}/{row['seeds']} seeds"
            + (f", those in a median {row['medianComputeReached']:.0f}s" if row["reached"] else "")
        )
    return "\n".join(lines)


def run(table_path: Path, seeds: int, only: Sequence[str] | None = None, json_path: Path | None = None) -> int:
    table = Table.load(table_path)
    chosen = {k: v for k, v in strategies(table).items() if not only or k in only or k == BASELINE}
    traces: dict[str, list[FrontTrace]] = {}
    for name, strategy in chosen.items():
        started = time.monotonic()
        found = [strategy(table, seed, table.all_once) for seed in range(seeds)]
        traces[name] = [t for t in found if isinstance(t, FrontTrace)]
        assert len(traces[name]) == seeds, "every multi-objective strategy keeps a FrontTrace"
        print(f"  {name}: {seeds} seeds in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    report = summarize(table, traces)
    print(render(table, report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mo_replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20, help="seeds per strategy (default: 20)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help=f"the table (default: {DEFAULT_TABLE})")
    parser.add_argument("--only", nargs="*", help=f"run only these strategies (and {BASELINE}; default: all)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return run(args.table, args.seeds, args.only, args.json)


if __name__ == "__main__":
    sys.exit(main())
