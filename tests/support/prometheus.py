"""A real Prometheus server for tests: Debian's `prometheus` package, a temporary config scraping local ports every
second, rule files evaluated every second, and its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from support.ports import PortTakenError, start_on_free_port

RULES = Path(__file__).parents[2] / "charts" / "sweetspot" / "alerts" / "sweetspot.rules.yaml"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: apt-get install prometheus (the tests need a real server)")
    return found


def immediate_rules(source: Path, target: Path) -> Path:
    """The alert rules with every `for:` set to 0s: the test checks that the expressions fire, not the waits."""
    rules = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    target.write_text(yaml.safe_dump(rules))
    return target


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the series it returns (an error for a query that does not parse)."""
        data = self._get("/api/v1/query", query=expr)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])

    def firing(self) -> set[tuple[str, str]]:
        """(alert name, study) of every firing alert."""
        return {
            (a["labels"]["alertname"], a["labels"].get("study", "")) for a in self.alerts() if a["state"] == "firing"
        }

    def targets_up(self) -> dict[str, str]:
        return {t["labels"]["job"]: t["health"] for t in self._get("/api/v1/targets")["activeTargets"]}


@contextmanager
def prometheus(jobs: Mapping[str, Sequence[int]], rule_files: Sequence[Path] = ()) -> Iterator[Prometheus]:
    """Prometheus scraping 127.0.0.1:PORT for each job's ports every second, until the block ends."""
    directory = Path(tempfile.mkdtemp(prefix="sweetspot-prometheus-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}]}
            for job, ports in jobs.items()
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = directory / "prometheus.log"

    def start(port: int) -> Prometheus:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return server
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                said = log.read_text()
                if "address already in use" in said:
                    raise PortTakenError(f"Prometheus could not listen on 127.0.0.1:{port}")
                raise RuntimeError(f"Prometheus did not start: {said[-2000:]}")
            time.sleep(0.2)

    server: Prometheus | None = None
    try:
        server = start_on_free_port(start)
        yield server
    finally:
        if server is not None:
            stop(server.process)
        shutil.rmtree(directory, ignore_errors=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def check_metrics(exposition: str) -> str:
    """`promtool check metrics` on a scraped exposition: its complaints ('' when there are none)."""
    checked = subprocess.run(
        [binary("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True, check=False
    )
    return (checked.stdout + checked.stderr).strip() if checked.returncode else ""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, query) of every panel target of a Grafana dashboard."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's template variables, as a dashboard user would have them selected."""
    values = {"__rate_interval": "30s", "__interval": "5s", **variables}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr
