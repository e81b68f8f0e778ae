"""Trials on Kubeflow Trainer: the real operator runs a study whose stages are TrainJobs of two nodes, against the
API emulator (`support.emulator`) and a node simulator that runs each TrainJob as two torchrun processes
(`support.node`), with the restart and deletion guarantees of the Job runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from sweetspot.cluster import trainjobs
from sweetspot.contract import StageResult

from support.operator import (
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    apply,
    check_succeeded,
    eventually,
    jobs_of,
    operator_world,
)
from support.operator import (
    cluster_study as study,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    with operator_world(tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=1.0, trainjobs=True) as world:
        yield world


def trainjob_study(name: str, **search: Any) -> dict[str, Any]:
    manifest = study(name, **search)
    manifest["spec"]["trial"]["runtime"] = {"kind": "trainJob", "numNodes": 2}
    return manifest


def trainjobs_of(api: kubernetes.client.ApiClient, name: str) -> list[dict[str, Any]]:
    listed = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        trainjobs.GROUP, trainjobs.VERSION, NAMESPACE, trainjobs.PLURAL, label_selector=f"sweetspot.dev/study={name}"
    )
    return sorted(listed["items"], key=lambda t: t["metadata"]["name"])


def names(api: kubernetes.client.ApiClient, name: str) -> list[str]:
    return [t["metadata"]["name"] for t in trainjobs_of(api, name)]


def test_two_node_trainjobs_run_a_study_through_an_operator_restart_and_go_with_it(world: dict[str, Any]) -> None:
    """One study: the operator is killed while its first TrainJob runs, the study still succeeds with no stage run
    twice, every stage ran as a TrainJob of two torchrun nodes whose rank 0 reported, and deleting the study takes
    its TrainJobs and ConfigMaps with it."""
    api, operator, node = world["api"], world["operator"], world["node"]
    apply(api, trainjob_study("dist"))
    eventually(lambda: any(n.startswith("dist-t0") for n in node.started), 120, "the first TrainJob to run")
    operator.kill()  # SIGKILL while a TrainJob runs: no cleanup, no goodbye
    operator.start()
    check_succeeded(world, "dist")

    made = trainjobs_of(api, "dist")
    made_names = [t["metadata"]["name"] for t in made]
    assert {"dist-t0-early", "dist-t1-early", "dist-t2-early"} <= set(made_names)
    assert len(made_names) == len(set(node.started) & set(made_names))  # each started once
    assert not [n for n in made_names if "-r" in n.rsplit("-", 1)[-1]]  # no stage had to be retried
    assert jobs_of(api, "dist") == []  # no batch/v1 Job: every stage ran as a TrainJob
    assert all(t["spec"]["trainer"]["numNodes"] == 2 for t in made)
    core = kubernetes.client.CoreV1Api(api)
    for made_job in made:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=trainjobs.all_pods(made_job["metadata"]["name"]))
        assert len(pods.items) == 2  # one per node
        messages = {
            p.metadata.labels[trainjobs.LABEL_COMPLETION_INDEX]: p.status.container_statuses[0].state.terminated.message
            for p in pods.items
        }
        assert not messages["1"]  # node rank 1 reports nothing; rank 0 reports the stage's result
        result = StageResult.model_validate_json(messages["0"])
        assert result.status == "ok" and "world size 2" in result.message
    events = core.list_namespaced_event(NAMESPACE).items
    started = [e.message for e in events if e.involved_object.name == "dist" and e.reason == "StageStarted"]
    assert started and all("TrainJob dist-" in m for m in started)

    kubernetes.client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "dist")
    eventually(lambda: not names(api, "dist"), 60, "the study's TrainJobs to be deleted")
    assert core.list_namespaced_config_map(NAMESPACE, label_selector="sweetspot.dev/study=dist").items == []
