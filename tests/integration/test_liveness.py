"""The probe endpoint the chart's Deployment points its liveness and readiness probes at (`sweetspot operator
--liveness http://0.0.0.0:8080/healthz`): it answers while the operator runs, and not once the process is gone.
The real operator against the API emulator."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.by_path import ROOT
from support.operator import apply, check_succeeded, cluster_study, eventually, operator_world
from support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(300)]


def probe(url: str) -> tuple[int, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return None


def test_the_liveness_endpoint_answers_while_the_operator_runs(tmp_path: Path, postgres_server_url: str) -> None:
    deployment = (ROOT / "charts" / "sweetspot" / "templates" / "deployment.yaml").read_text()
    assert "--liveness=http://0.0.0.0:8080/healthz" in deployment and "path: /healthz" in deployment
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    with operator_world(tmp_path, postgres_server_url, instant=True) as world:
        operator = world["operator"]
        operator.stop()  # started without the option: again with it, as the chart runs it
        operator.args = ["--liveness", f"http://127.0.0.1:{port}/healthz"]
        operator.start()
        status, body = eventually(lambda: probe(url), 60, lambda: f"{url} to answer (log: {operator.log})")
        assert status == 200 and isinstance(body, dict), body
        apply(world["api"], cluster_study("probed", maxTrials=3, parallelism=1))  # and it still does its work
        check_succeeded(world, "probed")
        again = probe(url)
        assert again is not None and again[0] == 200
        operator.kill()
        assert probe(url) is None  # a dead operator fails the probe: the kubelet restarts it
