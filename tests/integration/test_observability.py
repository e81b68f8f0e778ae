"""Metrics, dashboards and alerts against a real Prometheus: a local study and a cluster study are scraped every
second; every dashboard panel's query must return data, the alerts that should fire must fire (and no other), and
`promtool check metrics` must accept the exposition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support.interrupt import sigint_as_in_a_terminal
from support.node import TESTS
from support.operator import NAMESPACE, apply, cluster_study, delete, eventually, operator_world, phase
from support.ports import free_port
from support.prometheus import (
    RULES,
    Prometheus,
    check_metrics,
    dashboard_queries,
    immediate_rules,
    prometheus,
    scrape,
    substitute,
)
from support.studies import small_study

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

DASHBOARDS = Path(__file__).parents[2] / "charts" / "sweetspot" / "dashboards"
STUDY_ALERTS = {
    "SweetspotStudyFailed",
    "SweetspotTrialsFailing",
    "SweetspotEarlyFinalDisagreement",
    "SweetspotNothingExtracted",
}


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())  # type: ignore[no-any-return]


def empty_panels(server: Prometheus, dashboard: str, variables: dict[str, str]) -> list[str]:
    """Panels (title: query) whose query returns no series."""
    return [
        f"{title}: {query}"
        for title, expr in dashboard_queries(load_dashboard(dashboard))
        if not server.query(query := substitute(expr, variables))
    ]


def observable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A study that fills every panel: every trial trained to the end (for the agreement), a learning curve with
    a sweet spot (a loose tolerance: this short curve counts as saturated) and a forecast, and a budget. Its stages
    run the fake trainer (or the instant node): the metrics are the subject, and a real tagger extracts nothing in a
    few steps, which leaves a learning curve flat at F1 0 ("nothing learned", no sweet spot) and fires
    SweetspotNothingExtracted."""
    manifest["spec"]["search"]["earlyEvaluation"]["promoteTopK"] = 3
    manifest["spec"]["objective"] = {"metric": "loss", "direction": "minimize"}
    manifest["spec"]["dataEfficiency"] = {
        "sampleSizes": [8, 16, 32, 64],  # four: a curve of three parameters is fitted to no fewer
        "hold": "steps",
        "tolerance": 0.5,
        "forecast": {"to": [128]},  # the curve panel's band
        "target": {"f1": 0.5},
    }
    manifest["spec"]["search"]["budget"] = {"gpuHours": 100}  # far more than it spends: the budget panel has data
    return manifest


class LocalRun:
    """`sweetspot run --metrics-port` in the background, serving its final metrics until stopped."""

    def __init__(self, directory: Path, manifest: dict[str, Any], **env: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.path = directory / f"{manifest['metadata']['name']}.yaml"
        self.path.write_text(yaml.safe_dump(manifest))
        self.log = directory / f"{manifest['metadata']['name']}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "sweetspot.cli",
            "run",
            str(self.path),
            "--workdir",
            str(self.directory / "work"),
        ]
        command += ["--metrics-port", str(self.port), "--metrics-linger", "600"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.directory,
                env={**os.environ, "SWEETSPOT_CACHE": str(self.directory / "cache"), **self.env},
                preexec_fn=sigint_as_in_a_terminal,  # `stop` ends the linger with Ctrl-C
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"sweetspot run exited early ({self.process.returncode}): {self.log.read_text()[-3000:]}"
            )
        return True

    def lingering(self) -> bool:
        """The run finished, wrote its results, and now only serves its final metrics."""
        return "serving the final metrics" in self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # ends the linger
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # What the process was doing, for the failure message (a Ctrl-C must end the linger at once).
            state = Path(f"/proc/{self.process.pid}/status").read_text(errors="replace")
            wchan = Path(f"/proc/{self.process.pid}/wchan").read_text(errors="replace")
            self.process.kill()
            raise AssertionError(
                f"sweetspot run ignored Ctrl-C for 60 s (wchan {wchan}; {state[:600]}): {self.log.read_text()[-2000:]}"
            ) from None


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return immediate_rules(RULES, tmp_path / "rules.yaml")


def test_a_local_study_in_prometheus_with_dashboards_and_alerts(tmp_path: Path, rules: Path) -> None:
    good = LocalRun(
        tmp_path,
        observable(small_study("good", seed=3)),
        SWEETSPOT_TRAINER_MODULE="support.fake_trainer",
        PYTHONPATH=str(TESTS),
    )
    # Two objectives (F1 against compute): the Pareto front dashboard's study.
    front_study = small_study("front", seed=3)
    front_study["spec"]["search"]["earlyEvaluation"]["promoteTopK"] = 3
    front_study["spec"]["objectives"] = [
        {"metric": "f1", "direction": "maximize"},
        {"metric": "computeSeconds", "direction": "minimize"},
    ]
    front = LocalRun(tmp_path, front_study, SWEETSPOT_TRAINER_MODULE="support.fake_trainer", PYTHONPATH=str(TESTS))
    # A broken cache volume: every trial stage crashes (the tiny causal LM is built into the cache first).
    # One stage at a time, five failures a few seconds apart: the alert's increase() sees the counter rise by 3
    # or more even when a loaded machine delays the first scrapes past the first failures.
    failing_study = small_study("failing", maxTrials=6, maxFailedTrials=4, parallelism=1)
    failing_study["spec"]["model"]["builtin"] = "tiny-causal"
    failing_study["spec"]["trial"] = {"retries": 0}
    failing = LocalRun(tmp_path, failing_study, SWEETSPOT_CACHE="/dev/null/cache")
    try:
        scraped = {"local-good": [good.port], "local-failing": [failing.port], "local-front": [front.port]}
        with prometheus(scraped, [rules]) as server:
            # Scraped from their first second: the failure counter's alert needs its rise from zero.
            good.start()
            failing.start()
            front.start()
            eventually(
                lambda: good.alive() and server.query('sweetspot_study_phase{study="good", phase="Succeeded"} == 1'),
                600,
                f"the good study to succeed in Prometheus (log: {good.log})",
                step=1,
            )
            eventually(
                lambda: failing.alive() and server.query('sweetspot_study_phase{study="failing", phase="Failed"} == 1'),
                300,
                f"the failing study to fail in Prometheus (log: {failing.log})",
                step=1,
            )
            empty = empty_panels(server, "sweetspot-study.json", {"namespace": NAMESPACE, "study": "good"})
            assert empty == [], "\n".join(empty)
            eventually(
                lambda: front.alive() and server.query('sweetspot_study_phase{study="front", phase="Succeeded"} == 1'),
                600,
                f"the two-objective study to succeed in Prometheus (log: {front.log})",
                step=1,
            )
            chosen = {"namespace": NAMESPACE, "study": "front", "cost": "computeSeconds", "quality": "f1"}
            empty = empty_panels(server, "sweetspot-pareto.json", chosen)
            assert empty == [], "\n".join(empty)
            on_front = server.query('sweetspot_trial_pareto_optimal{study="front"}')
            assert 1 <= len(on_front) <= 3 and len(server.query('sweetspot_trial_pareto_knee{study="front"}')) == 1
            curve = server.query('sweetspot_learning_curve_f1{study="good"}')
            assert sorted(int(s["metric"]["samples"]) for s in curve) == [8, 16, 32, 64]
            finals = server.query('sweetspot_trial_f1{study="good", stage="final"}')
            assert len(finals) == 3 and all(0 <= float(s["value"][1]) <= 1 for s in finals)
            accuracies = server.query('sweetspot_trial_accuracy{study="good", stage="final"}')
            assert len(accuracies) == 3 and all(0 < float(s["value"][1]) <= 1 for s in accuracies)
            failures = server.query('sweetspot_study_stage_failures_total{study="failing", kind="failed"}')
            assert float(failures[0]["value"][1]) == 5

            assert float(server.query('sweetspot_study_best_f1{study="good", stage="final"}')[0]["value"][1]) > 0
            expected = {("SweetspotStudyFailed", "failing"), ("SweetspotTrialsFailing", "failing")}
            eventually(
                lambda: expected <= server.firing(),
                60,
                lambda: f"the failing study's alerts to fire (firing: {sorted(server.firing())})",
                step=1,
            )
            firing = server.firing()
            assert not [alert for alert in firing if alert[1] == "good"], firing
            assert {name for name, _ in firing} <= STUDY_ALERTS, firing  # the operator alerts stay quiet
            rendered = [a["annotations"] for a in server.alerts() if a["state"] == "firing"]
            assert all(
                ("default/failing" in a["summary"] or "default/good" in a["summary"])
                and "<no value>" not in a["description"]
                for a in rendered
            )

            assert check_metrics(scrape(good.port)) == ""
            eventually(
                lambda: good.lingering() and failing.lingering() and front.lingering(),
                120,
                "the runs to write their results",
            )
    finally:
        codes = (good.stop(), failing.stop(), front.stop())
    assert codes == (0, 1, 0)


def exposition(port: int) -> str:
    """The operator's /metrics, or '' while it (re)starts."""
    try:
        return scrape(port)
    except OSError:
        return ""


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.fixture
def metered_world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    # The instant node: the local test above already puts the real trainer's results through Prometheus; this one
    # is about the operator's metrics, restarts and deletions.
    with operator_world(tmp_path, postgres_server_url, metrics_port=free_port(), instant=True) as world:
        yield world


def test_the_operator_in_prometheus_with_dashboards_alerts_and_deleted_studies(
    metered_world: dict[str, Any], rules: Path
) -> None:
    api, operator = metered_world["api"], metered_world["operator"]
    port = operator.metrics_port
    with prometheus({"sweetspot-operator": [port]}, [rules]) as server:
        apply(api, observable(cluster_study("observed")))
        lost = cluster_study("lost-storage")
        lost["spec"]["storage"] = {"secretRef": {"name": "no-such-secret", "key": "url"}}
        apply(api, lost)
        eventually(lambda: phase(api, "observed") == "Succeeded", 600, f"the study to succeed ({operator.log})")
        eventually(
            lambda: server.query('sweetspot_study_phase{study="observed", phase="Succeeded"} == 1'), 30, "the scrape"
        )
        variables = {"namespace": NAMESPACE, "study": "observed", "job": "sweetspot-operator"}
        # The operator panels are rates over 30 s: they need two scrapes of the counters in that window, which an
        # instant-node study can beat (it succeeds within seconds of the first scrape).
        eventually(lambda: server.query('count_over_time(up{job="sweetspot-operator"}[30s]) >= 2'), 30, "two scrapes")
        empty = empty_panels(server, "sweetspot-study.json", variables)
        empty += empty_panels(server, "sweetspot-operator.json", variables)
        assert empty == [], "\n".join(empty)

        expected = ("SweetspotStorageUnreachable", "lost-storage")
        eventually(lambda: expected in server.firing(), 60, "the storage alert to fire", step=1)
        firing = server.firing()
        assert firing == {expected}, firing
        assert check_metrics(scrape(port)) == ""

        # A restarted operator publishes a finished study's metrics again (from the storage, once).
        operator.kill()
        operator.start()
        succeeded = ({"namespace": NAMESPACE, "study": "observed", "phase": "Succeeded"}, 1.0)
        eventually(
            lambda: succeeded in samples(exposition(port), "sweetspot_study_phase"),
            60,
            "the finished study's metrics after a restart",
            step=0.5,
        )

        # The kill made every series of the target stale: wait until Prometheus scraped the new process.
        eventually(lambda: server.query('{study="lost-storage"}'), 30, "the other study's series scraped again")
        delete(api, "observed")
        eventually(lambda: 'study="observed"' not in exposition(port), 60, "the deleted study's series to vanish")
        eventually(lambda: not server.query('{study="observed"}'), 30, "Prometheus to mark its series stale")
        assert server.query('{study="lost-storage"}')  # the other study's series stay
