"""The test API server is as strict as a real one where the operator depends on it, and Events are aggregated like
Kubernetes' own recorder does: against the emulator alone (no operator, no database), in a second or two."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest

from sweetspot.cluster.events import EventRecorder

from support.emulator import RunningCluster
from support.node import job_failure, local_path, local_value
from support.operator import GROUP, NAMESPACE, PLURAL, VERSION, cluster_study

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
MERGE = {"_content_type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kubernetes.client.ApiClient]:
    with RunningCluster(tmp_path_factory.mktemp("emulator")) as running:
        yield running.client()


def objects(api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


def create(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    created: dict[str, Any] = objects(api).create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, cluster_study(name)
    )
    return created


def patch_status(api: kubernetes.client.ApiClient, name: str, status: Any) -> dict[str, Any]:
    patched: dict[str, Any] = objects(api).patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": status}, **MERGE
    )
    return patched


def test_an_invalid_status_is_refused_with_422_and_unknown_fields_are_pruned(api: kubernetes.client.ApiClient) -> None:
    created = create(api, "strict")
    assert created["spec"]["search"]["sampler"] == "tpe"  # defaulted as a server does
    with pytest.raises(kubernetes.client.exceptions.ApiException) as refused:
        patch_status(api, "strict", {"conditions": "x"})
    assert refused.value.status == 422 and "status.conditions" in str(refused.value.body)
    stored = patch_status(api, "strict", {"phase": "Searching", "invented": 1, "trials": {"total": 2, "made-up": 3}})
    assert stored["status"]["phase"] == "Searching" and "invented" not in stored["status"]
    assert stored["status"]["trials"] == {
        "total": 2,
        "running": 0,
        "waiting": 0,
        "complete": 0,
        "pruned": 0,
        "failed": 0,
    }
    # A spec change is validated too (and bumps the generation); a status write never does.
    with pytest.raises(kubernetes.client.exceptions.ApiException) as invalid:
        objects(api).patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "strict", {"spec": {"search": {"maxTrials": 0}}}, **MERGE
        )
    assert invalid.value.status == 422
    assert stored["metadata"]["generation"] == created["metadata"]["generation"] == 1


def test_merge_patches_follow_rfc_7386(api: kubernetes.client.ApiClient) -> None:
    create(api, "merging")
    patch_status(api, "merging", {"phase": "Searching", "sweetSpot": {"samples": 200, "saturated": True}})
    assert "sweetSpot" not in patch_status(api, "merging", {"sweetSpot": None})["status"]  # null deletes
    # A member may change kind: an object over a scalar and back (stock kmock answered 500).
    labels = {"metadata": {"labels": {"team": "a"}}}
    objects(api).patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "merging", labels, **MERGE)
    nested = {"metadata": {"labels": {"team": None}, "annotations": {"note": "x"}}}
    body = objects(api).patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "merging", nested, **MERGE)
    assert body["metadata"].get("labels", {}) == {} and body["metadata"]["annotations"] == {"note": "x"}
    core = kubernetes.client.CoreV1Api(api)
    config = {"metadata": {"name": "kinds"}, "data": {"a": "1"}}
    core.create_namespaced_config_map(NAMESPACE, config)
    core.patch_namespaced_config_map("kinds", NAMESPACE, {"data": {"a": None, "b": "2"}}, **MERGE)
    assert core.read_namespaced_config_map("kinds", NAMESPACE).data == {"b": "2"}


def test_an_older_crd_lets_a_bad_status_in_and_it_stays(tmp_path: Path) -> None:
    with RunningCluster(tmp_path) as running:
        api = running.client()
        create(api, "legacy")
        with running.emulator.older_crd():
            assert patch_status(api, "legacy", {"conditions": "x"})["status"]["conditions"] == "x"
        # Other writes go on (ratcheting: an unchanged invalid status does not block them)...
        body = objects(api).patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "legacy", {"metadata": {"annotations": {"a": "b"}}}, **MERGE
        )
        assert body["status"]["conditions"] == "x"
        # ... and a status write that repairs it is accepted.
        assert patch_status(api, "legacy", {"conditions": []})["status"]["conditions"] == []


def test_mount_paths_map_by_path_prefix_only(tmp_path: Path) -> None:
    mounts = {"/tmp": tmp_path / "tmp", "/sweetspot/data": tmp_path / "data", "/sweetspot/data-1": tmp_path / "d1"}
    assert local_path("/tmp/x", mounts) == f"{tmp_path}/tmp/x"
    assert local_path("/tmp", mounts) == f"{tmp_path}/tmp"
    assert local_path("/data/tmp/x", mounts) == "/data/tmp/x"
    assert local_path("/tmpfiles/x", mounts) == "/tmpfiles/x"
    assert local_path("/sweetspot/data-1/v.jsonl", mounts) == f"{tmp_path}/d1/v.jsonl"
    config = '{"train": "/sweetspot/data/t.jsonl", "note": "see /tmp/x", "n": 3}'
    assert local_value(config, mounts) == f'{{"train": "{tmp_path}/data/t.jsonl", "note": "see /tmp/x", "n": 3}}'
    assert local_value("/cache/hf", {"/cache": tmp_path}) == str(tmp_path) + "/hf"


def test_a_failed_job_gets_the_reason_the_job_controller_gives() -> None:
    def job(rules: list[dict[str, Any]] | None) -> Any:
        policy = (
            SimpleNamespace(
                rules=[SimpleNamespace(action=r["action"], on_exit_codes=r.get("codes")) for r in rules or []]
            )
            if rules is not None
            else None
        )
        container = SimpleNamespace(name="trainer")
        spec = SimpleNamespace(
            pod_failure_policy=policy, template=SimpleNamespace(spec=SimpleNamespace(containers=[container]))
        )
        return SimpleNamespace(spec=spec)

    codes = SimpleNamespace(container_name="trainer", operator="In", values=[2, 3])
    policy = [{"action": "Ignore"}, {"action": "FailJob", "codes": codes}]
    reason, message = job_failure(job(policy), "default/t0-pod", 2)
    assert reason == "PodFailurePolicy"
    assert (
        message == "Container trainer for pod default/t0-pod failed with exit code 2 matching FailJob rule at index 1"
    )
    assert job_failure(job(policy), "default/t0-pod", 137)[0] == "BackoffLimitExceeded"
    assert job_failure(job(None), "default/t0-pod", 2) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )


def test_events_repeat_on_one_object_with_count_and_series(api: kubernetes.client.ApiClient) -> None:
    body = create(api, "noisy")
    core = kubernetes.client.CoreV1Api(api)
    clock = [0.0]
    recorder = EventRecorder(core=lambda: core, repeat_seconds=300, clock=lambda: clock[0])

    def events(reason: str) -> list[Any]:
        items = core.list_namespaced_event(NAMESPACE).items
        return [e for e in items if e.involved_object.name == "noisy" and e.reason == reason]

    for _ in range(20):  # a reconcile every 0.5 s for 10 s
        recorder.post(body, "StorageUnreachable", "connection refused", warning=True, persistent=True)
        clock[0] += 0.5
    (one,) = events("StorageUnreachable")
    assert (one.count, one.type, one.series) == (1, "Warning", None)  # repeats counted, not yet written
    clock[0] += 300
    recorder.post(body, "StorageUnreachable", "timeout", warning=True, persistent=True)
    (one,) = events("StorageUnreachable")
    assert (one.count, one.series.count, one.message) == (21, 21, "timeout")
    assert one.last_timestamp >= one.first_timestamp
    # Other messages of an ordinary reason are other Events; the same message again is the same one.
    recorder.post(body, "StageStarted", "t0-early started")
    recorder.post(body, "StageStarted", "t1-early started")
    clock[0] += 301
    recorder.post(body, "StageStarted", "t0-early started")
    assert sorted((e.message, e.count) for e in events("StageStarted")) == [
        ("t0-early started", 2),
        ("t1-early started", 1),
    ]
    # An Event deleted meanwhile (its TTL ran out) is created again.
    for event in events("StorageUnreachable"):
        core.delete_namespaced_event(event.metadata.name, NAMESPACE)
    clock[0] += 301
    recorder.post(body, "StorageUnreachable", "timeout", warning=True, persistent=True)
    assert [e.count for e in events("StorageUnreachable")] == [22]


def test_lists_and_watches_send_only_what_the_label_selector_selects(tmp_path: Path) -> None:
    with RunningCluster(tmp_path) as running:
        batch = kubernetes.client.BatchV1Api(running.client())
        spec = {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}
        for name, labels in [("ours", {"sweetspot.dev/study": "s"}), ("theirs", {"app": "ci"})]:
            batch.create_namespaced_job(NAMESPACE, {"metadata": {"name": name, "labels": labels}, "spec": spec})
        listed = batch.list_namespaced_job(NAMESPACE, label_selector="sweetspot.dev/study")
        assert [j.metadata.name for j in listed.items] == ["ours"]
        assert {j.metadata.name for j in batch.list_namespaced_job(NAMESPACE, label_selector="!app").items} == {"ours"}
        watch = kubernetes.watch.Watch()
        seen = []
        for event in watch.stream(batch.list_namespaced_job, NAMESPACE, label_selector="sweetspot.dev/study"):
            seen.append(event["object"].metadata.name)
            if not seen[1:]:  # the replayed object; now one of each kind arrives, and only ours may come
                for name, labels in [("theirs-2", {"app": "ci"}), ("ours-2", {"sweetspot.dev/study": "s"})]:
                    body = {"metadata": {"name": name, "labels": labels}, "spec": spec}
                    batch.create_namespaced_job(NAMESPACE, body)
            else:
                watch.stop()
        assert seen == ["ours", "ours-2"]
        emulator = running.emulator
        assert emulator.reads[("test", "watch", "jobs", "sweetspot.dev/study")] == 1
        assert emulator.served[("test", "jobs", "theirs-2")] == 0 and emulator.served[("test", "jobs", "ours-2")] == 1


def test_garbage_collection_follows_owner_references_and_the_propagation_policy(tmp_path: Path) -> None:
    """A study with a finalizer goes once the finalizer is removed, and takes the ConfigMap and Job it owns; a Job
    deleted with no policy orphans its pod (batch/v1's default), one deleted with `Background` takes its pod."""
    with RunningCluster(tmp_path) as running:
        api, emulator = running.client(), running.emulator
        core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
        body = cluster_study("owner")
        body["metadata"]["finalizers"] = ["sweetspot.dev/cleanup"]
        study = objects(api).create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

        def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
            meta = owner["metadata"]
            kind, version = owner.get("kind", "Job"), owner.get("apiVersion", "batch/v1")
            return [{"apiVersion": version, "kind": kind, "name": meta["name"], "uid": meta["uid"]}]

        def job(name: str, owner: dict[str, Any]) -> dict[str, Any]:
            created = batch.create_namespaced_job(
                NAMESPACE,
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": name, "ownerReferences": owned_by(owner)},
                    "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                },
            )
            return dict(api.sanitize_for_serialization(created))

        def pod(name: str, owner: dict[str, Any]) -> None:
            body = {"metadata": {"name": name, "ownerReferences": owned_by(owner)}, "spec": {"containers": []}}
            core.create_namespaced_pod(NAMESPACE, body)

        def pods() -> list[str]:
            return sorted(p.metadata.name for p in core.list_namespaced_pod(NAMESPACE).items)

        core.create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "owner-t0-early", "ownerReferences": owned_by(study)}, "data": {}}
        )
        kept, taken = job("owner-t0-early", study), job("owner-t1-early", study)
        pod("kept-pod", kept)
        pod("taken-pod", taken)

        batch.delete_namespaced_job("owner-t0-early", NAMESPACE)  # no policy: a Job orphans its pods
        assert pods() == ["kept-pod", "taken-pod"]
        assert not core.read_namespaced_pod("kept-pod", NAMESPACE).metadata.owner_references
        batch.delete_namespaced_job("owner-t1-early", NAMESPACE, propagation_policy="Background")
        assert pods() == ["kept-pod"] and emulator.collected == [("pods", NAMESPACE, "taken-pod")]

        job("owner-t2-early", study)
        objects(api).delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "owner")
        assert len(core.list_namespaced_config_map(NAMESPACE).items) == 1  # the finalizer holds the study
        objects(api).patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "owner", {"metadata": {"finalizers": None}}, **MERGE
        )
        assert core.list_namespaced_config_map(NAMESPACE).items == []
        assert batch.list_namespaced_job(NAMESPACE).items == []
        assert emulator.collected[1:] == [
            ("configmaps", NAMESPACE, "owner-t0-early"),
            ("jobs", NAMESPACE, "owner-t2-early"),
        ]
