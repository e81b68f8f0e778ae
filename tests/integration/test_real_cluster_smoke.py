"""Smoke test on a real cluster (kind, k3d, ...): runs only when SWEETSPOT_SMOKE_KUBECONFIG names one.

    SWEETSPOT_SMOKE_KUBECONFIG=~/.kube/config SWEETSPOT_TEST_DATABASE_URL=postgresql+psycopg://... \\
        .venv/bin/pytest tests/integration/test_real_cluster_smoke.py

It installs the CRD, runs the operator from this checkout against the cluster, applies a study and checks
that the cluster accepts it, the operator creates its first Job and reports status, and that deleting the
study removes its Jobs and ConfigMaps. It needs no GPU (the Jobs are not required to run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    group = ("sweetspot.dev", "v1alpha1", "default", "finetunestudies")
    batch = kubernetes.client.BatchV1Api(api)
    selector = "sweetspot.dev/study=sweetspot-smoke"

    def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while not (value := check()):
            assert time.monotonic() < deadline, f"timed out after {seconds:.0f}s waiting for {what}"
            time.sleep(1)
        return value

    def phase() -> str | None:  # none until the operator's first status write
        body = custom.get_namespaced_custom_object(*group, "sweetspot-smoke")
        return (body.get("status") or {}).get("phase")

    deleted = False
    try:
        custom.create_namespaced_custom_object(*group, manifest)
        wait_for(lambda: batch.list_namespaced_job("default", label_selector=selector).items, 120, "a first Job")
        assert wait_for(phase, 60, "a status") in ("Searching", "Promoting", "Sweeping", "Succeeded")
        custom.delete_namespaced_custom_object(*group, "sweetspot-smoke")
        deleted = True
        wait_for(lambda: not batch.list_namespaced_job("default", label_selector=selector).items, 120, "Jobs deleted")
        core = kubernetes.client.CoreV1Api(api)
        assert not core.list_namespaced_config_map("default", label_selector=selector).items
    finally:
        if not deleted:
            custom.delete_namespaced_custom_object(*group, "sweetspot-smoke")
        operator.terminate()
        operator.wait(timeout=30)
