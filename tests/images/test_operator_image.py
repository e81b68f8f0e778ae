"""The operator image as the chart runs it: the Deployment's pod from `helm template` (command, arguments, environment
with the database URL from its Secret, securityContext, read-only root with /tmp, memory limit) as a real container
against the API emulator, a throwaway PostgreSQL, and every trial stage in a trainer container on the container
node. The one change from a cluster: the emulator speaks plain HTTP on the host's loopback, so the pod shares the
host's network and reaches it through a kubeconfig (mounted from a ConfigMap) instead of its service account."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from support import containers
from support.cluster import NodeSimulator, cluster, free_port
from support.operator import NAMESPACE, apply, check_succeeded, delete, eventually, jobs_of
from support.postgres import operator_database
from support.studies import small_study

pytestmark = [pytest.mark.images, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".venv" / "bin" / "helm"
DATABASE_SECRET = "sweetspot-db"
HEALTH = "http://127.0.0.1:8080/healthz"
"""The chart's liveness endpoint (`--liveness=http://0.0.0.0:8080/healthz`), on the host's network here."""


def chart_deployment(metrics_port: int) -> dict[str, Any]:
    """The operator Deployment exactly as the chart renders it with a database Secret and this metrics port."""
    rendered = subprocess.run(
        [
            str(HELM),
            "template",
            "sweetspot",
            str(ROOT / "charts" / "sweetspot"),
            "--namespace",
            NAMESPACE,
            "--set",
            f"database.existingSecret.name={DATABASE_SECRET}",
            "--set",
            f"metrics.port={metrics_port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"]
    return dict(deployment)


def study(name: str, image: str) -> dict[str, Any]:
    manifest = small_study(name, NAMESPACE, parallelism=2, seed=5)
    manifest["spec"]["trial"] = {
        "image": image,
        "output": {"pvc": "outputs", "path": "studies"},
        "resources": {"limits": {"cpu": "1", "memory": "4Gi"}},
    }
    return manifest


def healthy() -> bool:
    try:
        with urllib.request.urlopen(HEALTH, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class PodLog:
    """What `check_succeeded` names in its timeout message: where the operator's output is."""

    def __init__(self, path: Path) -> None:
        self.log = path


def test_the_operator_image_takes_a_study_to_succeeded_with_every_stage_in_a_trainer_container(
    images: dict[str, str], tmp_path: Path, postgres_server_url: str
) -> None:
    database = operator_database(postgres_server_url, f"images_{os.getpid()}")
    deployment = chart_deployment(free_port())
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == images["operator"], "the chart's default image is not what `make images` builds"
    container["env"].append({"name": "KUBECONFIG", "value": "/var/run/emulator/config"})
    container["volumeMounts"].append({"name": "emulator", "mountPath": "/var/run/emulator", "readOnly": True})
    pod_spec["volumes"].append({"name": "emulator", "configMap": {"name": "emulator-kubeconfig"}})

    with cluster(tmp_path) as running:
        api = running.client()
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespaced_secret(
            NAMESPACE,
            {"metadata": {"name": DATABASE_SECRET}, "data": {"url": base64.b64encode(database.encode()).decode()}},
        )
        kubeconfig = running.kubeconfig_for("operator").read_text()
        core.create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "emulator-kubeconfig"}, "data": {"config": kubeconfig}}
        )
        node = NodeSimulator(api, NAMESPACE, tmp_path / "node", containers=True)
        node.claims["outputs"] = tmp_path / "outputs"
        with node:
            operator = node.start_pod("sweetspot-operator", pod_spec, network="host")
            log = PodLog(operator.log or tmp_path)
            try:
                eventually(healthy, 120, lambda: f"the operator's /healthz (log: {log.log})")
                started = time.monotonic()
                apply(api, study("imaged", images["trainer"]))
                world = {"api": api, "operator": log, "database": database}
                check_succeeded(world, "imaged")
                wall = time.monotonic() - started
                stages = [name for name in node.commands if name.startswith("imaged-")]
                assert len(stages) == 4, stages  # three early stages and one final
                assert all(images["trainer"] in node.commands[s] for s in stages), node.commands
                print(f"\n3-trial study on the container node: {wall:.1f} s from apply to Succeeded")

                # Deleting a study while its stage runs stops the container and leaves nothing behind.
                apply(api, study("deleted", images["trainer"]))
                eventually(lambda: any(n.startswith("deleted-") for n in node.processes), 120, "a running stage")
                delete(api, "deleted")
                eventually(lambda: not jobs_of(api, "deleted"), 120, "the deleted study's Jobs to go")
                eventually(
                    lambda: not [c for c in containers.leftovers(node.node_id) if c.startswith("deleted-")],
                    60,
                    lambda: f"the deleted study's containers to go: {containers.leftovers(node.node_id)}",
                )
            finally:
                operator.kill()
        assert not node.errors, node.errors
        assert containers.leftovers(node.node_id) == []
