"""The operator end to end: the real kopf operator (a subprocess, as in a pod) against the Kubernetes API
emulator, a node simulator running the real trainer on builtin:tiny, and a throwaway PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import pytest

from sweetspot.cluster.jobs import CONFIG_KEY
from sweetspot.contract import TrialConfig
from sweetspot.report import data as report

from support.operator import (
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    apply,
    check_succeeded,
    collected_of,
    delete,
    eventually,
    exists,
    get,
    jobs_of,
    operator_world,
    phase,
)
from support.operator import (
    cluster_study as study,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    """The fake trainer: these tests are about the operator (a stage lasts a second, long enough to be caught
    running); `real_world` runs the real one."""
    with operator_world(tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=1.0) as world:
        yield world


@pytest.fixture
def real_world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    with operator_world(tmp_path, postgres_server_url) as world:
        yield world


def test_a_study_runs_to_succeeded_on_the_cluster(real_world: dict[str, Any]) -> None:
    """The whole path with the real trainer in the pods: configs in, results back through termination messages."""
    world = real_world
    api, node = world["api"], world["node"]
    applied = time.monotonic()
    apply(api, study("e2e"))
    eventually(lambda: jobs_of(api, "e2e"), 60, "the first Job")
    body = check_succeeded(world, "e2e")
    # Operator latency, as the node sees it (0.2 s polling; reconcile interval 0.5 s in these tests).
    first = min(node.seen.values()) - applied
    gaps = sorted(
        min(t - done for t in node.seen.values() if t >= done)
        for name, done in node.finished.items()
        if any(t >= done for t in node.seen.values())
    )
    print(
        f"\napply -> first Job {first:.2f}s; result -> next Job median {gaps[len(gaps) // 2]:.2f}s max {gaps[-1]:.2f}s"
    )
    names = jobs_of(api, "e2e")
    assert {"e2e-t0-early", "e2e-t1-early", "e2e-t2-early"} <= set(names)
    assert len([n for n in names if n.endswith("-final")]) == 1
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    reasons = {e.reason for e in events if e.involved_object and e.involved_object.name == "e2e"}
    assert {"StageStarted", "EarlyResult", "TrialPromoted", "StudySucceeded"} <= reasons
    # No spec.trial.output: said once, as a Warning naming the field, as `sweetspot validate` says it.
    (unkept,) = [e for e in events if e.reason == "NoOutputVolume" and e.involved_object.name == "e2e"]
    assert unkept.type == "Warning" and unkept.count == 1 and unkept.message.startswith("spec.trial.output: not set")
    assert body["status"]["optunaStudy"] == "default/e2e"


def test_a_multi_objective_study_shows_its_pareto_front_in_the_status(world: dict[str, Any]) -> None:
    manifest = study("front", earlyEvaluation={"atFraction": 0.25, "promoteTopK": 2, "signal": "loss"})
    manifest["spec"]["objectives"] = [
        {"metric": "f1", "direction": "maximize"},
        {"metric": "computeSeconds", "direction": "minimize"},
    ]
    apply(world["api"], manifest)
    body = check_succeeded(world, "front", finals=(2,))  # the schema admits the front, as the API server would
    front = body["status"]["paretoFront"]
    assert front["objectives"] == ["f1", "computeSeconds"] and 1 <= front["size"] <= 2
    assert front["best"] == body["status"]["best"]["trial"] and front["knee"] in {t["trial"] for t in front["trials"]}
    assert all(t["values"]["computeSeconds"] > 0 for t in front["trials"]) and front["message"]
    stored = optuna.load_study(study_name=f"{NAMESPACE}/front", storage=world["database"])
    assert len(stored.directions) == 2 and all(len(t.values) == 2 for t in stored.trials)


def test_the_operator_killed_mid_study_loses_and_repeats_nothing(world: dict[str, Any]) -> None:
    api, operator, node = world["api"], world["operator"], world["node"]
    apply(api, study("restart"))
    eventually(lambda: any(n.startswith("restart-t0") for n in node.started), 120, "the first trial to run")
    operator.kill()  # SIGKILL while trials run: no cleanup, no goodbye
    operator.start()
    check_succeeded(world, "restart")
    names = jobs_of(api, "restart")
    assert len(names) == len(set(names)) == len(set(node.started) & set(names))
    assert not [n for n in names if "-r" in n.rsplit("-", 1)[-1]]  # no stage had to be retried


def test_deleting_a_study_deletes_its_jobs(world: dict[str, Any]) -> None:
    api = world["api"]
    apply(api, study("doomed"))
    eventually(lambda: jobs_of(api, "doomed"), 60, "the first Job")
    kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "doomed")
    eventually(lambda: not jobs_of(api, "doomed"), 60, "the study's Jobs to be deleted")
    eventually(lambda: not exists(api, "doomed"), 60, "the study to be gone")
    maps = kubernetes.client.CoreV1Api(api).list_namespaced_config_map(
        NAMESPACE, label_selector="sweetspot.dev/study=doomed"
    )
    assert maps.items == []
    assert collected_of(world, "doomed") == []  # the operator deleted them: nothing was left to the collector


def patch(api: kubernetes.client.ApiClient, name: str, body: dict[str, Any]) -> None:
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name, body, _content_type="application/merge-patch+json"
    )


def condition(api: kubernetes.client.ApiClient, name: str, kind: str) -> dict[str, Any]:
    conditions = (get(api, name).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def test_an_evicted_pod_is_retried_without_counting_as_a_failure(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    evicted: list[str] = []

    def evict_first(job: str) -> None:
        if not evicted:
            evicted.append(job)
            node.evict(job)

    node.hooks["started"] = evict_first
    apply(api, study("evicted", maxFailedTrials=0))
    check_succeeded(world, "evicted")
    # The Job's pod failure policy ignores a disruption: the Job controller starts a new pod in the same Job, rather
    # than the operator a new attempt (tests/integration/test_preemption_on_cluster.py: the new pod resumes).
    assert evicted and node.replacements == {evicted[0]: 1}
    assert f"{evicted[0]}-r1" not in jobs_of(api, "evicted")
    assert get(api, "evicted")["status"]["trials"]["failed"] == 0


def test_failed_trials_beyond_the_limit_fail_the_study_and_stop_its_jobs(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    node.hooks["started"] = lambda job: node.crash(job) if job.endswith("t0-early") else None
    manifest = study("failing", maxFailedTrials=0)
    manifest["spec"]["trial"]["retries"] = 0
    apply(api, manifest)
    eventually(lambda: phase(api, "failing") == "Failed", 300, "the study to fail")
    status = get(api, "failing")["status"]
    assert condition(api, "failing", "Ready")["reason"] == "TooManyFailedTrials"
    running = [n for n in jobs_of(api, "failing") if n in node.processes]
    assert running == []  # the operator deleted the Jobs still running
    stored = optuna.load_study(study_name=f"{NAMESPACE}/failing", storage=world["database"])
    failed_in_storage = sum(t.state == optuna.trial.TrialState.FAIL for t in stored.trials)
    assert status["trials"]["failed"] == failed_in_storage
    # Trial 0 failed by itself; a trial that was running when the study failed failed with it, saying so; none is
    # left RUNNING in Optuna.
    first, *others = stored.trials
    assert first.state == optuna.trial.TrialState.FAIL and "failed 1 times" in first.user_attrs["sweetspot:failure"]
    for trial in others:
        assert trial.state.is_finished(), trial
        if trial.state == optuna.trial.TrialState.FAIL:
            assert "the study failed (TooManyFailedTrials)" in trial.user_attrs["sweetspot:failure"], trial
    assert status["trials"]["running"] == 0
    # Every count in the status is what a report computes from PostgreSQL on its own.
    assert status["trials"] == report.build(world["database"], NAMESPACE, "failing")["counts"]
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    assert {"StageFailed", "TrialFailed", "StudyFailed"} <= {
        e.reason for e in events if e.involved_object.name == "failing"
    }


def test_suspend_resume_immutable_fields_and_a_raised_budget(world: dict[str, Any]) -> None:
    api = world["api"]
    manifest = study("paused", maxTrials=2)
    manifest["spec"]["suspend"] = True
    apply(api, manifest)
    eventually(lambda: condition(api, "paused", "Suspended").get("status") == "True", 60, "the Suspended condition")
    assert jobs_of(api, "paused") == []  # suspended from the start: nothing runs

    patch(api, "paused", {"spec": {"suspend": False}})
    eventually(lambda: jobs_of(api, "paused"), 60, "Jobs after resuming")
    # An immutable change while it runs: the API server's CEL transition rules refuse it...
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        patch(api, "paused", {"spec": {"model": {"maxSequenceLength": 256}}})
    assert refused.value.status == 422 and "spec.model" in str(refused.value.body)
    # ... and should one get through (a CRD older than the rules), the operator refuses it too: a condition and
    # one Event, and the study runs on as it started.
    with world["cluster"].emulator.older_crd():
        patch(api, "paused", {"spec": {"model": {"maxSequenceLength": 256}}})
    eventually(lambda: condition(api, "paused", "Ready").get("reason") == "ImmutableFieldChanged", 60, "the refusal")
    assert "spec.model" in condition(api, "paused", "Ready")["message"]
    eventually(lambda: phase(api, "paused") == "Succeeded", 600, "the first budget to finish, the change refused")
    assert get(api, "paused")["status"]["trials"]["total"] == 2
    assert condition(api, "paused", "Ready")["reason"] == "ImmutableFieldChanged"  # until the field is put back
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    refusals = [e for e in events if e.involved_object.name == "paused" and e.reason == "ImmutableFieldChanged"]
    assert len(refusals) == 1 and refusals[0].type == "Warning"

    with world["cluster"].emulator.older_crd():  # putting the field back is a change the rules refuse as well
        patch(
            api, "paused", {"spec": {"model": {"maxSequenceLength": 128}, "search": {"maxTrials": 3, "parallelism": 1}}}
        )
    eventually(lambda: "paused-t2-early" in jobs_of(api, "paused"), 60, "a third trial after raising the budget")
    # The new trial may beat the promoted one early, and then it is trained to the end too.
    check_succeeded(world, "paused", finals=(1, 2))
    assert condition(api, "paused", "Ready")["reason"] != "ImmutableFieldChanged"
    # Every stage trained with the spec the study started with.
    maps = kubernetes.client.CoreV1Api(api).list_namespaced_config_map(
        NAMESPACE, label_selector="sweetspot.dev/study=paused"
    )
    configs = [TrialConfig.model_validate_json(m.data[CONFIG_KEY]) for m in maps.items]
    assert len(configs) >= 4 and {c.model.max_sequence_length for c in configs} == {128}


def test_a_study_deleted_while_a_pass_is_between_configmap_and_job_leaves_nothing(
    tmp_path: Path, postgres_server_url: str
) -> None:
    """A pass that a finished Job started (not the study's timer, whose thread kopf waits for before it lets a study
    go) is held by a failpoint after creating the next stage's ConfigMap and before its Job; the study is deleted
    meanwhile. The clean-up waits for that pass, which then creates its Job, and sweeps both: no Job and no
    ConfigMap of the study is left. Without the wait, the sweep ran first and the Job was created after it: an
    orphan whose pod waits for a ConfigMap that is gone (a GPU Job on a real cluster, until the garbage collector)."""
    release = tmp_path / "release"
    # The timer's first tick starts the first stage; its interval is too long for it to run again here.
    hold = {"SWEETSPOT_FAILPOINT": f"create-job:2:hold={release}", "SWEETSPOT_RECONCILE_SECONDS": "3600"}
    with operator_world(
        tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=1.0, operator_env=hold
    ) as world:
        api, log = world["api"], world["operator"].log
        core = kubernetes.client.CoreV1Api(api)

        def config_maps() -> list[str]:
            items = core.list_namespaced_config_map(NAMESPACE, label_selector="sweetspot.dev/study=held").items
            return sorted(c.metadata.name for c in items)

        apply(api, study("held", parallelism=1))
        eventually(lambda: "failpoint create-job:2 reached: holding" in log.read_text(), 90, "the pass to be held")
        assert config_maps() == ["held-t0-early", "held-t1-early"] and jobs_of(api, "held") == ["held-t0-early"]
        delete(api, "held")
        eventually(
            lambda: "waiting for the running reconcile of default/held" in log.read_text() or not config_maps(),
            60,
            "the clean-up to start",
        )
        release.touch()

        def gone() -> bool:
            try:
                get(api, "held")
            except kubernetes.client.exceptions.ApiException as exc:
                return exc.status == 404
            return False

        def held_pass_ended() -> bool:
            after = log.read_text().partition("failpoint create-job:2 released")[2]
            return "Handler 'job_finished' succeeded" in after  # the handler whose pass was held has returned

        eventually(gone, 120, "the study to be deleted")
        eventually(held_pass_ended, 60, "the held pass to end")
        assert jobs_of(api, "held") == [] and config_maps() == []
        assert collected_of(world, "held") == []  # swept by the operator, not by the garbage collector
        # No pod is left waiting for a ConfigMap (a deleted Job's waiting pod goes with it on the node's next tick).
        eventually(lambda: not world["node"].waiting, 30, lambda: f"no pod waiting: {world['node'].waiting}")
