"""The database password never leaves the operator: with a storage URL holding a password (the operator's default
and a study's own Secret, unreachable on purpose so that its errors are exercised too), the password appears in no
operator log line, Event, study status, metric, Job or ConfigMap, and trial pods get no database credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import sqlalchemy

from support.operator import GROUP, NAMESPACE, PLURAL, VERSION, apply, cluster_study, eventually, get, operator_world
from support.prometheus import free_port, scrape

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

PASSWORD = "Pw-7zQx31-never-printed"
USER = "sweetspot_secret_test"


@pytest.fixture
def password_url(postgres_server_url: str) -> str:
    """The test server's URL as a role with a password (the throwaway server trusts local logins, so the password
    travels everywhere a real one would without being needed)."""
    engine = sqlalchemy.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(sqlalchemy.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{USER}'")).first()
        if not exists:
            connection.execute(sqlalchemy.text(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'"))
    engine.dispose()
    url = sqlalchemy.engine.make_url(postgres_server_url).set(username=USER, password=PASSWORD)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def world(tmp_path: Path, password_url: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    with operator_world(tmp_path, password_url, metrics_port=port) as world:
        world["metrics_port"] = port
        yield world


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
    core = kubernetes.client.CoreV1Api(api)
    # A study of its own storage, which does not answer: its errors name the storage, never the password.
    unreachable = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:1/nowhere"
    secret = {"metadata": {"name": "elsewhere"}, "data": {"url": base64.b64encode(unreachable.encode()).decode()}}
    core.create_namespaced_secret(NAMESPACE, secret)
    elsewhere = cluster_study("elsewhere")
    elsewhere["spec"]["storage"] = {"secretRef": {"name": "elsewhere", "key": "url"}}
    apply(api, elsewhere)
    apply(api, cluster_study("secret"))

    def storage_down() -> bool:
        conditions = (get(api, "elsewhere").get("status") or {}).get("conditions", [])
        return any(c["type"] == "StorageReachable" and c["status"] == "False" for c in conditions)

    eventually(storage_down, 300, "the unreachable storage to show in the status")
    eventually(
        lambda: (get(api, "secret").get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        600,
        f"the study to finish (log: {world['operator'].log})",
    )
    assert get(api, "secret")["status"]["phase"] == "Succeeded"

    visible = everything_visible(world)
    assert "StorageUnreachable" in visible["events"] and "127.0.0.1:1" in visible["studies"]
    assert "sweetspot_study_best_accuracy" in visible["metrics"]
    leaks = [where for where, text in visible.items() if PASSWORD in text]
    assert leaks == [], f"the password leaked into: {leaks}"

    # Trial pods get no credentials: no Secret reference, no database URL in any Job's environment.
    jobs = json.loads(visible["jobs"])
    assert jobs
    for job in jobs:
        for container in job["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), env
                assert "postgresql" not in env.get("value", ""), env
            assert not container.get("envFrom"), container
