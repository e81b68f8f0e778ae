"""A study with `spec.trial.queueName`: every stage's Job is created suspended with Kueue's queue label, nothing
runs until it is admitted (unsuspended, as Kueue does), and a study whose Jobs wait in the queue still ends once
they are admitted. The real operator, the API emulator, and the test in the role of Kueue."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import kubernetes
import pytest

from support.emulator import MERGE
from support.operator import NAMESPACE, apply, check_succeeded, cluster_study, eventually, get, operator_world

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]

QUEUE = "team-queue"


def test_queued_jobs_wait_for_admission_and_then_run(tmp_path: Path, postgres_server_url: str) -> None:
    with operator_world(tmp_path, postgres_server_url, fake_trainer=True, stage_seconds=0.5) as world:
        api, node = world["api"], world["node"]
        batch = kubernetes.client.BatchV1Api(api)
        manifest = cluster_study("queued", maxTrials=3, parallelism=2)
        manifest["spec"]["trial"]["queueName"] = QUEUE
        apply(api, manifest)

        def queued() -> list[str]:
            listed = batch.list_namespaced_job(NAMESPACE, label_selector="sweetspot.dev/study=queued").items
            return sorted(j.metadata.name for j in listed if j.spec.suspend)

        # Held in the queue: created suspended and labelled for Kueue, and not run, however long they wait.
        waiting = eventually(lambda: len(queued()) == 2 and queued(), 60, "two queued Jobs")
        time.sleep(3)
        assert not node.started, node.started
        for name in waiting:
            job = batch.read_namespaced_job(name, NAMESPACE)
            assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == QUEUE
        assert get(api, "queued")["status"]["phase"] == "Searching"

        # Kueue admits whatever is queued, one Job a second, until the study ends.
        admitted: list[str] = []
        stop = threading.Event()

        def kueue() -> None:
            while not stop.wait(1.0):
                for name in queued()[:1]:
                    batch.patch_namespaced_job(name, NAMESPACE, {"spec": {"suspend": False}}, **MERGE)
                    admitted.append(name)

        admitter = threading.Thread(target=kueue, name="kueue", daemon=True)
        admitter.start()
        try:
            check_succeeded(world, "queued")
        finally:
            stop.set()
            admitter.join(timeout=10)
        assert not admitter.is_alive()
        assert sorted(node.started) == sorted(admitted)  # every stage ran, and only once admitted
        assert {"queued-t0-early", "queued-t1-early", "queued-t2-early"} <= set(admitted)
