"""A TrainJob stage that fails, through the operator: evicted (a disruption: retried, never counted against the
trial) and crashed (a failure: retried `spec.trial.retries` times, then the trial fails). The real operator, the
API emulator and a node that runs each TrainJob as two torchrun processes, one of which the test disrupts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from sweetspot.cluster import trainjobs

from support.operator import NAMESPACE, apply, eventually, get, operator_world, phase
from support.operator import cluster_study as study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    # Stages of 3 s: long enough for a disruption to land while the TrainJob runs.
    with operator_world(tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=3.0, trainjobs=True) as world:
        yield world


def trainjob_study(name: str, retries: int, **search: Any) -> dict[str, Any]:
    manifest = study(name, **search)
    manifest["spec"]["trial"]["runtime"] = {"kind": "trainJob", "numNodes": 2}
    manifest["spec"]["trial"]["retries"] = retries
    return manifest


def made(api: kubernetes.client.ApiClient, name: str) -> list[str]:
    listed = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        trainjobs.GROUP, trainjobs.VERSION, NAMESPACE, trainjobs.PLURAL, label_selector=f"sweetspot.dev/study={name}"
    )
    return sorted(t["metadata"]["name"] for t in listed["items"])


def reasons(api: kubernetes.client.ApiClient, name: str) -> dict[str, list[str]]:
    said: dict[str, list[str]] = {}
    for event in kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items:
        if event.involved_object.name == name:
            said.setdefault(event.reason, []).append(event.message)
    return said


def once(action: Callable[[str], None], stage: str) -> Callable[[str], None]:
    """A node hook that disrupts the first TrainJob of `stage` to start, and only that one."""
    done: list[str] = []

    def hook(name: str) -> None:
        if name == stage and not done:
            done.append(name)
            action(name)

    return hook


def test_an_evicted_trainjob_is_retried_and_a_crashed_one_is_a_failure(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    node.hooks["started"] = once(node.evict, "shaky-t0-early")
    apply(api, trainjob_study("shaky", retries=1, maxFailedTrials=0))
    # The eviction is retried as a new attempt; then that attempt crashes: a failure, retried once (retries: 1).
    eventually(lambda: "shaky-t0-early-r1" in node.started, 120, lambda: f"the retry: {made(api, 'shaky')}")
    node.crash("shaky-t0-early-r1")
    eventually(lambda: phase(api, "shaky") in ("Succeeded", "Failed"), 300, "the study to end")
    status = get(api, "shaky")["status"]
    assert status["phase"] == "Succeeded" and status["trials"]["failed"] == 0, status  # maxFailedTrials 0 held
    assert {"shaky-t0-early", "shaky-t0-early-r1", "shaky-t0-early-r2"} <= set(made(api, "shaky"))
    said = reasons(api, "shaky")
    assert [m.split(":")[0] for m in said["StageDisrupted"]] == ["t0-early"], said  # the eviction
    assert [m.split(":")[0] for m in said["StageFailed"]] == ["t0-early-r1"], said  # the crash


def test_a_trainjob_that_keeps_crashing_fails_its_trial_and_the_study(world: dict[str, Any]) -> None:
    api, node = world["api"], world["node"]
    node.hooks["started"] = lambda name: node.crash(name) if name.startswith("broken-t0-early") else None
    apply(api, trainjob_study("broken", retries=1, maxFailedTrials=0, parallelism=1))  # one trial at a time
    eventually(lambda: phase(api, "broken") == "Failed", 300, lambda: f"the study to fail: {made(api, 'broken')}")
    assert {"broken-t0-early", "broken-t0-early-r1"} <= set(made(api, "broken"))
    assert "broken-t0-early-r2" not in made(api, "broken")  # retries: 1, so two attempts in all
    status = get(api, "broken")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TooManyFailedTrials", status
    assert (status["trials"]["total"], status["trials"]["failed"]) == (1, 1), status  # no second trial asked
