"""Stages evicted while they train, through the operator: the real kopf operator, the API emulator, a throwaway
PostgreSQL and a node that runs the real trainer on `builtin: tiny` and stops pods as a kubelet does (SIGTERM, the
grace period, then SIGKILL). The early stage is evicted (SIGTERM: it checkpoints and exits 75) and the final stage's
node is lost (SIGKILL); the Job controller starts a new pod each time (the pod failure policy ignores disruptions),
which resumes from the newest checkpoint on the output volume. An identical study left alone is the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import optuna
import pytest

from sweetspot.cluster import jobs
from sweetspot.core.records import RunKey
from sweetspot.storage.layout import TRIAL_ATTR

from support.operator import NAMESPACE, apply, eventually, get, operator_world, phase
from support.operator import cluster_study as study
from support.studies import one_trial_study
from support.trainer_runs import checkpoint_steps, heartbeat

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

EVERY = 5
"""Steps between checkpoints: the most a SIGKILL may throw away."""


@pytest.fixture
def world(tmp_path: Path, postgres_server_url: str) -> Iterator[dict[str, Any]]:
    with operator_world(tmp_path, postgres_server_url) as world:
        world["node"].claims["output"] = tmp_path / "output-volume"
        yield world


def resumable(name: str) -> dict[str, Any]:
    """One trial of 48 steps (early: the first 24), checkpointed every 5 steps on the output volume."""
    manifest = one_trial_study(name, NAMESPACE, parallelism=1, seed=5)
    manifest["spec"]["trial"] = study(name)["spec"]["trial"] | {
        "output": {"pvc": "output"},
        "checkpoint": {"everySteps": EVERY},
    }
    return manifest


def finished(api: kubernetes.client.ApiClient, name: str) -> dict[str, Any]:
    eventually(lambda: phase(api, name) in ("Succeeded", "Failed"), 600, f"study {name} to finish")
    body = get(api, name)
    assert body["status"]["phase"] == "Succeeded", body["status"]
    return dict(body["status"])


SCORES = ("f1", "precision", "recall", "accuracy", "token_f1", "loss", "attribute_f1", "step", "planned_steps")


def stored(world: dict[str, Any], name: str) -> tuple[optuna.trial.FrozenTrial, dict[str, dict[str, Any]]]:
    """Trial 0 as Optuna keeps it, and the scores of its early and final stages as Sweetspot recorded them."""
    kept = optuna.load_study(study_name=f"{NAMESPACE}/{name}", storage=world["database"])
    (trial,) = kept.trials
    record = kept.user_attrs[TRIAL_ATTR.format(0)]
    return trial, {stage: {k: v for k, v in record[stage].items() if k in SCORES} for stage in ("early", "final")}


def said(api: kubernetes.client.ApiClient, name: str, reason: str) -> list[str]:
    events = kubernetes.client.CoreV1Api(api).list_namespaced_event(NAMESPACE).items
    return [e.message for e in events if e.involved_object.name == name and e.reason == reason]


def train_until(world: dict[str, Any], name: str, stage: str, step: int) -> int:
    """Wait until the stage's pod has trained `step` steps (its heartbeat on the output volume)."""
    job = jobs.object_name(name, RunKey("trial", 0, stage))
    folder = world["node"].claims["output"] / name / "t0" / "checkpoint"
    eventually(lambda: job in world["node"].processes, 120, f"the {stage} stage's pod to start")

    def reached() -> int | None:
        beat = heartbeat(folder)
        return int(beat["step"]) if beat.get("stage") == stage and beat["step"] >= step else None

    return int(eventually(reached, 300, f"{name} {stage} to train {step} steps", step=0.05))


def test_an_evicted_stage_and_a_lost_node_resume_from_checkpoints_and_no_trial_fails(
    world: dict[str, Any],
) -> None:
    api, node = world["api"], world["node"]
    apply(api, resumable("steady"))
    steady = finished(api, "steady")

    apply(api, resumable("evicted"))
    checkpoints = node.claims["output"] / "evicted" / "t0" / "checkpoint"
    train_until(world, "evicted", "early", 6)
    node.evict("evicted-t0-early", grace_seconds=30)  # SIGTERM: the trainer checkpoints the step it is in
    (stopped,) = checkpoint_steps(checkpoints)
    assert 6 <= stopped < 24

    reached = train_until(world, "evicted", "final", 33)
    node.evict("evicted-t0-final")  # SIGKILL at once: a lost node; the newest periodic checkpoint survives
    newest = checkpoint_steps(checkpoints)[-1]
    assert newest % EVERY == 0 and reached - EVERY <= newest < 48

    status = finished(api, "evicted")
    # The Job controller started a new pod for each (no new attempt, no failure), and the new pods resumed.
    assert node.replacements == {"evicted-t0-early": 1, "evicted-t0-final": 1}
    assert status["trials"]["failed"] == 0 and status["trials"]["complete"] == 1
    resumed = sorted(said(api, "evicted", "StageResumed"))
    lost = r"after a disruption, [0-9.]+ compute-seconds lost"
    assert len(resumed) == 2, resumed
    assert re.fullmatch(rf"trial 0 early: resumed from step {stopped} {lost}", resumed[0]), resumed
    assert re.fullmatch(rf"trial 0 final: resumed from step {newest} {lost}", resumed[1]), resumed
    assert said(api, "steady", "StageResumed") == []
    assert status["gpuSeconds"]["lost"] > 0 and steady["gpuSeconds"]["lost"] == 0

    (evicted_trial, evicted_scores), (steady_trial, steady_scores) = stored(world, "evicted"), stored(world, "steady")
    assert evicted_trial.state == optuna.trial.TrialState.COMPLETE  # never FAIL for a disruption
    assert evicted_trial.params == steady_trial.params
    assert evicted_scores == steady_scores and evicted_scores["final"]["f1"] > 0  # as if never disrupted
    assert not node.processes  # every pod ran to its end
