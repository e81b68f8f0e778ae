"""The operator asks the API server for its studies' Jobs only (a server-side label selector), so the other Jobs of a
namespace (CI systems, other operators, thousands of them in a real cluster) are never sent to it, let alone parsed
or reconciled. The real operator against the API emulator, which records every list and watch by client, selector
and the objects it sent; the node finishes the study's stages instantly."""

from __future__ import annotations

from pathlib import Path

import kubernetes
import optuna
import pytest

from sweetspot.cluster import jobs

from support.emulator import MERGE
from support.operator import NAMESPACE, apply, cluster_study, eventually, get, operator_world, phase

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(180)]

TEMPLATE = {"template": {"spec": {"containers": [{"name": "build", "image": "ci"}], "restartPolicy": "Never"}}}


def unrelated_job(batch: kubernetes.client.BatchV1Api, name: str, outcome: str | None) -> None:
    """A Job of someone else, finished (`Complete` or `Failed`) or still running (None)."""
    labels = {"app": "ci", "study": "not-a-label-of-ours"}
    batch.create_namespaced_job(NAMESPACE, {"metadata": {"name": name, "labels": labels}, "spec": TEMPLATE})
    if outcome is not None:
        condition = {"type": outcome, "status": "True", "reason": outcome, "message": ""}
        batch.patch_namespaced_job_status(name, NAMESPACE, {"status": {"conditions": [condition]}}, **MERGE)


def test_other_jobs_never_reach_the_operator(tmp_path: Path, postgres_server_url: str) -> None:
    outcomes = ["Complete", "Failed", None]
    with operator_world(tmp_path, postgres_server_url, instant=True) as world:
        api, running, node = world["api"], world["cluster"], world["node"]
        node.hold = lambda name: name == "mine-t0-early"  # the study runs (Searching lasts ~0.25 s without it)
        batch = kubernetes.client.BatchV1Api(api)
        others = [f"ci-before-{i}" for i in range(30)]
        for i, name in enumerate(others):
            unrelated_job(batch, name, outcomes[i % 3])
        apply(api, cluster_study("mine", maxTrials=3, parallelism=1))
        # While the study runs, other Jobs appear and finish: watch events a selector-less watch would deliver.
        eventually(lambda: "mine-t0-early" in node.held, 60, lambda: f"the study to start: {get(api, 'mine')}")
        for i in range(30):
            others.append(f"ci-during-{i}")
            unrelated_job(batch, others[-1], outcomes[i % 3])
        assert phase(api, "mine") == "Searching"
        node.release("mine-t0-early")
        eventually(lambda: phase(api, "mine") == "Succeeded", 120, lambda: f"success: {get(api, 'mine').get('status')}")

    emulator = running.emulator
    job_reads = {(verb, selector): n for (client, verb, plural, selector), n in emulator.reads.items()
                 if client == "operator" and plural == "jobs"}  # fmt: skip
    assert {verb for verb, _ in job_reads} == {"list", "watch"}, job_reads  # kopf's list+watch and the reconciles'
    assert all(jobs.LABEL_STUDY in selector for _, selector in job_reads), job_reads
    served = {
        name: n for (client, plural, name), n in emulator.served.items() if client == "operator" and plural == "jobs"
    }
    assert served, "the operator received none of its own Jobs: the check above proves nothing"
    assert set(served) == set(world["node"].created)  # exactly the study's Jobs, and nothing of anyone else's
    # Each pod read its own trial's config from its Job's ConfigMap: the hyperparameters Optuna asked for.
    asked = {t.number: t.params for t in optuna.load_study(study_name="default/mine", storage=world["database"]).trials}
    configs = world["node"].configs
    assert set(configs) == set(world["node"].created)
    for config in configs.values():
        assert config.hyperparameters.learning_rate == pytest.approx(asked[config.trial]["learningRate"]), config
    assert not set(served) & set(others)
