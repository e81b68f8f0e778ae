"""HPO efficiency: search strategies replayed on the tabular benchmark (`benchmarks/data/hpo_table.json`).

Each strategy proposes hyperparameters from Sweetspot's default search space; a proposal is trained as the
table's nearest configuration (normalised distance: log learning rate, ordinal rank/alpha/batch/epochs, dropout),
and the strategy pays that configuration's recorded training seconds up to where it stops it, seeing only the
scores up to there. Training a configuration again costs again, as it would on a cluster.

Strategies (all seeded; Optuna's own samplers and pruners, one trial at a time):
- `random-full`  random search, every trial trained to the end (Katib's default)
- `tpe-full`     Optuna's TPE, every trial trained to the end (Optuna alone, Katib's `tpe`)
- `sh`           random search + successive halving (ASHA: Ray Tune's scheduler, Katib's hyperband idea)
- `hyperband`    random search + Hyperband
- `median`       random search + median stopping (Katib's only early-stopping rule: 3 trials, from step 4)
- `tpe+sh`       TPE + successive halving (what an Optuna user would combine)
- `proxy@F`      Sweetspot's planner and store, `policy: proxy` judged at fraction F: TPE learns from the early
                 score (validation loss), the best 3 trials are trained to the end; maxTrials 8, raised to
                 16, 32, 64 each time the study finishes (what a user does when the budget allows more)
- `prune@F`      Sweetspot, `policy: prune` at fraction F: the early score goes to the successive-halving pruner,
                 survivors finish at once
- `proxy-acc@F`  `proxy` with the table's metric as the signal (`proxy-f1@F` on an F1 table): the early score
                 instead of validation loss (the default)
- `proxy+guard@F` `proxy` with the agreement guard on (`minAgreement: 0.6`, `widenTo` 0.35, 0.5); also on the
                 misleading accuracy signal (`proxy-acc+guard@F`)
- `proxy+predicted@F` `promote: predicted` (final-score prediction) with as many early evaluations as the table
                 has checkpoints up to F (`curvePoints` 1, 2, 3, 5 at 10, 20, 30, 50%)
- `proxy+guard+predicted@0.2` the judging mechanisms together; `...+warm@0.2` also as the second study of a task
- `sweetspot-default` Sweetspot as shipped: `proxy` with every default (today `proxy@0.2`, every mechanism of
                 issue 18 that did not pay off left off)
- `proxy+budget@F`  `proxy` at fraction F with `spec.search.budget` set to 25% of the compute of training every
                 configuration once and maxTrials 64: the budget alone ends the study (`BudgetExhausted`); reported
                 with what it spent
- `proxy+warm@F` the second study of a task: the `proxy@F` study of the same seed ran first (to the end of its
                 budget), and this one (another seed) starts from it (`warmStart`, `reuse: results`: its trials and
                 their results are copied, none is trained again), then runs like `proxy@F`; only the second study's
                 compute is counted (the first's is the `proxy@F` row, and its median is printed beside)
- `proxy+warm8@F` the same after a short first study of 8 trials (the first round of `proxy@F`)

Reported per strategy over the seeds: the median compute to find a configuration within 1 percentage point of the
table's best final score (its `metric`: accuracy on the synthetic table, micro-F1 on real data; and in how many
seeds it did, within the compute of training every configuration once), that compute against TPE-full's and
against the limit (training the single best configuration once), and the best final score found within 25, 50
and 100% of the compute of training every configuration once.

    python -m benchmarks hpo [--seeds 20] [--table benchmarks/data/hpo_table.json] [--json results.json]
    python -m benchmarks hpo --multi-objective [...]   (hypervolume against compute: benchmarks/mo_replay.py)
"""

from __future__ import annotations

import argparse
import functools
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
from scipy import stats as scipy_stats

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.search import EarlyEvaluation
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.contract import Evaluation, StageResult
from sweetspot.core.loop import settle
from sweetspot.core.planner import best_trial
from sweetspot.core.policies.predict import extrapolate
from sweetspot.core.records import RunKey, RunView, StartRun, TrialView
from sweetspot.core.runtime import Runtime
from sweetspot.storage.space import distributions
from sweetspot.storage.store import SearchStore
from sweetspot.storage.warm_start import take_warm_start

DEFAULT_STRATEGY = "sweetspot-default"
"""The row of Sweetspot as shipped: `proxy` with every `earlyEvaluation` and `search` default."""
DEFAULT_TABLE = Path(__file__).parent / "data" / "hpo_table.json"
FRACTIONS = (0.1, 0.2, 0.3, 0.5)
BUDGETS = (0.25, 0.5, 1.0)
PROXY_SCHEDULE = (8, 16, 32, 64)
BUDGET_SHARE = 0.25
"""`proxy+budget@F`: the study's compute budget, as a share of training every configuration once."""
TOLERANCE = 0.01
WARM_SEED_OFFSET = 1000
"""The first study of a warm-started pair runs with another seed than the second."""
ORDINAL = {"loraRank": [8, 16, 32, 64], "loraAlpha": [16, 32, 64], "batchSize": [8, 16], "epochs": [1, 2, 3]}


# --- the table --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    fraction: float
    score: float
    """The table's metric (`accuracy` for the synthetic table, micro-`f1` for real data), higher is better."""
    loss: float
    seconds: float
    """Training seconds from the start of the run to this checkpoint."""
    accuracy: float | None = None
    f1: float | None = None


@dataclass(frozen=True)
class Config:
    index: int
    params: Mapping[str, Any]
    curve: tuple[Point, ...]
    planned_steps: int

    @property
    def final(self) -> Point:
        return self.curve[-1]

    def at(self, fraction: float) -> Point:
        return min(self.curve, key=lambda p: abs(p.fraction - fraction))


@dataclass(frozen=True)
class Table:
    configs: tuple[Config, ...]
    meta: Mapping[str, Any]
    metric: str = "accuracy"
    """What the table scores configurations by: `accuracy` or `f1` (tables built before F1 have accuracy only)."""

    @classmethod
    def load(cls, path: Path) -> Table:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SystemExit(f"{path}: no table; build it with `python -m benchmarks hpo-table`") from None
        return cls.of(data)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Table:
        metric = data.get("metric", "accuracy")
        configs = tuple(
            Config(
                row["config"],
                row["params"],
                tuple(
                    Point(p["fraction"], p[metric], p["loss"], p["seconds"], p.get("accuracy"), p.get("f1"))
                    for p in row["curve"]
                ),
                row["plannedSteps"],
            )
            for row in data["configs"]
        )
        return cls(configs, {k: v for k, v in data.items() if k != "configs"}, metric)

    @property
    def best(self) -> Config:
        return max(self.configs, key=lambda c: c.final.score)

    @property
    def all_once(self) -> float:
        """Compute of training every configuration once, to the end."""
        return sum(c.final.seconds for c in self.configs)

    def nearest(self, params: Mapping[str, Any]) -> Config:
        return min(self.configs, key=lambda c: _distance(params, c.params))


def _coordinates(params: Mapping[str, Any]) -> list[float]:
    lr = (math.log(params["learningRate"]) - math.log(1e-5)) / (math.log(5e-4) - math.log(1e-5))
    ordinal = [ORDINAL[name].index(params[name]) / (len(ORDINAL[name]) - 1) for name in ORDINAL]
    return [lr, params["loraDropout"] / 0.2, *ordinal]


def _distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    return math.dist(_coordinates(a), _coordinates(b))


# --- one strategy's run -----------------------------------------------------------------------------------


@dataclass
class Trace:
    """What one run of a strategy paid, and the best final score it knew of after each payment."""

    spent: float = 0.0
    incumbent: float | None = None
    history: list[tuple[float, float]] = field(default_factory=list)
    """(compute spent, incumbent final score) each time the incumbent improved."""
    budget: float | None = None
    """The study's compute budget (`spec.search.budget`, in seconds), when it had one."""
    ended: str = ""
    """The reason the study ended with (Sweetspot strategies)."""
    before: float = 0.0
    """Compute an earlier study spent that this one reused by warm start (not in `spent`)."""

    @classmethod
    def for_table(cls, table: Table) -> Trace:
        """A fresh trace of a run on `table` (a subclass that measures against the table overrides it)."""
        return cls()

    def pay(self, seconds: float) -> None:
        self.spent += max(0.0, seconds)

    def ran(self, config: Config, stage: str) -> None:
        """`TableRuntime` paid for `stage` of `config`: nothing to note here (the incumbent is what the study
        recorded, `saw`); a multi-objective trace notes each configuration trained to the end at once."""

    def saw(self, table: Table, spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> None:
        """The study's trials between two plan-and-apply passes: its best trial's final score is the incumbent."""
        best = best_trial(spec, trials)
        if best is not None and best.final is not None:
            self.finished(best.final.metric(table.metric))

    def finished(self, score: float) -> None:
        if self.incumbent is None or score > self.incumbent:
            self.incumbent = score
            self.history.append((self.spent, score))

    def compute_to(self, target: float) -> float | None:
        return next((spent for spent, score in self.history if score >= target), None)

    def best_within(self, budget: float) -> float | None:
        found = [score for spent, score in self.history if spent <= budget]
        return max(found, default=None)


Strategy = Callable[[Table, int, float], Trace]


def _default_spec_space() -> dict[str, optuna.distributions.BaseDistribution]:
    return distributions(_study(0, "proxy", 0.2, 8).spec)


def optuna_strategy(
    sampler: Callable[[int], optuna.samplers.BaseSampler], pruner: Callable[[], optuna.pruners.BasePruner] | None
) -> Strategy:
    """A plain Optuna loop: ask, train the configuration checkpoint by checkpoint, report, prune or finish."""

    def run(table: Table, seed: int, budget: float) -> Trace:
        space = _default_spec_space()
        study = optuna.create_study(
            # Named: Optuna's Hyperband assigns trials to brackets by a hash of the study name, and an unnamed study
            # gets a random one, which made the hyperband row differ between two runs of the same seed.
            study_name=f"replay-{seed}",
            direction="maximize",
            sampler=sampler(seed),
            pruner=pruner() if pruner else optuna.pruners.NopPruner(),
        )
        trace = Trace()
        while trace.spent < budget:
            trial = study.ask(space)
            config = table.nearest(trial.params)
            if pruner is None:
                trace.pay(config.final.seconds)
                study.tell(trial, config.final.score)
                trace.finished(config.final.score)
                continue
            paid = 0.0
            for step, point in enumerate(config.curve, start=1):
                trace.pay(point.seconds - paid)
                paid = point.seconds
                trial.report(point.score, step)
                if step < len(config.curve) and trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, config.final.score)
                trace.finished(config.final.score)
        return trace

    return run


def _study(
    seed: int,
    policy: str,
    fraction: float,
    max_trials: int,
    signal: str = "auto",
    metric: str = "accuracy",
    early: Mapping[str, Any] | None = None,
    budget_seconds: float | None = None,
    name: str = "replay",
    warm_from: str | None = None,
    objectives: Sequence[Mapping[str, str]] | None = None,
) -> FineTuneStudy:
    """The replayed study's resource; `early`: more `earlyEvaluation` settings than the defaults; `budget_seconds`:
    a compute budget; `warm_from`: the study it warm-starts from; `objectives`: `spec.objectives` (several)."""
    judging = {"policy": policy, "atFraction": fraction, "signal": signal, **(early or {})}
    budget = {"budget": {"gpuHours": budget_seconds / 3600}} if budget_seconds is not None else {}
    warm = {"warmStart": {"studies": [warm_from]}} if warm_from else {}
    several = {"objectives": [dict(goal) for goal in objectives]} if objectives else {}
    return FineTuneStudy.model_validate(
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "metadata": {"name": name},
            "spec": {
                "model": {"builtin": "tiny"},
                "dataset": {"train": {"builtin": "product-pages"}},
                "objective": {"metric": metric},
                **several,
                "search": {
                    "sampler": "tpe",
                    "seed": seed,
                    "maxTrials": max_trials,
                    "earlyEvaluation": judging,
                    **budget,
                    **warm,
                },
            },
        }
    )


def _evaluation(config: Config, point: Point) -> Evaluation:
    f1 = point.f1 if point.f1 is not None else point.score
    accuracy = point.accuracy if point.accuracy is not None else point.score
    return Evaluation(
        step=round(point.fraction * config.planned_steps),
        fraction=point.fraction,
        f1=f1,
        precision=f1,
        recall=f1,
        macro_f1=f1,
        accuracy=accuracy,
        token_f1=point.score,
        loss=point.loss,
        train_seconds=point.seconds,
    )


def _result(key: Any, config: Config, fraction: float, cost: float, inside: Sequence[float] = ()) -> StageResult:
    """The stage's result at `fraction`, with the evaluations it made on the way at the checkpoints nearest to
    `inside` (an early stage's own curve)."""
    points = sorted({config.at(f) for f in (*inside, fraction)}, key=lambda p: p.fraction)
    evaluations = [_evaluation(config, p) for p in points]
    return StageResult(
        study="replay",
        trial=key.number,
        stage=key.stage,
        status="ok",
        step=evaluations[-1].step,
        planned_steps=config.planned_steps,
        evaluations=evaluations,
        seconds=cost,
        samples=300,
        early_fraction=fraction if key.stage == "early" else None,
    )


class TableRuntime(Runtime):
    """Stages answered from the table at once: a start pays the stage's recorded cost and leaves a finished run."""

    def __init__(self, table: Table, fraction: float, trace: Trace) -> None:
        self.table, self.fraction, self.trace = table, fraction, trace
        self.runs: list[RunView] = []

    def observe(self, study: FineTuneStudy) -> list[RunView]:
        return list(self.runs)

    def start(self, study: FineTuneStudy, action: StartRun) -> str:
        if any(run.key == action.key for run in self.runs):
            return "the table"  # started already: a start is idempotent (nothing is paid twice)
        config = self.table.nearest(action.params)
        fraction = action.early_fraction or self.fraction  # the agreement guard may have widened it
        early = config.at(fraction).seconds
        cost = early if action.key.stage == "early" else config.final.seconds - early
        self.trace.pay(cost)
        self.trace.ran(config, action.key.stage)
        early = action.key.stage == "early"
        inside = study.spec.search.early_evaluation.curve_at(fraction) if early else []
        result = _result(action.key, config, fraction if early else 1.0, cost, inside)
        self.runs.append(RunView(action.key, "succeeded", result))
        return "the table"

    def stop(self, study: FineTuneStudy, key: RunKey) -> None:
        pass  # every stage has finished by the time it could be stopped

    def clean_up(self, namespace: str, name: str) -> int:
        removed, self.runs = len(self.runs), []
        return removed


def sweetspot_strategy(
    policy: str,
    fraction: float,
    signal: str = "auto",
    early: Mapping[str, Any] | None = None,
    budget_share: float | None = None,
    warm: int | None = None,
    objectives: Sequence[Mapping[str, str]] | None = None,
    trace_type: type[Trace] = Trace,
) -> Strategy:
    """Sweetspot's own planner, Optuna store (in memory) and plan-and-apply loop, with a runtime that answers from
    the table; `early`: more `earlyEvaluation` settings (the mechanisms under test); with `budget_share`, one study
    of maxTrials 64 under a budget of that share of the table's all-once compute. With `warm`, the second study of
    a task: a first study (the same strategy at this seed: a whole one with `warm=0`, one of `warm` trials
    otherwise) runs first, and the measured study (another seed) starts from it with `warmStart` (`reuse: results`).
    `objectives`: a multi-objective study (`spec.objectives`), measured by `trace_type` (`benchmarks.mo_replay`)."""

    def run(table: Table, seed: int, budget: float) -> Trace:
        storage = optuna.storages.InMemoryStorage()

        def open_store(resource: FineTuneStudy) -> SearchStore:
            store = SearchStore.on(storage, resource)
            store.update_spec(resource)  # what a warm start compares a later study's spec with
            take_warm_start(store, resource)  # as the shells do after opening: once, then a no-op
            return store

        def drive(resource: FineTuneStudy, schedule: list[int], trace: Trace) -> None:
            store = open_store(resource)
            runtime = TableRuntime(table, fraction, trace)
            while trace.spent < budget:
                trials, _ = store.snapshot()
                trace.saw(table, resource.spec, trials)
                # One pass at a time: the budget and the best so far are checked between passes, as a user would.
                decision = settle(resource, store, runtime, lambda _: None, max_passes=1)
                if decision.finished:
                    trace.ended = decision.reason
                    if decision.phase != "Succeeded" or not schedule:
                        break
                    # The study is done: its user raises maxTrials (the operator reopens the study with the new spec).
                    search = resource.spec.search.model_copy(update={"max_trials": schedule.pop(0)})
                    resource = resource.model_copy(update={"spec": resource.spec.model_copy(update={"search": search})})
                    store = open_store(resource)

        schedule = list(PROXY_SCHEDULE) if policy == "proxy" and budget_share is None else [PROXY_SCHEDULE[-1]]
        capped = budget_share * table.all_once if budget_share is not None else None
        study = functools.partial(
            _study, signal=signal, metric=table.metric, early=early, budget_seconds=capped, objectives=objectives
        )
        trace = trace_type.for_table(table)
        if warm is None:
            trace.budget = capped
            drive(study(seed, policy, fraction, schedule.pop(0)), schedule, trace)
            return trace
        first, first_schedule = trace_type.for_table(table), list(schedule) if warm == 0 else [warm]
        first_trials = first_schedule.pop(0)
        drive(study(seed, policy, fraction, first_trials, name="first"), first_schedule, first)
        second = study(seed + WARM_SEED_OFFSET, policy, fraction, schedule.pop(0), warm_from="first")
        trace.before = first.spent
        drive(second, schedule, trace)
        return trace

    return run


def strategies(metric: str = "accuracy") -> dict[str, Strategy]:
    space_random = lambda seed: optuna.samplers.RandomSampler(seed=seed)  # noqa: E731
    tpe = lambda seed: optuna.samplers.TPESampler(seed=seed)  # noqa: E731
    found: dict[str, Strategy] = {
        "random-full": optuna_strategy(space_random, None),
        "tpe-full": optuna_strategy(tpe, None),
        "sh": optuna_strategy(
            space_random, lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        ),
        "hyperband": optuna_strategy(
            space_random, lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=10, reduction_factor=3)
        ),
        "median": optuna_strategy(
            space_random, lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3)
        ),
        "tpe+sh": optuna_strategy(
            tpe, lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        ),
    }
    for policy in ("proxy", "prune"):
        for fraction in FRACTIONS:
            found[f"{policy}@{fraction:.1f}"] = sweetspot_strategy(policy, fraction)
    found[DEFAULT_STRATEGY] = sweetspot_strategy("proxy", EarlyEvaluation().at_fraction)  # every default as shipped
    together = {"minAgreement": 0.6, "promote": "predicted", "curvePoints": 2}
    found["proxy+guard+predicted@0.2"] = sweetspot_strategy("proxy", 0.2, early=together)
    found["proxy+guard+predicted+warm@0.2"] = sweetspot_strategy("proxy", 0.2, early=together, warm=0)
    for fraction, points in ((0.1, 1), (0.2, 2), (0.3, 3), (0.5, 5)):  # the table's checkpoints are 10% apart
        found[f"proxy+predicted@{fraction:.1f}"] = sweetspot_strategy(
            "proxy", fraction, early={"promote": "predicted", "curvePoints": points}
        )
    for fraction in (0.1, 0.2):
        found[f"proxy+guard@{fraction:.1f}"] = sweetspot_strategy("proxy", fraction, early={"minAgreement": 0.6})
    short = {"accuracy": "acc"}.get(metric, metric)
    for fraction in FRACTIONS:
        found[f"proxy-{short}@{fraction:.1f}"] = sweetspot_strategy("proxy", fraction, metric)
    for fraction in (0.1, 0.2):  # the guard where the early signal misleads
        found[f"proxy-{short}+guard@{fraction:.1f}"] = sweetspot_strategy(
            "proxy", fraction, metric, early={"minAgreement": 0.6}
        )
    found["proxy+budget@0.2"] = sweetspot_strategy("proxy", 0.2, budget_share=BUDGET_SHARE)
    for fraction in FRACTIONS:
        found[f"proxy+warm@{fraction:.1f}"] = sweetspot_strategy("proxy", fraction, warm=0)
        found[f"proxy+warm8@{fraction:.1f}"] = sweetspot_strategy("proxy", fraction, warm=PROXY_SCHEDULE[0])
    return found


# --- reports ----------------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    """A rank correlation, or None where it is undefined (tied scores)."""
    return None if math.isnan(value) else float(value)


def agreement(table: Table, fractions: Sequence[float] = FRACTIONS) -> list[dict[str, Any]]:
    """How well the early score at each fraction ranks configurations like their final score: one row per
    (fraction, signal), the signal being the table's metric, validation loss, or (from 3 checkpoints on) validation
    loss extrapolated to the end by final-score prediction's curve families (`loss-curve`)."""
    final = [c.final.score for c in table.configs]
    top_final = set(sorted(range(len(final)), key=lambda i: -final[i])[:5])
    rows = []

    def extrapolated(config: Config, fraction: float) -> float:
        found = extrapolate([(p.fraction, p.loss) for p in config.curve if p.fraction <= fraction + 1e-9])
        return -found[0] if found else math.nan

    for fraction in fractions:
        signals: list[tuple[str, Callable[[Config], float]]] = [
            (table.metric, lambda c, f=fraction: c.at(f).score),  # type: ignore[misc]
            ("loss", lambda c, f=fraction: -c.at(f).loss),  # type: ignore[misc]
        ]
        if sum(1 for p in table.configs[0].curve if p.fraction <= fraction + 1e-9) >= 3:
            signals.append(("loss-curve", lambda c, f=fraction: extrapolated(c, f)))  # type: ignore[misc]
        for signal, score in signals:
            early = [score(c) for c in table.configs]
            top_early = set(sorted(range(len(early)), key=lambda i: -early[i])[:5])
            rows.append(
                {
                    "fraction": fraction,
                    "signal": signal,
                    "spearman": _finite(scipy_stats.spearmanr(early, final).statistic),
                    "kendall": _finite(scipy_stats.kendalltau(early, final).statistic),
                    "top5": len(top_early & top_final),
                }
            )
    return rows


def summarize(table: Table, traces: Mapping[str, Sequence[Trace]]) -> list[dict[str, Any]]:
    target = table.best.final.score - TOLERANCE
    budget = table.all_once
    rows = []
    for name, runs in traces.items():
        reached = [c for c in (t.compute_to(target) for t in runs) if c is not None]
        # Median over all seeds, a seed that never got there counting as infinite compute.
        costs = sorted([*reached, *[math.inf] * (len(runs) - len(reached))])
        median = statistics.median(costs) if costs else math.inf
        row: dict[str, Any] = {"strategy": name, "reached": len(reached), "seeds": len(runs), "medianCompute": median}
        if any(t.before for t in runs):
            row["medianBefore"] = statistics.median(t.before for t in runs)
        for share in BUDGETS:
            found = [t.best_within(share * budget) for t in runs]
            row[f"best@{share:.0%}"] = statistics.median([f if f is not None else 0.0 for f in found])
        if runs and runs[0].budget is not None:
            row["budget"] = runs[0].budget
            row["medianSpent"] = statistics.median(t.spent for t in runs)
            row["maxSpent"] = max(t.spent for t in runs)
            row["medianBest"] = statistics.median(t.incumbent or 0.0 for t in runs)
            row["ended"] = {
                reason: sum(1 for t in runs if t.ended == reason) for reason in sorted({t.ended for t in runs})
            }
        rows.append(row)
    tpe = next(r["medianCompute"] for r in rows if r["strategy"] == "tpe-full")
    for row in rows:
        row["vsTpeFull"] = row["medianCompute"] / tpe if math.isfinite(tpe) else math.nan
        row["vsLimit"] = row["medianCompute"] / table.best.final.seconds
    return rows


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "never" if math.isinf(value) else format(value, pattern)


def render(table: Table, rows: Sequence[Mapping[str, Any]], agreement_rows: Sequence[Mapping[str, Any]]) -> str:
    best = table.best
    lines: list[str] = [
        f"HPO efficiency on {len(table.configs)} configurations ({table.meta.get('machine', '?')}): best final "
        f"{table.metric} {best.final.score:.4f} (config {best.index}); target = within {TOLERANCE * 100:.0f} pp; "
        f"limit = {best.final.seconds:.0f}s (training the best once); all once = {table.all_once:.0f}s",
        "",
        f"{'strategy':<32}{'reached':>9}{'median s':>10}{'xTPE-full':>10}{'xlimit':>8}"
        + "".join(f"{'best@' + format(b, '.0%'):>11}" for b in BUDGETS),
    ]
    for row in rows:
        lines.append(
            f"{row['strategy']:<32}{str(row['reached']) + '/' + str(row['seeds']):>9}"
            f"{_fmt(row['medianCompute'], '.0f'):>10}{_fmt(row['vsTpeFull'], '.2f'):>10}"
            f"{_fmt(row['vsLimit'], '.1f'):>8}" + "".join(f"{row[f'best@{b:.0%}']:>11.4f}" for b in BUDGETS)
        )
    for row in rows:
        if "budget" in row:
            ended = ", ".join(f"{reason or 'running'} {count}" for reason, count in sorted(row["ended"].items()))
            lines.append(
                f"{row['strategy']}: budget {row['budget']:.0f}s ({row['budget'] / table.all_once:.0%} of all once); "
                f"spent median {row['medianSpent']:.0f}s, max {row['maxSpent']:.0f}s; best final median "
                f"{row['medianBest']:.4f}; reached the target in {row['reached']}/{row['seeds']}; ended: {ended}"
            )
    lines += [
        f"{row['strategy']}: warm-started from a first study whose median compute was {row['medianBefore']:.0f}s "
        "(not counted above)"
        for row in rows
        if "medianBefore" in row
    ]
    lines += ["", render_agreement(agreement_rows)]
    return "\n".join(lines)


def render_agreement(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "Early vs final (all configurations): rank agreement of the early score with the final one",
        "",
        f"{'fraction':<10}{'signal':<10}{'Spearman':>10}{'Kendall':>9}{'top-5':>7}",
    ]
    for row in rows:
        lines.append(
            f"{row['fraction']:<10.1f}{row['signal']:<10}{_fmt(row['spearman'], '.3f'):>10}"
            f"{_fmt(row['kendall'], '.3f'):>9}{row['top5']:>5}/5"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks hpo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20, help="seeds per strategy (default: 20)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help=f"the table (default: {DEFAULT_TABLE})")
    parser.add_argument("--only", nargs="*", help="run only these strategies (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--multi-objective",
        action="store_true",
        help="the multi-objective rows instead: hypervolume against compute (benchmarks/mo_replay.py)",
    )
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if args.multi_objective:
        from . import mo_replay  # imports this module: imported here, not at the top

        return mo_replay.run(args.table, args.seeds, args.only, args.json)
    table = Table.load(args.table)
    chosen = {k: v for k, v in strategies(table.metric).items() if not args.only or k in args.only or k == "tpe-full"}
    traces: dict[str, list[Trace]] = {}
    for name, strategy in chosen.items():
        started = time.monotonic()
        traces[name] = [strategy(table, seed, table.all_once) for seed in range(args.seeds)]
        print(f"  {name}: {args.seeds} seeds in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    rows = summarize(table, traces)
    agreement_rows = agreement(table)
    print(render(table, rows, agreement_rows))
    if args.json:
        args.json.write_text(json.dumps({"strategies": rows, "agreement": agreement_rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
