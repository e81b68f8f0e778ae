"""Status is output, never input: the operator derives a study's phase and counts from the storage and the Jobs on
every pass, so a forged or malformed status is repaired (with one Event) instead of steering it, and a lowered
budget is explained. The real operator against the API emulator and a real PostgreSQL; the node finishes stages
instantly with a canned result, holding chosen ones running, so these tests are about bookkeeping, not training."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import pytest

from sweetspot.report import data as report

from support.emulator import RunningCluster
from support.instant_node import InstantNode
from support.operator import (
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    Operator,
    apply,
    cluster_study,
    eventually,
    get,
    jobs_of,
    phase,
    tracebacks,
)
from support.ports import free_port
from support.postgres import operator_database
from support.prometheus import scrape

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]

MERGE = {"_content_type": "application/merge-patch+json"}


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    database = operator_database(postgres_server_url, f"status_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**6}")
    with RunningCluster(tmp_path) as running:
        api = running.client()
        operator = Operator(running, database, tmp_path, metrics_port=free_port())
        with InstantNode(api) as node:
            operator.start()
            try:
                yield {"api": api, "node": node, "operator": operator, "database": database, "cluster": running}
            finally:
                operator.stop()
                assert not node.errors, tracebacks(node.errors)


def patch_status(api: kubernetes.client.ApiClient, name: str, status: Any) -> None:
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": status}, **MERGE
    )


def events(api: kubernetes.client.ApiClient, name: str, reason: str) -> list[Any]:
    items = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    return [e for e in items if e.involved_object.name == name and e.reason == reason]


def finished(world: dict[str, Any], name: str) -> dict[str, Any]:
    api, operator = world["api"], world["operator"]

    def done() -> bool:
        assert operator.exited() is None, operator.log.read_text()[-3000:]
        return phase(api, name) in ("Succeeded", "Failed")

    eventually(done, 120, lambda: f"{name} to finish: {get(api, name).get('status')}")
    return get(api, name)


def check_books(world: dict[str, Any], name: str, trials: int) -> dict[str, Any]:
    """The study succeeded with `trials` trials, none left RUNNING in Optuna, and the status, the report and the
    metrics count them alike."""
    body = finished(world, name)
    status = body["status"]
    assert status["phase"] == "Succeeded", status
    stored = optuna.load_study(study_name=f"{NAMESPACE}/{name}", storage=world["database"]).trials
    assert len(stored) == trials
    assert [t.number for t in stored if not t.state.is_finished()] == []
    assert status["trials"] == report.build(world["database"], NAMESPACE, name)["counts"]
    assert status["trials"]["total"] == trials and status["observedGeneration"] == body["metadata"]["generation"]
    exposition = scrape(world["operator"].metrics_port)
    for state, count in status["trials"].items():
        series = f'sweetspot_study_trials{{namespace="{NAMESPACE}",state="{state}",study="{name}"}} {count}.0'
        assert state == "total" or series in exposition, (series, exposition)
    return body


def test_a_forged_phase_mid_study_is_repaired_and_the_study_completes(world: dict[str, Any]) -> None:
    """`phase: Succeeded` written over a running study (by anyone allowed to write the status subresource, a
    restore from a backup, a bug): repaired from the storage with one Event, by the running operator and by a
    restarted one alike; the running trial's result is recorded and the study completes."""
    api, node, operator = world["api"], world["node"], world["operator"]
    node.hold = lambda job: job == "forged-t1-early"
    apply(api, cluster_study("forged", maxTrials=3, parallelism=2))
    eventually(lambda: "forged-t1-early" in node.held and phase(api, "forged") == "Searching", 60, "trial 1 running")
    forgery = {"phase": "Succeeded", "observedGeneration": 1, "trials": {"running": 0, "complete": 3}}
    patch_status(api, "forged", forgery)
    eventually(lambda: phase(api, "forged") == "Searching", 30, "the forged phase to be repaired")
    # The Event follows the status patch that repairs the phase, so it can land a moment after the phase does.
    (repaired,) = eventually(lambda: events(api, "forged", "StatusRepaired"), 10, "the StatusRepaired Event")
    assert repaired.type == "Warning" and "changed by someone else (phase, trials)" in repaired.message, repaired
    assert get(api, "forged")["status"]["trials"]["running"] == 1

    # A restarted operator has no memory of what it wrote: it does not trust the forged phase either.
    operator.kill()
    patch_status(api, "forged", forgery)
    operator.start()
    eventually(lambda: phase(api, "forged") == "Searching", 60, "the restarted operator to repair the phase")
    node.release("forged-t1-early")
    check_books(world, "forged", trials=3)
    trial = optuna.load_study(study_name=f"{NAMESPACE}/forged", storage=world["database"]).trials[1]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None  # its result was recorded
    assert len(events(api, "forged", "StatusRepaired")) == 1


def test_a_malformed_status_written_past_the_schema_is_repaired_with_one_event(world: dict[str, Any]) -> None:
    """`conditions: "x"`, as a buggy client of an older CRD could leave it: no reconcile fails on it (the timer,
    and the Job watch that reconciles when a stage ends while the status is broken), and the next pass rewrites
    the status, saying so once."""
    api, node, operator = world["api"], world["node"], world["operator"]
    node.hold = lambda job: job == "junk-t0-early"
    apply(api, cluster_study("junk", maxTrials=2, parallelism=1))
    eventually(lambda: "junk-t0-early" in node.held and phase(api, "junk") == "Searching", 60, "trial 0 running")
    with world["cluster"].emulator.older_crd():
        patch_status(api, "junk", {"conditions": "x"})
    node.release("junk-t0-early")  # the stage ends while the status is broken

    def repaired() -> bool:
        conditions = (get(api, "junk").get("status") or {}).get("conditions")
        return isinstance(conditions, list) and any(c["type"] == "Ready" for c in conditions)

    eventually(repaired, 30, "the status to be repaired")
    check_books(world, "junk", trials=2)
    (event,) = events(api, "junk", "StatusRepaired")
    assert "malformed (conditions: " in event.message and event.count == 1, event
    log = operator.log.read_text()
    assert "Traceback" not in log and "has no attribute 'get'" not in log, log[-3000:]


def test_a_lowered_budget_says_which_trials_run_past_it(world: dict[str, Any]) -> None:
    """maxTrials 5 -> 2 with 3 trials asked: an Event and `status.overBudget` name trial 3, which finishes; no new
    trial starts."""
    api, node = world["api"], world["node"]
    node.hold = lambda job: job.endswith("-early")
    apply(api, cluster_study("budget", maxTrials=5, parallelism=3))
    early = {f"budget-t{n}-early" for n in range(3)}
    eventually(lambda: early <= set(node.held), 60, "three trials running")
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, "budget", {"spec": {"search": {"maxTrials": 2, "parallelism": 2}}}, **MERGE
    )
    over = eventually(lambda: (get(api, "budget").get("status") or {}).get("overBudget"), 30, "status.overBudget")
    assert over["trials"] == [2], over
    assert "trial 2 is past the budget" in over["message"] and "no new trial starts" in over["message"], over
    (lowered,) = events(api, "budget", "BudgetLowered")
    assert lowered.message == over["message"]
    for job in sorted(early):
        node.release(job)
    body = check_books(world, "budget", trials=3)
    assert body["status"]["overBudget"] == over
    assert not [j for j in jobs_of(api, "budget") if j.startswith(("budget-t3", "budget-t4"))]
    assert len(events(api, "budget", "BudgetLowered")) == 1
