"""The cluster quickstart as the README runs it: the operator image as the chart deploys it (the Deployment's pod from
`helm template`: command, arguments, environment with the database URL from its Secret, securityContext, read-only
root with /tmp, memory limit) as a real container in namespace `sweetspot`, against the API emulator and a throwaway
PostgreSQL; `examples/cluster-quickstart.yaml` applied as it is in namespace `ml-team`, every stage in a trainer
container on that namespace's container node; the report read from the cluster's storage. The one change from a
cluster: the emulator speaks plain HTTP on the host's loopback, so the operator's pod shares the host's network and
reaches it through a kubeconfig (mounted from a ConfigMap) instead of its service account."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from sweetspot.api.crd import crd

from support import containers
from support.emulator import cluster
from support.kube_schema import CrdValidator
from support.node import NodeSimulator
from support.operator import eventually
from support.ports import free_port
from support.postgres import operator_database
from support.studies import small_study

pytestmark = [pytest.mark.images, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".venv" / "bin" / "helm"
DATABASE_SECRET = "sweetspot-db"
HEALTH = "http://127.0.0.1:8080/healthz"
"""The chart's liveness endpoint (`--liveness=http://0.0.0.0:8080/healthz`), on the host's network here."""


OPERATOR_NAMESPACE, STUDY_NAMESPACE = "sweetspot", "ml-team"
QUICKSTART = ROOT / "examples" / "cluster-quickstart.yaml"
GROUP, VERSION, PLURAL = "sweetspot.dev", "v1alpha1", "finetunestudies"


def chart_deployment(metrics_port: int) -> dict[str, Any]:
    """The operator Deployment exactly as the chart renders it with a database Secret and this metrics port."""
    rendered = subprocess.run(
        [
            str(HELM),
            "template",
            "sweetspot",
            str(ROOT / "charts" / "sweetspot"),
            "--namespace",
            OPERATOR_NAMESPACE,
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


def small(name: str, image: str) -> dict[str, Any]:
    manifest = small_study(name, None, parallelism=2, seed=5)
    manifest["spec"]["trial"] = {"image": image, "resources": {"limits": {"cpu": "1", "memory": "3Gi"}}}
    return manifest


def healthy() -> bool:
    try:
        with urllib.request.urlopen(HEALTH, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Studies:
    """`kubectl` for FineTuneStudies and the objects beside them, in the study namespace."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.objects = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)

    def apply(self, document: dict[str, Any]) -> None:
        """`kubectl apply -n ml-team -f`: the document as it is, into the namespace."""
        if document["kind"] == "PersistentVolumeClaim":
            self.core.create_namespaced_persistent_volume_claim(STUDY_NAMESPACE, document)
        else:
            assert CrdValidator(crd()).errors(document) == []  # what the API server's schema checks
            self.objects.create_namespaced_custom_object(GROUP, VERSION, STUDY_NAMESPACE, PLURAL, document)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            body = self.objects.get_namespaced_custom_object(GROUP, VERSION, STUDY_NAMESPACE, PLURAL, name)
        except kubernetes.client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(body)

    def phase(self, name: str) -> str | None:
        body = self.get(name) or {}
        status = body.get("status") or {}
        current = status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")
        return status.get("phase") if current and status.get("phase") in ("Succeeded", "Failed") else None

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, STUDY_NAMESPACE, PLURAL, name)

    def jobs(self, name: str) -> list[str]:
        listed = self.batch.list_namespaced_job(STUDY_NAMESPACE, label_selector=f"sweetspot.dev/study={name}")
        return sorted(job.metadata.name for job in listed.items)


def test_the_cluster_quickstart_reaches_succeeded_with_every_stage_in_a_trainer_container(
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
    documents = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    (quickstart,) = [d for d in documents if d["kind"] == "FineTuneStudy"]
    assert quickstart["spec"]["trial"]["image"] == images["trainer"], "the quickstart names another trainer image"

    with cluster(tmp_path) as running:
        running.emulator.namespaces = [OPERATOR_NAMESPACE, STUDY_NAMESPACE]
        api = running.client()
        core = kubernetes.client.CoreV1Api(api)
        secret = {"url": base64.b64encode(database.encode()).decode()}
        core.create_namespaced_secret(OPERATOR_NAMESPACE, {"metadata": {"name": DATABASE_SECRET}, "data": secret})
        kubeconfig = running.kubeconfig_for("operator").read_text()
        core.create_namespaced_config_map(
            OPERATOR_NAMESPACE, {"metadata": {"name": "emulator-kubeconfig"}, "data": {"config": kubeconfig}}
        )
        operators = NodeSimulator(api, OPERATOR_NAMESPACE, tmp_path / "operators", containers=True)
        trials = NodeSimulator(api, STUDY_NAMESPACE, tmp_path / "trials", containers=True)
        studies = Studies(api)
        with operators, trials:
            operator = operators.start_pod("sweetspot-operator", pod_spec, network="host")
            log = operator.log or tmp_path
            try:
                eventually(healthy, 120, lambda: f"the operator's /healthz (log: {log})")
                started = time.monotonic()
                for document in documents:
                    studies.apply(document)
                phase = eventually(lambda: studies.phase("quickstart"), 900, f"the quickstart to end (log: {log})")
                wall = time.monotonic() - started
                body = studies.get("quickstart") or {}
                assert phase == "Succeeded", yaml.safe_dump(body.get("status"))
                counts = body["status"]["trials"]
                assert counts["total"] == 4 and counts["complete"] == 3 and counts["pruned"] == 1, counts
                assert body["status"]["best"]["finalAccuracy"] > 0
                stages = [name for name in trials.commands if name.startswith("quickstart-")]
                assert len(stages) == 7, stages  # four early stages, three finals
                assert all(images["trainer"] in trials.commands[s] for s in stages), trials.commands
                kept = tmp_path / "trials" / "claims" / "sweetspot-quickstart" / "studies" / "quickstart"
                assert sorted(p.name for p in kept.glob("t*")) == ["t0", "t1", "t2", "t3"]
                print(f"\ncluster quickstart on the container node: {wall:.1f} s from apply to Succeeded")
                said = {e.reason for e in core.list_namespaced_event(STUDY_NAMESPACE).items}
                assert "StudySucceeded" in said and "NoOutputVolume" not in said, said  # it has an output volume

                # The README's report, from the cluster's storage (port-forwarded there; the same server here).
                report = ["report", "quickstart", "--namespace", STUDY_NAMESPACE, "--storage", database]
                done = subprocess.run(
                    [sys.executable, "-m", "sweetspot.cli", *report],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert done.returncode == 0 and "early vs final over 3 trials" in done.stdout, done.stdout + done.stderr

                # Deleting a study while its stage runs stops the container and leaves nothing behind.
                studies.apply(small("deleted", images["trainer"]))
                eventually(lambda: any(n.startswith("deleted-") for n in trials.processes), 120, "a running stage")
                studies.delete("deleted")
                eventually(lambda: studies.get("deleted") is None and not studies.jobs("deleted"), 120, "deletion")
                eventually(
                    lambda: not [c for c in containers.leftovers(trials.node_id) if c.startswith("deleted-")],
                    60,
                    lambda: f"the deleted study's containers to go: {containers.leftovers(trials.node_id)}",
                )
            finally:
                operator.kill()
        assert not operators.errors and not trials.errors, (operators.errors, trials.errors)
        assert not trials.waiting, trials.waiting
        assert containers.leftovers(operators.node_id) == containers.leftovers(trials.node_id) == []
