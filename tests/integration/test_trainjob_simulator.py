"""The node simulator runs Kubeflow Trainer v2 TrainJobs as a real Trainer and JobSet would: a pod per node, each
running torchrun with the torch runtime's PET_* environment, whose workers form one gloo process group. Against
the emulator alone (no operator, no database), with the fake trainer: about ten seconds per TrainJob of two nodes
on two cores, most of it torch's imports (torchrun's agent and its worker on each node).

Each test has a cluster, a node and a claim of its own and submits the TrainJobs it needs, so it passes alone and
in any order; the deadlines leave room for a loaded two-core machine (a TrainJob there took a minute or more).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from sweetspot.contract import DataRef, ModelRef, StageResult, TrialConfig

from support.emulator import RunningCluster
from support.node import ALL_JOBS_COMPLETED, FAILED_JOBS, JOBSET_NAME_LABEL, TRAINJOBS, NodeSimulator, alive
from support.operator import NAMESPACE, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
MERGE = {"_content_type": "application/merge-patch+json"}
CLAIM = "results"
OUTPUT = "/sweetspot/output"
BROKEN, LONG = "tj-t4-early", "tj-t5-early"
ENDS = 240
"""Seconds a two-node TrainJob of the fake trainer gets to end (or to have all its processes up) from its submission:
torch is imported four times over on two cores (torchrun's agent and its worker on each node)."""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with RunningCluster(tmp_path) as running:
        api = running.client()
        node = NodeSimulator(
            api, NAMESPACE, tmp_path, environ={"SWEETSPOT_FAKE_STAGE_SECONDS": "0.2"}, fake_trainer=True
        )
        node.claims[CLAIM] = tmp_path / "claim"
        with node:
            yield {"api": api, "node": node, "claim": tmp_path / "claim"}
        assert not node.errors, node.errors


def labels(study: str = "tj") -> dict[str, str]:
    return {
        "sweetspot.dev/study": study,
        "sweetspot.dev/trial": "3",
        "sweetspot.dev/stage": "early",
        "sweetspot.dev/run": "t3-early",
        "app.kubernetes.io/managed-by": "sweetspot",
    }


def config(study: str = "tj") -> TrialConfig:
    return TrialConfig(
        study=study,
        trial=3,
        stage="early",
        model=ModelRef(builtin="tiny"),
        train=DataRef(builtin="product-pages", rows=40),
        output_dir=f"{OUTPUT}/{study}/runs/t3-early",
    )


def trainjob(name: str, study: str = "tj", suspend: bool = False, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A TrainJob of the shape the operator creates: the trial config from the ConfigMap of the same name."""
    group, version, _ = TRAINJOBS
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(study)},
        "spec": {
            "runtimeRef": {"name": "torch-distributed", "apiGroup": group, "kind": "ClusterTrainingRuntime"},
            "labels": labels(study),
            **({"suspend": True} if suspend else {}),
            "trainer": {
                "image": "sweetspot-trainer:test",
                "command": ["torchrun", "--module", "sweetspot_trainer"],
                "env": [
                    {
                        "name": "SWEETSPOT_TRIAL_CONFIG",
                        "valueFrom": {"configMapKeyRef": {"name": name, "key": "trial.json"}},
                    },
                    {"name": "HF_HOME", "value": "/cache/huggingface"},
                    *({"name": k, "value": v} for k, v in (env or {}).items()),
                ],
                "numNodes": 2,
                "resourcesPerNode": {"limits": {"cpu": "1"}},
            },
            "podSpecOverrides": [
                {
                    "targetJobs": [{"name": "node"}],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "cache", "emptyDir": {}},
                        {"name": "output", "persistentVolumeClaim": {"claimName": CLAIM}},
                    ],
                    "containers": [
                        {
                            "name": "node",
                            "volumeMounts": [
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "cache", "mountPath": "/cache"},
                                {"name": "output", "mountPath": OUTPUT},
                            ],
                        }
                    ],
                }
            ],
        },
    }


def submit(api: kubernetes.client.ApiClient, body: dict[str, Any], trial_json: str) -> None:
    name = body["metadata"]["name"]
    config_map = {"metadata": {"name": name, "labels": body["metadata"]["labels"]}, "data": {"trial.json": trial_json}}
    kubernetes.client.CoreV1Api(api).create_namespaced_config_map(NAMESPACE, config_map)
    group, version, plural = TRAINJOBS
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(group, version, NAMESPACE, plural, body)


def read(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    group, version, plural = TRAINJOBS
    body: dict[str, Any] = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
        group, version, NAMESPACE, plural, name
    )
    return body


def condition(api: kubernetes.client.ApiClient, name: str, kind: str) -> dict[str, Any] | None:
    conditions = (read(api, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


def ended(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any] | None:
    return condition(api, name, "Complete") or condition(api, name, "Failed")


def pods(api: kubernetes.client.ApiClient, name: str) -> list[Any]:
    """A TrainJob's pods as a client finds them: by the JobSet's label, in node-rank order."""
    listed = kubernetes.client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"{JOBSET_NAME_LABEL}={name}"
    )
    return sorted(listed.items, key=lambda p: int(p.metadata.labels["batch.kubernetes.io/job-completion-index"]))


def terminated(pod: Any) -> Any:
    (status,) = pod.status.container_statuses
    assert status.name == "node"
    return status.state.terminated


def test_a_queued_trainjob_waits_then_runs_one_pod_per_node_in_one_process_group(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    body = trainjob("tj-t3-early", suspend=True)
    submit(api, body, config().to_json())
    eventually(lambda: condition(api, "tj-t3-early", "Suspended"), 10, "the Suspended condition")
    assert "tj-t3-early" not in node.started and pods(api, "tj-t3-early") == []
    # Kueue admits it.
    group, version, plural = TRAINJOBS
    admit = {"spec": {"suspend": False}}
    kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
        group, version, NAMESPACE, plural, "tj-t3-early", admit, **MERGE
    )

    done = eventually(lambda: ended(api, "tj-t3-early"), ENDS, "the TrainJob to end")
    assert (done["type"], done["reason"], done["message"]) == ("Complete", *ALL_JOBS_COMPLETED), done
    status = read(api, "tj-t3-early")["status"]
    resumed = next(c for c in status["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "Resumed")
    assert status["jobsStatus"] == [
        {"name": "node", "ready": 0, "active": 0, "suspended": 0, "succeeded": 1, "failed": 0}
    ]

    first, second = pods(api, "tj-t3-early")
    assert [first.metadata.name, second.metadata.name] == ["tj-t3-early-node-0-0", "tj-t3-early-node-0-1"]
    for rank, pod in enumerate((first, second)):
        assert pod.metadata.labels == body["spec"]["labels"] | {
            JOBSET_NAME_LABEL: "tj-t3-early",
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": str(rank),
            "job-name": "tj-t3-early-node-0",
        }
        assert pod.status.phase == "Succeeded" and terminated(pod).exit_code == 0
    # Rank 0 reports for the whole group, and saw both ranks in it; rank 1 reports nothing.
    result = StageResult.model_validate_json(terminated(first).message)
    assert (result.study, result.trial, result.stage, result.status) == ("tj", 3, "early", "ok")
    assert re.search(r"world size (\d+)", result.message).group(1) == "2", result.message  # type: ignore[union-attr]
    assert terminated(second).message == ""
    written = list(world["claim"].rglob("result-*.json"))
    assert [p.relative_to(world["claim"]).as_posix() for p in written] == ["tj/runs/t3-early/result-early.json"]
    assert node.started.count("tj-t3-early") == 1 and "tj-t3-early" in node.finished


def test_a_trainjob_whose_config_is_broken_fails_with_rank_0s_bad_input(world: dict[str, Any]) -> None:
    api = world["api"]
    submit(api, trainjob(BROKEN), '{"contract": 2, "study": "tj", "trial": 4, "stage": "early"}')
    done = eventually(lambda: ended(api, BROKEN), ENDS, "the TrainJob to end")
    assert (done["type"], done["reason"], done["message"]) == ("Failed", *FAILED_JOBS), done
    first, second = pods(api, BROKEN)
    assert first.status.phase == second.status.phase == "Failed"
    # Both nodes fail on the config, but whichever torchrun ends first fails the JobSet and the other node is
    # killed (137). torchrun exits 1 whatever its worker's code was (the trainer's 2, bad input): only rank 0's
    # termination message, written before any kill, tells why.
    codes = {terminated(first).exit_code, terminated(second).exit_code}
    assert 1 in codes and codes <= {1, 137} and terminated(first).reason == "Error"
    result = StageResult.model_validate_json(terminated(first).message)
    assert (result.trial, result.status) == (4, "bad_input") and "train: Field required" in result.message
    assert terminated(second).message == ""


def test_a_deleted_trainjob_has_every_process_of_every_node_killed(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    # A stage far longer than the wait for its processes: it is still running when it is deleted.
    submit(api, trainjob(LONG, env={"SWEETSPOT_FAKE_STAGE_SECONDS": "600"}), config().to_json())
    # torchrun's agent and its worker on each node (the workers in sessions of their own).
    running = eventually(lambda: len(node.pids(LONG)) >= 4 and node.pids(LONG), ENDS, "4 processes")
    group, version, plural = TRAINJOBS
    kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(group, version, NAMESPACE, plural, LONG)
    eventually(lambda: not any(alive(pid) for pid in running), 10, lambda: f"{running} to be killed")
    assert LONG not in node.processes and LONG not in node.finished


def test_trainjobs_are_listed_by_label_selector(world: dict[str, Any]) -> None:
    api = world["api"]
    for study in ("ours", "theirs"):
        submit(api, trainjob(f"{study}-t3-early", study=study, suspend=True), config(study).to_json())
    group, version, plural = TRAINJOBS
    listed = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        group, version, NAMESPACE, plural, label_selector="sweetspot.dev/study=ours"
    )
    assert [t["metadata"]["name"] for t in listed["items"]] == ["ours-t3-early"]


def test_a_trainjob_has_the_status_subresource(world: dict[str, Any]) -> None:
    """A main write never touches the status, a status write touches nothing else (as for a real CRD with
    `subresources.status`)."""
    api = world["api"]
    submit(api, trainjob("tj-t6-early", suspend=True), config().to_json())
    eventually(lambda: condition(api, "tj-t6-early", "Suspended"), 10, "the Suspended condition")
    group, version, plural = TRAINJOBS
    objects = kubernetes.client.CustomObjectsApi(api)
    patch = {"metadata": {"annotations": {"a": "b"}}, "status": {"conditions": []}}
    body = objects.patch_namespaced_custom_object(group, version, NAMESPACE, plural, "tj-t6-early", patch, **MERGE)
    assert body["status"]["conditions"] and body["metadata"]["annotations"] == {"a": "b"}
    patch = {"spec": {"suspend": False}, "status": {"jobsStatus": []}}
    body = objects.patch_namespaced_custom_object_status(
        group, version, NAMESPACE, plural, "tj-t6-early", patch, **MERGE
    )
    assert body["spec"]["suspend"] is True and body["status"]["jobsStatus"] == []
