"""Deleting a study with `onDelete: delete` while its storage is down: the study's Jobs go at once, and the finalizer
holds the resource while kopf retries, so a storage that comes back in time still loses the study's trials as asked;
one that stays down past `SWEETSPOT_STORAGE_DELETE_WAIT_SECONDS` lets the resource go with its Optuna study kept,
and a Warning Event says so. The real operator, the API emulator and a PostgreSQL stopped and started for real."""

from __future__ import annotations

import time
from pathlib import Path

import kubernetes
import optuna
import pytest

from support.operator import NAMESPACE, apply, cluster_study, delete, eventually, exists, jobs_of, operator_world
from support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]

WAIT_SECONDS = 40


def optuna_studies(database: str) -> set[str]:
    return set(optuna.get_all_study_names(storage=database))


def test_a_study_deleted_while_its_storage_is_down(tmp_path: Path) -> None:
    server = PostgresServer()
    server.init()
    server.start()
    wait = {"SWEETSPOT_STORAGE_DELETE_WAIT_SECONDS": str(WAIT_SECONDS)}
    try:
        with operator_world(tmp_path, server.url, fake_trainer=True, stage_seconds=30, operator_env=wait) as world:
            api, database = world["api"], world["database"]
            for name in ("back", "gone"):
                manifest = cluster_study(name, maxTrials=2, parallelism=1)
                manifest["spec"]["onDelete"] = "delete"
                apply(api, manifest)
                eventually(lambda name=name: jobs_of(api, name), 60, f"the first Job of {name}")
            assert {f"{NAMESPACE}/back", f"{NAMESPACE}/gone"} <= optuna_studies(database)

            # The storage comes back within the wait: the trials are deleted as asked.
            server.stop()
            delete(api, "back")
            eventually(lambda: not jobs_of(api, "back"), 60, "back's Jobs to go (they need no storage)")
            log = world["operator"].log

            def retries() -> int:
                return log.read_text(errors="replace").count("the storage did not answer, retrying")

            eventually(lambda: retries() >= 2, 60, "two retries of the deletion")  # one every 5 s
            assert exists(api, "back"), "the resource went while its Optuna study could not be deleted"
            server.start()
            eventually(lambda: not exists(api, "back"), 60, "back to be deleted once the storage answers")
            assert f"{NAMESPACE}/back" not in optuna_studies(database)

            # The storage stays down past the wait: the resource goes, its trials are kept, and that is said.
            server.stop()
            stopped = time.monotonic()
            delete(api, "gone")
            eventually(lambda: not exists(api, "gone"), WAIT_SECONDS + 60, "gone to be deleted after the wait")
            assert time.monotonic() - stopped >= WAIT_SECONDS - 1
            events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
            (kept,) = [e for e in events if e.reason == "OptunaStudyKept" and e.involved_object.name == "gone"]
            assert kept.type == "Warning" and "its Optuna study is kept" in kept.message, kept.message
            server.start()
            assert f"{NAMESPACE}/gone" in optuna_studies(database)
    finally:
        server.remove()
