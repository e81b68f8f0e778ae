"""The HPO benchmark's replay on a synthetic table: strategies pay for what they train, see only what they paid
for, and the report's numbers follow from the traces. (The real table is `benchmarks/data/hpo_table.json`.)"""

from __future__ import annotations

import json
import math
from types import ModuleType
from typing import Any

import pytest

from support import by_path


def load(name: str) -> ModuleType:
    return by_path.load(f"benchmarks/{name}.py", f"benchmarks_{name}")


replay = load("hpo_replay")
table_module = load("hpo_table")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """12 configurations of the default space; final accuracy rises with the learning rate (a shape TPE can learn),
    curves rise like a square root, every checkpoint costs the same share of a configuration's seconds."""
    configs = table_module.configurations(12)
    rows = []
    for index, params in enumerate(configs):
        final = 0.4 + 0.5 * (math.log(params["learningRate"]) - math.log(1e-5)) / (math.log(5e-4) - math.log(1e-5))
        seconds = 10.0 * params["epochs"]
        curve = [
            {"fraction": k / 10, "step": k, "accuracy": round(final * math.sqrt(k / 10), 4), "loss": 1 - final * k / 10,
             "seconds": seconds * k / 10}
            for k in range(1, 11)
        ]  # fmt: skip
        rows.append({"config": index, "params": params, "plannedSteps": 10, "curve": curve})
    path = tmp_path_factory.mktemp("table") / "table.json"
    path.write_text(json.dumps({"machine": "synthetic", "configs": rows}))
    return replay.Table.load(path)


def test_every_configuration_is_its_own_nearest(table: Any) -> None:
    assert [table.nearest(c.params).index for c in table.configs] == list(range(12))
    assert table.all_once == pytest.approx(sum(c.final.seconds for c in table.configs))


def test_a_trace_reports_compute_to_target_and_best_within_budget() -> None:
    trace = replay.Trace()
    trace.pay(10)
    trace.finished(0.5)
    trace.pay(10)
    trace.finished(0.4)  # not better: the incumbent stays
    trace.pay(5)
    trace.finished(0.8)
    assert trace.history == [(10, 0.5), (25, 0.8)]
    assert trace.compute_to(0.7) == 25 and trace.compute_to(0.9) is None
    assert trace.best_within(24) == 0.5 and trace.best_within(25) == 0.8 and trace.best_within(5) is None


@pytest.mark.parametrize("name", ["random-full", "tpe-full", "sh", "hyperband", "median", "tpe+sh"])
def test_optuna_strategies_pay_for_what_they_train(table: Any, name: str) -> None:
    trace = replay.strategies()[name](table, 0, table.all_once)
    longest = max(c.final.seconds for c in table.configs)
    assert table.all_once <= trace.spent < table.all_once + longest
    assert trace.history, "a whole budget found nothing"
    finals = {c.final.score for c in table.configs}
    assert all(accuracy in finals for _, accuracy in trace.history)  # only fully trained configurations count
    spent = [s for s, _ in trace.history]
    accuracies = [a for _, a in trace.history]
    assert spent == sorted(spent) and accuracies == sorted(accuracies)


@pytest.mark.parametrize("policy", ["proxy", "prune"])
def test_sweetspot_policies_run_the_real_planner_on_the_table(table: Any, policy: str) -> None:
    trace = replay.sweetspot_strategy(policy, 0.2)(table, 1, table.all_once)
    assert trace.history
    if policy == "proxy":
        # maxTrials 8 judged at 20%, then the best 3 trained on: the first incumbent costs at most that.
        longest = max(c.final.seconds for c in table.configs)
        assert trace.history[0][0] <= 8 * 0.2 * longest + 3 * 0.8 * longest + 1e-9
    assert trace.history[-1][1] <= table.best.final.score


def test_a_budgeted_study_ends_budget_exhausted_with_a_best_trial_within_its_budget(table: Any) -> None:
    """The real planner, store and loop on the table: a budget of a quarter of training everything once ends the
    study on the budget, with a trial trained to the end, having spent no more than the budget."""
    for seed in range(3):
        trace = replay.strategies()["proxy+budget@0.2"](table, seed, table.all_once)
        assert trace.budget == pytest.approx(replay.BUDGET_SHARE * table.all_once)
        assert trace.ended == "BudgetExhausted"
        assert trace.incumbent is not None and trace.history[-1][0] <= trace.spent
        assert 0.5 * trace.budget < trace.spent <= trace.budget + 1e-6
    rows = replay.summarize(table, {"tpe-full": [trace], "proxy+budget@0.2": [trace]})
    assert rows[1]["ended"] == {"BudgetExhausted": 1} and rows[1]["medianSpent"] == trace.spent
    assert "proxy+budget@0.2: budget " in replay.render(table, rows, [])


def test_the_report_compares_strategies_with_tpe_full(table: Any) -> None:
    chosen = {k: v for k, v in replay.strategies().items() if k in ("tpe-full", "random-full", "proxy@0.2")}
    traces = {name: [strategy(table, seed, table.all_once) for seed in range(3)] for name, strategy in chosen.items()}
    rows = {row["strategy"]: row for row in replay.summarize(table, traces)}
    for row in rows.values():
        assert row["seeds"] == 3 and 0 <= row["reached"] <= 3
        assert row["best@25%"] <= row["best@50%"] <= row["best@100%"] <= table.best.final.score
    text = replay.render(table, list(rows.values()), replay.agreement(table))
    assert "proxy@0.2" in text and "tpe-full" in text
    agreement = replay.agreement(table)
    # The synthetic curves keep every configuration's rank: the early score ranks them perfectly.
    scored = [row for row in agreement if row["signal"] == "accuracy"]
    assert {row["fraction"] for row in scored} == set(replay.FRACTIONS)
    assert all(row["spearman"] == pytest.approx(1.0) and row["top5"] == 5 for row in scored)


def trace(*reached: tuple[float, float]) -> Any:
    """A run that paid `spent` and then knew of a final score `score`, for each (spent, score) in order."""
    run = replay.Trace()
    for spent, score in reached:
        run.pay(spent - run.spent)
        run.finished(score)
    return run


def test_the_summary_row_follows_from_the_traces_alone(table: Any) -> None:
    """Numbers worked by hand from the traces and the table's own best (not from the code under test): the median
    counts a seed that never got there as infinite compute, and both ratios divide medians."""
    best, limit, everything = table.best.final.score, table.best.final.seconds, table.all_once
    near, far = best - 0.005, best - 0.05  # within the 1 pp target, and not
    traces = {
        "tpe-full": [trace((100, far), (300, near)), trace((120, near)), trace((50, far))],  # 300, 120, never
        "fast": [trace((60, near)), trace((20, far), (90, near)), trace((40, near))],  # 60, 90, 40
    }
    rows = {row["strategy"]: row for row in replay.summarize(table, traces)}
    assert (rows["tpe-full"]["reached"], rows["fast"]["reached"]) == (2, 3)
    assert rows["tpe-full"]["medianCompute"] == 300 and rows["fast"]["medianCompute"] == 60
    assert rows["fast"]["vsTpeFull"] == pytest.approx(60 / 300) and rows["tpe-full"]["vsTpeFull"] == 1
    assert rows["fast"]["vsLimit"] == pytest.approx(60 / limit)
    # Best known within a quarter of training everything once: the scores each seed had paid for by then.
    quarter = everything / 4
    expected = sorted(max([s for c, s in run.history if c <= quarter], default=0.0) for run in traces["fast"])[1]
    assert rows["fast"]["best@25%"] == expected
    never = {row["strategy"]: row for row in replay.summarize(table, {"tpe-full": [trace((10, far))]})}
    assert math.isinf(never["tpe-full"]["medianCompute"]) and never["tpe-full"]["reached"] == 0
    assert math.isnan(never["tpe-full"]["vsTpeFull"])  # nothing to compare with


def test_an_f1_table_is_replayed_on_f1(table: Any) -> None:
    """A table that scores by micro-F1 (the real-data benchmark's) is searched and judged on F1."""
    data = {
        "metric": "f1",
        "configs": [
            {
                "config": c.index,
                "params": c.params,
                "plannedSteps": c.planned_steps,
                "curve": [
                    {
                        "fraction": p.fraction,
                        "f1": p.score / 2,
                        "accuracy": p.score,
                        "loss": p.loss,
                        "seconds": p.seconds,
                    }
                    for p in c.curve
                ],
            }
            for c in table.configs
        ],
    }
    halved = replay.Table.of(data)
    assert halved.metric == "f1" and halved.best.final.score == pytest.approx(table.best.final.score / 2)
    assert "proxy-f1@0.2" in replay.strategies("f1")
    trace = replay.sweetspot_strategy("proxy", 0.2, "f1")(halved, 0, halved.all_once)
    finals = {c.final.score for c in halved.configs}
    assert trace.history and all(score in finals for _, score in trace.history)
    rows = replay.agreement(halved)
    assert {row["signal"] for row in rows} == {"f1", "loss", "loss-curve"}
    # The extrapolated loss needs 3 checkpoints: from 30% on (the table's are 10% apart).
    assert {row["fraction"] for row in rows if row["signal"] == "loss-curve"} == {0.3, 0.5}


def test_the_guard_widens_on_a_misleading_early_signal_and_says_so(table: Any) -> None:
    """Early loss that runs against the final score (until 30%: the better final, the higher the early loss): the
    real loop notes the widening once, one more trial is promoted, and trials asked later are judged wider."""
    import optuna

    from sweetspot.core.loop import Note, settle
    from sweetspot.core.records import StartRun
    from sweetspot.storage.store import SearchStore

    def misleading(point: Any) -> dict[str, Any]:
        final = point.score / math.sqrt(point.fraction)
        loss = 0.5 + final if point.fraction < 0.3 else 1 - final * point.fraction
        return {"fraction": point.fraction, "accuracy": point.score, "loss": loss, "seconds": point.seconds}

    rows = [
        {"config": c.index, "params": c.params, "plannedSteps": 10, "curve": [misleading(p) for p in c.curve]}
        for c in table.configs
    ]
    misled = replay.Table.of({"configs": rows})
    resource = replay._study(0, "proxy", 0.2, 12, early={"minAgreement": 0.6, "promoteTopK": 3})
    # Random search: TPE would home in on one configuration, and tied finals rank nothing.
    search = resource.spec.search.model_copy(update={"sampler": "random"})
    resource = resource.model_copy(update={"spec": resource.spec.model_copy(update={"search": search})})
    storage = optuna.storages.InMemoryStorage()
    store = SearchStore.on(storage, resource)
    runtime = replay.TableRuntime(misled, 0.2, replay.Trace())
    started: list[StartRun] = []
    original = runtime.start
    runtime.start = lambda s, action: (started.append(action), original(s, action))[1]  # type: ignore[method-assign]
    notes: list[Note] = []
    for _ in range(200):
        if settle(resource, store, runtime, notes.append).finished:
            break
    widened = [n for n in notes if n.reason == "EarlyEvaluationWidened"]
    assert len(widened) == 1 and "later trials are judged at 35%" in widened[0].message
    finals = [a for a in started if a.key.stage == "final"]
    assert len(finals) == 4  # promoteTopK 3, plus one for the widening
    trials, _ = store.snapshot()
    assert all(t.early is not None and t.early.step == 2 for t in trials)  # all 12 were asked before any final
    # The user raises maxTrials: the new trials are judged at 35% (the table's nearest checkpoint: 30%).
    search = resource.spec.search.model_copy(update={"max_trials": 14})
    resource = resource.model_copy(update={"spec": resource.spec.model_copy(update={"search": search})})
    store = SearchStore.on(storage, resource)  # reopened with the new spec, as the operator does
    for _ in range(50):
        if settle(resource, store, runtime, notes.append).finished:
            break
    later = [a for a in started if a.key.stage == "early" and a.key.number >= 12]
    assert [a.early_fraction for a in later] == [0.35, 0.35]
    trials, _ = store.snapshot()
    assert [t.early.step for t in trials[12:]] == [3, 3]  # type: ignore[union-attr]
    assert len([n for n in notes if n.reason == "EarlyEvaluationWidened"]) == 1
