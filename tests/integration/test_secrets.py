"""The database password never leaves the operator: with a storage URL holding a password (the operator's default,
which the server checks with scram-sha-256, and a study's own Secret, unreachable or wrong on purpose so that its
errors are exercised too), the password appears in no operator log line, Event, study status, metric, Job or
ConfigMap, and trial pods get no database credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from sqlalchemy.engine import make_url

from support.operator import GROUP, NAMESPACE, PLURAL, VERSION, apply, cluster_study, eventually, get, operator_world
from support.ports import free_port
from support.postgres import OPERATOR_PASSWORD, OPERATOR_ROLE
from support.prometheus import scrape

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

PASSWORD = "Pw-7zQx31-never-printed"
"""The password of a storage that does not answer."""
WRONG = "Wr0ng-pw-4Tq9-never-printed"


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    """The operator logs in as its own role, with a password the server checks (see support/postgres.py)."""
    port = free_port()
    with operator_world(tmp_path, postgres_server_url, metrics_port=port, fake_trainer=True) as world:
        world["metrics_port"] = port
        assert make_url(world["database"]).password == OPERATOR_PASSWORD
        yield world


def storage_secret(api: kubernetes.client.ApiClient, name: str, url: str) -> None:
    data = {"url": base64.b64encode(url.encode()).decode()}
    kubernetes.client.CoreV1Api(api).create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "data": data})


def storage_reachable(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    conditions = (get(api, name).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "StorageReachable"), {})


def leaks(world: dict[str, Any], *passwords: str) -> list[str]:
    return [f"{where}" for where, text in everything_visible(world).items() if any(p in text for p in passwords)]


def everything_visible(world: dict[str, Any]) -> dict[str, str]:
    """What a user, a log collector or a Prometheus can see, as text."""
    api = world["api"]
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    objects = kubernetes.client.CustomObjectsApi(api)

    def dump(items: Any) -> str:
        return json.dumps(api.sanitize_for_serialization(items), default=str)

    return {
        "operator log": world["operator"].log.read_text(errors="replace"),
        "events": dump(core.list_namespaced_event(NAMESPACE).items),
        "studies": json.dumps(objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)),
        "metrics": scrape(world["metrics_port"]),
        "jobs": dump(batch.list_namespaced_job(NAMESPACE).items),
        "configmaps": dump(core.list_namespaced_config_map(NAMESPACE).items),
        "pods": dump(core.list_namespaced_pod(NAMESPACE).items),
    }


def test_the_password_appears_nowhere(world: dict[str, Any]) -> None:
    api = world["api"]
    # A study of its own storage, which does not answer: its errors name the storage, never the password.
    storage_secret(api, "elsewhere", f"postgresql+psycopg://someone:{PASSWORD}@127.0.0.1:1/nowhere")
    elsewhere = cluster_study("elsewhere")
    elsewhere["spec"]["storage"] = {"secretRef": {"name": "elsewhere", "key": "url"}}
    apply(api, elsewhere)
    apply(api, cluster_study("secret"))

    eventually(
        lambda: storage_reachable(api, "elsewhere").get("status") == "False",
        300,
        "the unreachable storage to show in the status",
    )
    eventually(
        lambda: (get(api, "secret").get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        600,
        f"the study to finish (log: {world['operator'].log})",
    )
    assert get(api, "secret")["status"]["phase"] == "Succeeded"

    visible = everything_visible(world)
    assert "StorageUnreachable" in visible["events"] and "127.0.0.1:1" in visible["studies"]
    assert "sweetspot_study_best_accuracy" in visible["metrics"]
    assert leaks(world, PASSWORD, OPERATOR_PASSWORD) == [], "a password leaked"

    # Trial pods get no credentials: no Secret reference, no database URL in any Job's environment.
    jobs = json.loads(visible["jobs"])
    assert jobs
    for job in jobs:
        for container in job["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), env
                assert "postgresql" not in env.get("value", ""), env
            assert not container.get("envFrom"), container


def test_a_wrong_password_is_refused_and_never_shown(world: dict[str, Any]) -> None:
    """The operator's role with a wrong password, in a study's Secret: the server refuses the login, the study says
    StorageReachable=False with the server's reason, and the wrong password appears nowhere."""
    api = world["api"]
    wrong = make_url(world["database"]).set(password=WRONG).render_as_string(hide_password=False)
    storage_secret(api, "wrong-password", wrong)
    manifest = cluster_study("refused")
    manifest["spec"]["storage"] = {"secretRef": {"name": "wrong-password", "key": "url"}}
    apply(api, manifest)
    down = eventually(
        lambda: storage_reachable(api, "refused").get("status") == "False" and storage_reachable(api, "refused"),
        120,
        "the refused login to show in the status",
    )
    assert down["reason"] == "StorageUnreachable", down
    assert f'password authentication failed for user "{OPERATOR_ROLE}"' in down["message"], down
    assert f"{OPERATOR_ROLE}:***@" in down["message"], down
    gauge = f'sweetspot_storage_reachable{{namespace="{NAMESPACE}",study="refused"}} 0.0'
    eventually(lambda: gauge in scrape(world["metrics_port"]), 30, "the storage gauge at 0")
    assert "StorageUnreachable" in everything_visible(world)["events"]
    assert leaks(world, WRONG, OPERATOR_PASSWORD) == [], "a password leaked"
