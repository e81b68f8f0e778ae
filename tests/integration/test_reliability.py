"""Faults and outages, end to end: the real operator (a process, killed and restarted like a pod) against the
Kubernetes API emulator, a node simulator running the real trainer on builtin:tiny, and a real PostgreSQL.

Each test ends with the same audit: the study finished with exactly the trials it asked for, numbered 0..n-1,
none left RUNNING in Optuna, every Job and ConfigMap created once and every stage run once, and the counts in the
study's status equal the counts a report computes from PostgreSQL on its own.
"""

from __future__ import annotations

import collections
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import pytest
import yaml

from sweetspot.report import data as report
from sweetspot.storage.connect import StorageError
from sweetspot.storage.studies import load_study

from support.operator import (
    NAMESPACE,
    apply,
    cluster_study,
    collected_of,
    delete,
    eventually,
    exists,
    get,
    jobs_of,
    operator_world,
    phase,
)
from support.ports import free_port
from support.postgres import PostgresServer
from support.prometheus import scrape

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

SIGKILL_EXIT = -9


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    """The fake trainer (the operator is under test here, not training): a stage lasts a second."""
    with operator_world(tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=1.0) as world:
        yield world


def finish(world: dict[str, Any], name: str, timeout: float = 600) -> dict[str, Any]:
    api = world["api"]
    eventually(
        lambda: phase(api, name) in ("Succeeded", "Failed"),
        timeout,
        lambda: f"study {name} to finish; status: {yaml.safe_dump(get(api, name).get('status'))}",
    )
    return get(api, name)


def audit(world: dict[str, Any], name: str, trials: int, optuna_study: str | None = None) -> dict[str, Any]:
    """Everything a crash could have broken, checked against the storage, the API server and the node."""
    api, node, emulator = world["api"], world["node"], world["cluster"].emulator
    body = get(api, name)
    status = body["status"]
    assert status["phase"] == "Succeeded", yaml.safe_dump(status)
    stored = optuna.load_study(study_name=optuna_study or f"{NAMESPACE}/{name}", storage=world["database"])
    assert [t.number for t in stored.trials] == list(range(trials))  # exactly maxTrials, contiguous
    assert not [
        t.number for t in stored.trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    ]
    # The status counts are what a report reads from PostgreSQL on its own.
    from_storage = report.build(world["database"], NAMESPACE, name)["counts"]
    assert status["trials"] == from_storage, (status["trials"], from_storage)
    assert status["trials"]["total"] == trials and status["trials"]["failed"] == 0
    # Every Job and ConfigMap created once (deleted and re-created would count twice), every stage run once.
    jobs = jobs_of(api, name)
    created = emulator.created_in(NAMESPACE, f"{name}-")
    assert {n for (plural, n) in created if plural == "jobs"} == set(jobs)
    assert set(created.values()) == {1}, {k: v for k, v in created.items() if v != 1}
    started = [n for n in node.started if n.startswith(f"{name}-")]
    assert sorted(started) == sorted(set(started)) == jobs
    assert not [n for n in jobs if re.search(r"-r\d+$", n)]  # no attempt had to be retried
    early = [n for n in jobs if n.endswith("-early")]
    assert sorted(early) == [f"{name}-t{i}-early" for i in range(trials)]
    return body


def test_sigkill_at_chosen_points_loses_and_repeats_nothing(world: dict[str, Any]) -> None:
    """Scenario 1: the operator dies (SIGKILL, no cleanup) at each failpoint in turn, and once more from outside
    while Jobs run; restarted each time, it finishes the study as if nothing happened."""
    api, operator, node = world["api"], world["operator"], world["node"]
    operator.stop()
    log = world["operator"].log
    recovered: list[float] = []

    def life(failpoint: str) -> None:
        operator.env["SWEETSPOT_FAILPOINT"] = failpoint
        started = time.monotonic()
        operator.start()
        eventually(lambda: operator.exited() is not None, 300, f"the operator to die at failpoint {failpoint}")
        assert operator.exited() == SIGKILL_EXIT, log.read_text()[-3000:]
        assert f"failpoint {failpoint} reached" in log.read_text()
        recovered.append(time.monotonic() - started)

    apply(api, cluster_study("crashy", maxTrials=4))
    life("ask:1")  # the first of two trials asked, the second not yet: mid-ask
    life("create-job:1")  # the restarted operator started trial 0: its ConfigMap exists, its Job does not
    life("tell:1")  # the first early result is in Optuna, Sweetspot's record of it is not
    life("write-status:4")  # actions applied, the status not yet written
    operator.env.pop("SWEETSPOT_FAILPOINT")
    operator.start()
    eventually(lambda: any(n.startswith("crashy-") for n in node.processes), 300, "a running trial to kill during")
    operator.kill()  # while Jobs run
    operator.start()
    finish(world, "crashy")
    audit(world, "crashy", trials=4)
    print(f"\nseconds from each restart to the next crash: {[round(s, 1) for s in recovered]}")


def test_results_that_arrive_while_the_operator_is_down_are_all_recorded(world: dict[str, Any]) -> None:
    """Scenario 2: every early Job finishes while no operator runs; the restarted one records every result."""
    api, operator, node = world["api"], world["operator"], world["node"]
    apply(api, cluster_study("orphaned", maxTrials=3, parallelism=3))
    early = [f"orphaned-t{i}-early" for i in range(3)]
    eventually(lambda: set(early) <= set(node.started), 120, "all three early stages to start")
    operator.kill()
    eventually(lambda: set(early) <= set(node.finished), 300, "the early stages to finish with no operator")
    restarted = time.monotonic()
    operator.start()

    def recorded() -> bool:
        try:
            study, _ = load_study(world["database"], f"{NAMESPACE}/orphaned")
        except StorageError:
            return False
        return len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3

    eventually(recorded, 120, "the three early results to be recorded after the restart")
    print(f"\nrestart -> all 3 results recorded: {time.monotonic() - restarted:.1f}s")
    finish(world, "orphaned")
    audit(world, "orphaned", trials=3)


def test_a_postgresql_outage_is_survived_and_reported(tmp_path: Path) -> None:
    """Scenario 3: PostgreSQL stops for 60 s while trials run. The operator stays up, says so (condition, Event,
    metric), and when the database returns it records the results that arrived meanwhile and finishes."""
    server = PostgresServer()
    server.init()
    server.start()
    port = free_port()
    try:
        # Stages of 10 s: started before the outage, they finish during it.
        with operator_world(tmp_path, server.url, metrics_port=port, fake_trainer=True, stage_seconds=10) as world:
            api, operator, node = world["api"], world["operator"], world["node"]
            apply(api, cluster_study("outage", maxTrials=3, parallelism=3))
            early = [f"outage-t{i}-early" for i in range(3)]
            eventually(lambda: set(early) <= set(node.started), 120, "the early stages to start")
            before = {e.metadata.name for e in study_events(api, "outage")}
            server.stop()
            stopped = time.monotonic()

            def reachable() -> dict[str, Any]:
                conditions = (get(api, "outage").get("status") or {}).get("conditions", [])
                return next((c for c in conditions if c["type"] == "StorageReachable"), {})

            down = eventually(
                lambda: reachable().get("status") == "False" and reachable(), 60, "StorageReachable=False"
            )
            noticed = time.monotonic() - stopped
            assert down["reason"] == "StorageUnreachable" and f"127.0.0.1:{server.port}" in down["message"], down
            assert "StorageUnreachable" in {e.reason for e in study_events(api, "outage")}
            gauge = f'sweetspot_storage_reachable{{namespace="{NAMESPACE}",study="outage"}} 0.0'
            eventually(lambda: gauge in scrape(port), 30, "the storage gauge to drop to 0")
            # The status keeps its picture (kubectl get fts still reads) and says why it is stale.
            status = get(api, "outage")["status"]
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "StorageUnreachable"), ready
            assert status["phase"] == "Searching" and status["trials"]["total"] == 3, status

            # The outage lasts 60 s, and on until a stage has finished during it (a busy machine trains slower);
            # the operator must stay up through all of it (no crash loop) while the node finishes early stages.
            def during() -> list[str]:
                return [n for n in early if node.finished.get(n, 0.0) > stopped]  # the server is still down

            def outage_over() -> bool:
                assert operator.exited() is None, world["operator"].log.read_text()[-3000:]
                return time.monotonic() - stopped >= 60 and bool(during())

            eventually(outage_over, 300, "the end of the outage, with a stage finished during it", step=1)
            # A reconcile every 0.5 s for a minute or more: one Event, counted, not one per reconcile.
            posted = collections.Counter(e.reason for e in study_events(api, "outage") if e.metadata.name not in before)
            assert posted["StorageUnreachable"] == 1 and max(posted.values()) <= 3, posted
            finished_during = during()
            server.start()
            back = time.monotonic()
            eventually(lambda: reachable().get("status") == "True", 60, "StorageReachable=True again")
            reconnected = time.monotonic() - back
            eventually(lambda: gauge.replace("0.0", "1.0") in scrape(port), 30, "the storage gauge back at 1")
            finish(world, "outage")
            audit(world, "outage", trials=3)
            print(
                f"\noutage noticed after {noticed:.1f}s; {len(finished_during)} stage(s) finished during it; "
                f"reachable again {reconnected:.1f}s after the restart"
            )
    finally:
        server.remove()


def test_a_deleted_study_takes_its_objects_and_a_new_one_of_that_name_starts_afresh(world: dict[str, Any]) -> None:
    """Scenario 5: deleting a running study deletes its Jobs and ConfigMaps; with `onDelete: keep` (the default)
    its Optuna study stays, with `onDelete: delete` it goes; a study created again under the same name never
    sees the old trials."""
    api = world["api"]
    core = kubernetes.client.CoreV1Api(api)

    def leftovers(name: str) -> list[str]:
        selector = f"sweetspot.dev/study={name}"
        maps = [m.metadata.name for m in core.list_namespaced_config_map(NAMESPACE, label_selector=selector).items]
        return jobs_of(api, name) + maps

    apply(api, cluster_study("phoenix"))
    eventually(lambda: jobs_of(api, "phoenix"), 60, "the first Jobs")
    delete(api, "phoenix")
    eventually(lambda: not leftovers("phoenix"), 60, "the Jobs and ConfigMaps to be deleted")
    kept, _ = load_study(world["database"], f"{NAMESPACE}/phoenix")
    old_trials = len(kept.trials)
    assert old_trials >= 1

    # Created again under the same name: its own Optuna study, three fresh trials.
    eventually(lambda: not exists(api, "phoenix"), 60, "the old study to be gone")
    assert collected_of(world, "phoenix") == []  # the operator's clean-up, not the garbage collector
    apply(api, cluster_study("phoenix"))
    body = finish(world, "phoenix")
    assert body["status"]["optunaStudy"].startswith(f"{NAMESPACE}/phoenix#")
    assert body["status"]["trials"]["total"] == 3
    assert len(optuna.load_study(study_name=f"{NAMESPACE}/phoenix", storage=world["database"]).trials) == old_trials

    # onDelete: delete removes exactly this study's Optuna study.
    manifest = cluster_study("ashes")
    manifest["spec"]["onDelete"] = "delete"
    apply(api, manifest)
    eventually(lambda: jobs_of(api, "ashes"), 60, "the first Jobs")
    delete(api, "ashes")
    eventually(lambda: not leftovers("ashes") and not exists(api, "ashes"), 60, "the study and its objects gone")
    assert collected_of(world, "ashes") == []
    with pytest.raises(StorageError, match="no study"):
        load_study(world["database"], f"{NAMESPACE}/ashes")
    assert load_study(world["database"], f"{NAMESPACE}/phoenix")[0].study_name == body["status"]["optunaStudy"]


def test_a_trial_config_the_trainer_cannot_parse_is_a_failed_stage_with_its_message(world: dict[str, Any]) -> None:
    """Scenario 8's last case: the trainer exits 2 on a config it cannot validate, and its message reaches the
    study's condition and Events (bad input is nobody's to retry: the study stops)."""
    api, node = world["api"], world["node"]

    def garble(job: str, text: str) -> str:
        if job != "garbled-t0-early":
            return text
        config = json.loads(text)
        config["hyperparameters"]["learningRate"] = "fast"
        return json.dumps(config)

    node.edit_config = garble
    apply(api, cluster_study("garbled"))
    eventually(lambda: phase(api, "garbled") == "Failed", 300, "the study to fail on the bad config")
    ready = next(c for c in get(api, "garbled")["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BadInput", ready
    assert "t0-early: " in ready["message"], ready  # which stage
    assert "invalid trial config" in ready["message"] and "learningRate" in ready["message"], ready
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    failed = [e.message for e in events if e.involved_object.name == "garbled" and e.reason == "StudyFailed"]
    assert failed and "learningRate" in failed[0], failed
    eventually(lambda: not [n for n in jobs_of(api, "garbled") if n in node.processes], 60, "running Jobs stopped")


def test_bad_input_fails_every_unfinished_trial_and_says_where(tmp_path: Path, postgres_server_url: str) -> None:
    """Scenario 8 with bad data: a training file whose line 7 is not JSON. The study fails (BadInput, file:line
    in its message), each stage that rejected the data gets a StageFailed Event with file:line, no trial is left
    RUNNING in Optuna (each failed, its reason in its user attributes), and the status, the report and the
    metrics count the same failed trials."""
    claim = tmp_path / "claim"
    claim.mkdir()
    rows = [json.dumps({"input": f"Acme widget {n}", "output": {"brand": "Acme"}}) for n in range(12)]
    rows[6] = '{"input": "Acme widget 6", "output": '  # line 7: cut short
    (claim / "train.jsonl").write_text("\n".join(rows) + "\n")
    port = free_port()
    with operator_world(tmp_path, postgres_server_url, metrics_port=port) as world:
        api, node = world["api"], world["node"]
        node.claims["training-data"] = claim
        manifest = cluster_study("badrow")
        manifest["spec"]["dataset"]["train"] = {"pvc": "training-data", "path": "train.jsonl"}
        apply(api, manifest)
        body = finish(world, "badrow", timeout=300)
        status = body["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (status["phase"], ready["reason"]) == ("Failed", "BadInput"), status
        assert "train.jsonl:7: not JSON" in ready["message"], ready

        stored = optuna.load_study(study_name=f"{NAMESPACE}/badrow", storage=world["database"])
        assert stored.trials and all(t.state == optuna.trial.TrialState.FAIL for t in stored.trials), stored.trials
        assert all(t.user_attrs.get("sweetspot:failure") for t in stored.trials)
        events = study_events(api, "badrow")
        stage_failed = [e.message for e in events if e.reason == "StageFailed"]
        assert stage_failed and all("train.jsonl:7: not JSON" in m for m in stage_failed), stage_failed
        assert {"StudyFailed", "TrialFailed"} <= {e.reason for e in events}
        assert len([e for e in events if e.reason == "StudyFailed"]) == 1

        counts = status["trials"]
        assert counts["failed"] == counts["total"] == len(stored.trials) and counts["running"] == 0, counts
        assert counts == report.build(world["database"], NAMESPACE, "badrow")["counts"]
        exposition = scrape(port)
        for state, count in counts.items():
            series = f'sweetspot_study_trials{{namespace="{NAMESPACE}",state="{state}",study="badrow"}} {count}.0'
            assert state == "total" or series in exposition, series
        assert not [n for n in jobs_of(api, "badrow") if n in node.processes]


def study_events(api: kubernetes.client.ApiClient, name: str) -> list[Any]:
    return [
        e
        for e in kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
        if e.involved_object.name == name
    ]
