"""Scenario 7 on the cluster: two studies with the same name in two namespaces, run at once by one operator that
watches both, never share trials. Each namespace has its own node whose trials finish instantly (a canned
result), so the test is about the operator's bookkeeping, not training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes
import optuna
import pytest

from sweetspot.cluster.jobs import CONFIG_KEY
from sweetspot.contract import TrialConfig
from sweetspot.report import data as report

from support.emulator import RunningCluster
from support.instant_node import InstantNode
from support.operator import GROUP, PLURAL, VERSION, Operator, cluster_study, eventually
from support.postgres import operator_database

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]

NAMESPACES = ("team-a", "team-b")
NAME = "twin"
TRIALS = 6


def test_the_same_name_in_two_namespaces_never_shares_trials(tmp_path: Path, postgres_server_url: str) -> None:
    database = operator_database(postgres_server_url, f"namespaces_{os.getpid()}")
    with RunningCluster(tmp_path) as running:
        running.emulator.namespaces = list(NAMESPACES)
        api = running.client()
        objects = kubernetes.client.CustomObjectsApi(api)
        core = kubernetes.client.CoreV1Api(api)
        operator = Operator(running, database, tmp_path)
        operator.namespaces = list(NAMESPACES)
        with InstantNode(api, NAMESPACES[0]) as node_a, InstantNode(api, NAMESPACES[1]) as node_b:
            operator.start()
            try:
                # Different seeds: the two searches propose different learning rates for the same trial number,
                # so a trial recorded in the other namespace's study would show.
                for seed, namespace in enumerate(NAMESPACES, start=1):
                    manifest = cluster_study(NAME, maxTrials=TRIALS, parallelism=3, seed=seed)
                    manifest["metadata"]["namespace"] = namespace
                    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)

                def phases() -> dict[str, str | None]:
                    return {
                        namespace: (
                            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME).get("status")
                            or {}
                        ).get("phase")
                        for namespace in NAMESPACES
                    }

                def finished() -> bool:
                    assert not node_a.errors and not node_b.errors, node_a.errors + node_b.errors
                    assert operator.exited() is None, operator.log.read_text()[-3000:]
                    return all(phase in ("Succeeded", "Failed") for phase in phases().values())

                eventually(finished, 300, lambda: f"both studies to finish: {phases()}; log {operator.log}")
            finally:
                operator.stop()
            emulator = running.emulator

            learning_rates: dict[str, list[float]] = {}
            jobs: dict[str, list[str]] = {}
            for namespace in NAMESPACES:
                body = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
                status = body["status"]
                assert status["phase"] == "Succeeded", status.get("conditions")
                assert status["optunaStudy"] == f"{namespace}/{NAME}"
                assert status["trials"] == report.build(database, namespace, NAME)["counts"]
                assert status["trials"]["total"] == TRIALS and status["trials"]["failed"] == 0

                trials = optuna.load_study(study_name=f"{namespace}/{NAME}", storage=database).trials
                assert [t.number for t in trials] == list(range(TRIALS))  # its own, none from the other
                assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
                learning_rates[namespace] = [t.params["learningRate"] for t in trials]

                # Every trial config in this namespace carries this namespace's trial, and each was created once.
                maps = core.list_namespaced_config_map(namespace, label_selector=f"sweetspot.dev/study={NAME}").items
                early = {m.metadata.name: TrialConfig.model_validate_json(m.data[CONFIG_KEY]) for m in maps}
                for number in range(TRIALS):
                    config = early[f"{NAME}-t{number}-early"]
                    assert config.hyperparameters.learning_rate == learning_rates[namespace][number], namespace
                ours = emulator.created_in(namespace)
                assert {count for (plural, _), count in ours.items() if plural in ("jobs", "configmaps")} == {1}
                jobs[namespace] = sorted(n for (plural, n) in ours if plural == "jobs")
                assert len(jobs[namespace]) == TRIALS + status["trials"]["complete"]  # every early, each final

            assert learning_rates[NAMESPACES[0]] != learning_rates[NAMESPACES[1]]
            # Each node saw exactly its own namespace's Jobs.
            assert sorted(node_a.completed) == jobs[NAMESPACES[0]] and sorted(node_b.completed) == jobs[NAMESPACES[1]]
    print("\n" + json.dumps({ns: [round(lr, 5) for lr in rates] for ns, rates in learning_rates.items()}))
