"""Smoke test on a real cluster (kind, k3d, ...): runs only when SWEETSPOT_SMOKE_KUBECONFIG names one.

    SWEETSPOT_SMOKE_KUBECONFIG=~/.kube/config SWEETSPOT_TEST_DATABASE_URL=postgresql+psycopg://... \\
        .venv/bin/pytest tests/integration/test_real_cluster_smoke.py

It installs the CRD, runs the operator from this checkout against the cluster, applies a study and checks
that the cluster accepts it, the operator creates its first Job and reports status, and that deleting the
study removes its Jobs. It needs no GPU (the Jobs are not required to run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

KUBECONFIG = os.environ.get("SWEETSPOT_SMOKE_KUBECONFIG")
DATABASE = os.environ.get("SWEETSPOT_TEST_DATABASE_URL")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (KUBECONFIG and DATABASE),
        reason="needs a real cluster: set SWEETSPOT_SMOKE_KUBECONFIG and SWEETSPOT_TEST_DATABASE_URL (none runs here)",
    ),
]


def test_real_cluster_smoke() -> None:
    import kubernetes

    api = kubernetes.config.new_client_from_config(config_file=KUBECONFIG)
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    crd = yaml.safe_load((ROOT / "crds" / "finetunestudies.sweetspot.dev.yaml").read_text())
    try:
        extensions.create_custom_resource_definition(crd)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
    time.sleep(3)  # the API server needs a moment to serve a new CRD
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "SWEETSPOT_DATABASE_URL": str(DATABASE)}
    operator = subprocess.Popen([sys.executable, "-m", "sweetspot.cli", "operator", "-n", "default"], env=env)
    custom = kubernetes.client.CustomObjectsApi(api)
    manifest = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    manifest["metadata"]["name"] = "sweetspot-smoke"
    try:
        custom.create_namespaced_custom_object("sweetspot.dev", "v1alpha1", "default", "finetunestudies", manifest)
        batch = kubernetes.client.BatchV1Api(api)
        selector = "sweetspot.dev/study=sweetspot-smoke"
        deadline = time.monotonic() + 120
        while not batch.list_namespaced_job("default", label_selector=selector).items:
            assert time.monotonic() < deadline, "the operator created no Job"
            time.sleep(1)
        body = custom.get_namespaced_custom_object(
            "sweetspot.dev", "v1alpha1", "default", "finetunestudies", "sweetspot-smoke"
        )
        assert body["status"]["phase"] in ("Searching", "Promoting", "Sweeping", "Succeeded")
    finally:
        custom.delete_namespaced_custom_object(
            "sweetspot.dev", "v1alpha1", "default", "finetunestudies", "sweetspot-smoke"
        )
        time.sleep(5)
        operator.terminate()
        operator.wait(timeout=30)
