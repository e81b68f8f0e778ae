"""The `Store` protocol (`sweetspot.core.store`), held by one suite against every store the loop can run on, as
Optuna's `optuna/testing/pytest_storages.py` runs one body against every storage: `SearchStore` on Optuna's
in-memory storage (the HPO replay's), on SQLite and on a throwaway PostgreSQL. Each property the protocol's
docstring states has a test here; a new `Store` joins the `stores` fixture's list. (No test fake implements
`Store` today.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.records import (
    Action,
    AskTrials,
    Decision,
    FailTrial,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunKey,
    StartRun,
    StopRun,
)
from sweetspot.core.store import Store
from sweetspot.storage.store import SearchStore

from support.builders import outcome

pytestmark = pytest.mark.integration

OpenStore = Callable[[FineTuneStudy], Store]
"""A fresh study's store, for a resource."""


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Each `Store` implementation, on a storage of its own."""
    if request.param == "memory":
        storage = optuna.storages.InMemoryStorage()
        return lambda resource: SearchStore.on(storage, resource)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'studies.db'}"
    else:
        from support.postgres import fresh_database

        server: str = request.getfixturevalue("postgres_server_url")
        url = fresh_database(server, f"c_{abs(hash(request.node.nodeid)) % 10**10}")
    return lambda resource: SearchStore.open(url, resource)


def study(name: str = "contract", policy: str = "proxy", **metadata: Any) -> FineTuneStudy:
    return FineTuneStudy.model_validate(
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "metadata": {"name": name, "namespace": "default", **metadata},
            "spec": {
                "model": {"builtin": "tiny"},
                "dataset": {"train": {"builtin": "product-pages"}},
                "search": {
                    "maxTrials": 6,
                    "seed": 1,
                    "earlyEvaluation": {"policy": policy, "pruner": "median", "promoteTopK": 2},
                },
            },
        }
    )


def records(policy: str) -> list[Action]:
    """One of every record a planner makes for four asked trials and a learning curve, as `policy` makes them."""
    pruned = policy == "prune"
    return [
        RecordEarly(0, outcome(f1=0.6, step=20), 0.6, report_to_pruner=pruned),
        RecordEarly(1, outcome(f1=0.4, step=20), 0.4, report_to_pruner=pruned),
        RecordInfeasible(2, "early", "CUDA out of memory"),
        RecordFailure(RunKey("trial", 3, "early"), "exit 1", disruption=False),
        RecordFailure(RunKey("trial", 3, "early", attempt=1), "node drained", disruption=True),
        FailTrial(3, "gave up after 2 attempts"),
        RecordFinal(0, outcome(f1=0.7, step=100), 0.7 if pruned else None),
        RecordSweepPoint(100, outcome(f1=0.5)),
        RecordSweepPoint(100, outcome(f1=0.55), repeat=1),
        RecordFailure(RunKey("sweep", 200, "full"), "exit 1", disruption=False),
    ]


def test_snapshot_lists_trials_in_number_order_and_curve_points_by_size(stores: OpenStore) -> None:
    store = stores(study())
    assert store.snapshot() == ([], [])
    store.apply(AskTrials(5))
    for number in (3, 1, 4, 0, 2):  # recorded out of order
        store.apply(RecordEarly(number, outcome(f1=0.1 * number), 0.1 * number, report_to_pruner=False))
    for samples, repeat in ((300, 0), (100, 1), (200, 0), (100, 0)):
        store.apply(RecordSweepPoint(samples, outcome(f1=0.5), repeat=repeat))
    trials, sweep = store.snapshot()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [(p.samples, p.repeat) for p in sweep] == [(100, 0), (100, 1), (200, 0), (300, 0)]


@pytest.mark.parametrize("policy", ["proxy", "prune"])
def test_apply_returns_the_trials_asked_and_nothing_for_a_record(stores: OpenStore, policy: str) -> None:
    store = stores(study(policy=policy))
    assert store.apply(AskTrials(3)) == [0, 1, 2]
    assert store.apply(AskTrials(1)) == [3]
    assert store.apply(AskTrials(0)) == []
    for record in records(policy):
        assert store.apply(record) == [], record
    assert store.apply(AskTrials(2)) == [4, 5]
    assert [t.number for t in store.snapshot()[0]] == [0, 1, 2, 3, 4, 5]


def test_apply_refuses_what_belongs_to_the_runtime(stores: OpenStore) -> None:
    store = stores(study())
    store.apply(AskTrials(1))
    for action in (StartRun(RunKey("trial", 0, "early"), {}), StopRun(RunKey("trial", 0, "early"), "cancelled")):
        with pytest.raises(TypeError, match="runtime"):
            store.apply(action)
    assert [t.state for t in store.snapshot()[0]] == ["running"]


@pytest.mark.parametrize("policy", ["proxy", "prune"])
# Optuna says so when an early score is reported to the pruner again, and keeps the first: what this test asks.
@pytest.mark.filterwarnings("ignore:The reported value is ignored because this `step=1` is already reported")
def test_applying_a_record_twice_changes_nothing_the_second_time(stores: OpenStore, policy: str) -> None:
    """What a crash between applying an action and seeing it applied repeats."""
    resource = study(policy=policy)
    store = stores(resource)
    store.apply(AskTrials(4))
    for record in records(policy):
        store.apply(record)
        once = store.snapshot()
        assert store.apply(record) == [], record
        assert store.snapshot() == once, record
        assert stores(resource).snapshot() == once, record  # as a store opened afresh reads it


def test_set_phase_is_true_only_when_the_phase_changes(stores: OpenStore) -> None:
    resource = study()
    store = stores(resource)
    assert store.set_phase(Decision((), "Running", "TrialsRunning", "1 running"), resource) is True
    assert store.set_phase(Decision((), "Running", "TrialsRunning", "1 running"), resource) is False
    # Another reason, message or spec, the same phase: recorded, but not a change of phase.
    assert store.set_phase(Decision((), "Running", "Promoting", "2 running"), resource) is False
    raised = resource.model_copy(
        update={
            "spec": resource.spec.model_copy(
                update={"search": resource.spec.search.model_copy(update={"max_trials": 9})}
            )
        }
    )
    assert store.set_phase(Decision((), "Running", "Promoting", "2 running"), raised) is False
    assert store.set_phase(Decision((), "Succeeded", "StudyComplete"), raised) is True
    assert store.set_phase(Decision((), "Succeeded", "StudyComplete"), raised) is False
    assert stores(resource).set_phase(Decision((), "Succeeded", "StudyComplete"), raised) is False  # kept
    assert store.set_phase(Decision((), "Running", "BudgetRaised"), raised) is True
