"""A multi-objective study (`spec.objectives`) on real storages (SQLite and a throwaway PostgreSQL): the Optuna study
gets one direction and name per objective, each early or final tell carries every objective, a trial the policy
stops under `prune` is PRUNED without a pruner, and the planner promotes along the early front."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.planner import plan
from sweetspot.core.policies.guard import promotion_order
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import AskTrials, Observed, Outcome, RecordFinal, RecordInfeasible, StartRun
from sweetspot.storage.space import distributions
from sweetspot.storage.store import SearchStore

from support.builders import outcome

pytestmark = pytest.mark.integration

OBJECTIVES = [
    {"metric": "f1", "direction": "maximize"},
    {"metric": "computeSeconds", "direction": "minimize"},
    {"metric": "trainableParameters", "direction": "minimize"},
]
COMPLETE, PRUNED, RUNNING = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
)


def study(**search: Any) -> FineTuneStudy:
    early = {"promoteTopK": 2, **search.pop("earlyEvaluation", {})}
    return FineTuneStudy.model_validate(
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "metadata": {"name": "mo", "namespace": "default"},
            "spec": {
                "model": {"builtin": "tiny"},
                "dataset": {"train": {"builtin": "product-pages"}},
                "objectives": OBJECTIVES,
                "search": {"maxTrials": 4, "seed": 1, "earlyEvaluation": early, **search},
            },
        }
    )


def early(loss: float, f1: float, seconds: float, parameters: int) -> Outcome:
    return outcome(
        f1=f1, loss=loss, seconds=seconds, step=20, planned_steps=100, judged_at=0.2, trainable_parameters=parameters
    )


def test_proxy_tells_every_objective_early_and_promotes_along_the_early_front(storage_url: str) -> None:
    resource = study()
    spec = resource.spec
    store = SearchStore.open(storage_url, resource)
    assert store.study.directions == [optuna.study.StudyDirection.MINIMIZE] * 3  # early loss, compute, parameters
    assert store.study.metric_names == [
        "early validation loss at 20% of steps",
        "compute-seconds",
        "trainable parameters",
    ]
    store.apply(AskTrials(4))
    earlies = [early(0.3, 0.7, 20.0, 90_000), early(0.5, 0.6, 4.0, 20_000), early(0.6, 0.5, 30.0, 90_000)]
    for number, result in enumerate(earlies):
        store.apply(policy_of(spec).record_early(spec, number, result, []))
    store.apply(RecordInfeasible(3, "early", "CUDA out of memory"))
    frozen = store.study.trials
    assert frozen[0].values == [0.3, pytest.approx(100.0), 90_000.0]  # 20 s over 20% of the steps: 100 s to the end
    assert frozen[3].values == [float("inf")] * 3  # out of memory: the worst in every objective
    assert [t.number for t in store.study.best_trials] == [0, 1]  # trial 2 is dominated by trial 0

    trials, sweep = store.snapshot()
    assert [t.number for t in promotion_order(spec, trials)] == [0, 1, 2]
    starts = [a for a in plan(spec, Observed(trials, sweep)).actions if isinstance(a, StartRun)]
    assert sorted(str(a.key) for a in starts) == ["t0-final"]  # parallelism 1: the first of the front
    store.apply(RecordFinal(0, outcome(f1=0.8, seconds=70.0, trainable_parameters=90_000), None))
    assert SearchStore.open(storage_url, resource).snapshot()[0][0].final is not None


def test_prune_stops_dominated_trials_itself_and_tells_every_final_objective(storage_url: str) -> None:
    resource = study(earlyEvaluation={"policy": "prune"})
    spec, policy = resource.spec, policy_of(resource.spec)
    store = SearchStore.open(storage_url, resource)
    assert store.study.metric_names == ["final F1", "compute-seconds", "trainable parameters"]
    assert store.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    store.apply(AskTrials(4))
    results = [early(0.5, 0.7, 10.0, 20_000), early(0.5, 0.6, 12.0, 20_000), early(0.5, 0.5, 30.0, 90_000)]
    for number, result in enumerate(results):
        trials, _ = store.snapshot()
        store.apply(policy.record_early(spec, number, result, trials))
    # No pruner saw these: trial 2 is dominated by both judged before it; trial 1 (dominated by trial 0) came
    # before two trials had been judged (the start-up).
    assert [t.state for t in store.study.trials[:3]] == [RUNNING, RUNNING, PRUNED]
    assert all(not t.intermediate_values for t in store.study.trials)
    trials, _ = store.snapshot()
    assert [t.state for t in trials[:3]] == ["running", "running", "pruned"]
    assert trials[2].early == results[2]  # the early record of the stopped trial is kept

    final = outcome(f1=0.8, seconds=40.0, trainable_parameters=20_000)
    store.apply(policy_of(spec).record_early(spec, 3, early(0.5, 0.9, 5.0, 20_000), trials))  # on the front
    store.apply(RecordFinal(0, final, policy.final_value(spec, final, trials[0])))
    assert store.study.trials[0].state == COMPLETE
    assert store.study.trials[0].values == [0.8, pytest.approx(50.0), 20_000.0]  # early + final compute
    assert store.study.trials[3].state == RUNNING


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random", "qmc"])
def test_every_multi_objective_sampler_proposes_inside_the_space(sampler: str, tmp_path: Any) -> None:
    resource = study(sampler=sampler, maxTrials=8)
    spec = resource.spec
    store = SearchStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}", resource)
    space = distributions(spec)
    for number in range(7):
        store.apply(AskTrials(1))
        store.apply(
            policy_of(spec).record_early(spec, number, early(1 - 0.1 * number, 0.1 * number, 5.0 + number, 10), [])
        )
    assert len(store.study.trials) == 7
    for trial in store.study.trials:
        for name, value in trial.params.items():
            assert space[name]._contains(space[name].to_internal_repr(value))


def test_a_crash_around_the_stop_neither_trains_a_stopped_trial_nor_loses_its_early_result(storage_url: str) -> None:
    """`_record_early` of a trial the policy stops: its record (not yet applied), the PRUNED tell, then applied. What
    each crash between them leaves is repaired by what the snapshot shows."""
    from dataclasses import asdict

    from sweetspot.storage.layout import TRIAL_ATTR

    resource = study(earlyEvaluation={"policy": "prune"})
    store = SearchStore.open(storage_url, resource)
    store.apply(AskTrials(2))
    result = early(0.9, 0.1, 30.0, 90_000)
    for number in (0, 1):  # the record written, not yet applied
        store.set_user_attr(TRIAL_ATTR.format(number), {"early": asdict(result), "earlyApplied": False})
    store.study.tell(1, state=PRUNED)  # trial 1: the crash came after the stop
    trials, _ = SearchStore.open(storage_url, resource).snapshot()
    assert (trials[0].state, trials[0].early) == ("running", None)  # judged again when its run is observed
    assert (trials[1].state, trials[1].early) == ("pruned", result)  # stopped for good, its early result kept
