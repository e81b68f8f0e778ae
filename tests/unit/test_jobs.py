"""The Job builder: names, labels, ownership, the restricted pod, GPUs, Kueue, and no secrets (pure)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sweetspot.api.fields import VolumePath
from sweetspot.api.manifest import load_manifest
from sweetspot.api.trial import CheckpointPolicy
from sweetspot.cluster import jobs
from sweetspot.contract import DEFAULT_GRACE_SECONDS, EXIT_INTERRUPTED, TrialConfig
from sweetspot.core.planner import grace_seconds
from sweetspot.core.records import RunKey, StartRun, TrialView
from sweetspot.core.stages import trial_config

from support.builders import outcome as outcome_of

ROOT = Path(__file__).resolve().parents[2]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def study(uid: str = "0b7f4c52-0000-4000-8000-000000000001") -> Any:
    (resource,) = load_manifest(ROOT / "examples" / "product-attributes.yaml")
    return resource.model_copy(update={"metadata": resource.metadata.model_copy(update={"uid": uid})})


def test_names_are_deterministic_dns_labels() -> None:
    assert jobs.object_name("quickstart", RunKey("trial", 3, "early")) == "quickstart-t3-early"
    assert jobs.object_name("quickstart", RunKey("trial", 3, "final", 1)) == "quickstart-t3-final-r1"
    long = "a" * 60
    names = {jobs.object_name(long, RunKey("trial", n, "final", 2)) for n in range(50)}
    assert len(names) == 50  # the hash keeps shortened names apart
    for name in names:
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    assert jobs.object_name(long, RunKey("trial", 7, "early")) == jobs.object_name(long, RunKey("trial", 7, "early"))


def test_job_is_labelled_owned_and_never_retried_by_kubernetes() -> None:
    resource = study()
    job = jobs.job(resource, RunKey("trial", 4, "early"))
    meta = job["metadata"]
    assert meta["name"] == "product-attributes-t4-early" and meta["namespace"] == "ml-team"
    assert meta["labels"][jobs.LABEL_STUDY] == "product-attributes"
    assert meta["labels"][jobs.LABEL_TRIAL] == "4" and meta["labels"][jobs.LABEL_STAGE] == "early"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "name": "product-attributes",
            "uid": resource.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 21600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    # A trainer stopped by SIGTERM (its checkpoint written) is a disruption too: a new pod resumes it.
    assert rules[1] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [EXIT_INTERRUPTED]},
    }
    assert rules[2]["action"] == "FailJob" and rules[2]["onExitCodes"]["values"] == [2, 3]
    # Long enough for the step in progress and a checkpoint: Kubernetes' default until the study measured them.
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == DEFAULT_GRACE_SECONDS
    slow = jobs.job(resource, RunKey("trial", 4, "early"), grace_seconds=95)
    assert slow["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 95


def test_the_grace_period_covers_twice_the_slowest_step_and_checkpoint_measured() -> None:
    assert grace_seconds([]) == grace_seconds([None]) == DEFAULT_GRACE_SECONDS
    fast = outcome_of(f1=0.5, step_seconds=0.4, checkpoint_seconds=0.05)
    slow = outcome_of(f1=0.5, step_seconds=30.0, checkpoint_seconds=4.2)
    assert grace_seconds([fast]) == DEFAULT_GRACE_SECONDS  # never below Kubernetes' default
    assert grace_seconds([fast, slow, None]) == math.ceil(2 * 34.2) + 10


def test_pod_runs_restricted_with_gpus_kueue_and_scheduling() -> None:
    job = jobs.job(study(), RunKey("trial", 0, "early"))
    assert job["metadata"]["labels"][jobs.LABEL_KUEUE_QUEUE] == "gpu-team"
    assert job["spec"]["suspend"] is True  # Kueue unsuspends it on admission
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["priorityClassName"] == "batch-low" and pod["serviceAccountName"] == "sweetspot-trainer"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/tmp", "/cache", "/dev/shm", jobs.MOUNT_MODEL, jobs.MOUNT_DATA, jobs.MOUNT_OUTPUT} <= set(mounts)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory"}}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_the_trial_config_points_into_the_pod_mounts_and_holds_no_secret() -> None:
    resource = study()
    key = RunKey("trial", 2, "final")
    config = trial_config(
        resource, StartRun(key, {"learningRate": 1e-4, "loraRank": 16}), jobs.pod_paths(resource, key)
    )
    assert config.model.path == "/sweetspot/model/llama-3.1-8b"
    assert config.train.path == "/sweetspot/data/product-pages/train.jsonl"
    assert config.checkpoint_dir == "/sweetspot/output/product-attributes/product-attributes/t2/checkpoint"
    # Checkpoints every 5 minutes by default; every N steps when the spec says so, and then not by time.
    assert (config.checkpoint_every_seconds, config.checkpoint_every_steps) == (300.0, None)
    trial = resource.spec.trial.model_copy(update={"checkpoint": CheckpointPolicy(every_steps=200)})
    by_steps = resource.model_copy(update={"spec": resource.spec.model_copy(update={"trial": trial})})
    stepped = trial_config(by_steps, StartRun(key, {}), jobs.pod_paths(by_steps, key))
    assert (stepped.checkpoint_every_seconds, stepped.checkpoint_every_steps) == (None, 200)
    with pytest.raises(ValidationError, match="set everyMinutes or everySteps, not both"):
        CheckpointPolicy.model_validate({"everyMinutes": 1, "everySteps": 10})
    text = jobs.config_map(resource, key, config)["data"][jobs.CONFIG_KEY]
    assert TrialConfig.model_validate_json(text) == config
    rendered = yaml.safe_dump(jobs.job(resource, key)) + text
    assert "sweetspot-db" not in rendered and "postgresql" not in rendered


def test_render_prints_the_first_jobs_for_a_reviewer() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", "render", "examples/product-attributes.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["ConfigMap", "Job"] * 4  # parallelism 4
    configs = [TrialConfig.model_validate_json(d["data"]["trial.json"]) for d in documents if d["kind"] == "ConfigMap"]
    assert len({c.hyperparameters for c in configs}) == 4  # the sampler's first proposals differ


def test_the_cache_is_the_study_cache_volume_when_it_has_one() -> None:
    key = RunKey("trial", 0, "early")
    resource = study()
    pod = jobs.job(resource, key)["spec"]["template"]["spec"]
    assert {"name": "cache", "emptyDir": {}} in pod["volumes"]  # no cache volume: each pod starts empty
    trial = resource.spec.trial.model_copy(update={"cache": VolumePath(pvc="model-cache", path="llm")})
    cached = resource.model_copy(update={"spec": resource.spec.model_copy(update={"trial": trial})})
    pod = jobs.job(cached, key)["spec"]["template"]["spec"]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cache"]
    assert mount == {"name": "cache", "mountPath": "/cache", "subPath": "llm"}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SWEETSPOT_CACHE"].startswith("/cache/")  # where the converted model goes


def test_the_best_adapter_is_located_on_the_output_volume_by_the_attempt_that_succeeded() -> None:
    resource = study()
    final = outcome_of(f1=0.8, accuracy=0.9, loss=0.1, step=100)
    trial = TrialView(4, "complete", {}, final=final, failed_attempts={"final": frozenset({0})})
    assert (
        jobs.adapter_location(resource, trial)
        == "pvc/checkpoints:product-attributes/product-attributes/runs/t4-final-r1/adapter"
    )
    assert jobs.adapter_location(resource, TrialView(4, "complete", {}, final=final)).endswith("/runs/t4-final/adapter")
    # Nothing kept: no output volume, no final yet, or a final copied from another study by a warm start.
    bare = resource.model_copy(
        update={
            "spec": resource.spec.model_copy(update={"trial": resource.spec.trial.model_copy(update={"output": None})})
        }
    )
    assert jobs.adapter_location(bare, trial) is None
    assert jobs.adapter_location(resource, TrialView(4, "complete", {})) is None
    copied = TrialView(4, "complete", {}, final=final, reused=True, copied=frozenset({"early", "final"}))
    assert jobs.adapter_location(resource, copied) is None
