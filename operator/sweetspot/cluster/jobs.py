"""Kubernetes objects for one trial stage: a batch/v1 Job and the ConfigMap holding its trial config (pure).

Names are `<study>-t<n>-<stage>` (`-r<attempt>` for a retry; `-s<size>-full` for a sweep point), shortened
with a hash to stay valid DNS labels. Every object is labelled with the study, trial and stage, and owned
by the study, so deleting the study deletes them and a restarted operator finds them again by label.

The pod runs under the restricted Pod Security profile (non-root, no privilege escalation, no
capabilities, RuntimeDefault seccomp, read-only root filesystem with writable scratch volumes), gets no
database credentials, and reports its result in the termination message. Retries are the planner's
decision (`backoffLimit: 0`), except for disruptions: preemption, eviction and a trainer stopped by SIGTERM
(exit 75, its checkpoint written) do not fail the Job; the Job controller starts a new pod, which resumes from the
stage's newest checkpoint. The grace period before SIGKILL covers the slowest step and checkpoint write measured.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sweetspot.api.names import API_VERSION, GROUP, KIND
from sweetspot.api.resource import FineTuneStudy
from sweetspot.contract import (
    ADAPTER_DIR,
    CACHE_ENV,
    CONFIG_ENV,
    DEFAULT_GRACE_SECONDS,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OOM,
    TERMINATION_LOG,
    TrialConfig,
)
from sweetspot.core.records import RunKey, TrialView
from sweetspot.core.stages import Paths

LABEL_STUDY = f"{GROUP}/study"
LABEL_TRIAL = f"{GROUP}/trial"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_RUN = f"{GROUP}/run"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
CONTAINER = "trainer"
CONFIG_KEY = "trial.json"
MOUNT_MODEL, MOUNT_DATA, MOUNT_OUTPUT = "/sweetspot/model", "/sweetspot/data", "/sweetspot/output"
MOUNT_TOKEN = "/sweetspot/secrets/hf"
MAX_NAME = 63


def object_name(study: str, key: RunKey) -> str:
    """`<study>-<key>`, shortened with a hash of the full name when it would exceed a DNS label."""
    full = f"{study}-{key}"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    tail = f"-{key}-{digest}"
    return f"{study[: MAX_NAME - len(tail)].rstrip('-')}{tail}"[:MAX_NAME]


def labels(study: FineTuneStudy, key: RunKey) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "sweetspot-trainer",
        "app.kubernetes.io/managed-by": "sweetspot",
        LABEL_STUDY: study.metadata.name,
        LABEL_TRIAL: str(key.number)
        if key.kind == "trial"
        else f"sweep-{key.number}" + (f"-{key.repeat}" if key.repeat else ""),
        LABEL_STAGE: key.stage,
        LABEL_RUN: str(key),
    }


def owner_reference(study: FineTuneStudy) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": study.metadata.name,
        "uid": study.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_paths(study: FineTuneStudy, key: RunKey) -> Paths:
    """Where the trainer finds things inside the pod."""
    spec = study.spec

    def resolve(pvc: str | None, path: str) -> str:
        if pvc is None:
            return path  # a path inside the image
        mount = MOUNT_MODEL if pvc == spec.model.pvc and spec.model.path == path else _data_mount(study, pvc)
        return f"{mount}/{path.lstrip('/')}" if path not in (".", "") else mount

    output = spec.trial.output
    checkpoint = output_dir = None
    if output is not None:
        base = f"{MOUNT_OUTPUT}/{output.path.strip('/')}" if output.path not in (".", "") else MOUNT_OUTPUT
        trial = f"t{key.number}" if key.kind == "trial" else f"s{key.number}"
        checkpoint = f"{base}/{study.metadata.name}/{trial}/checkpoint"
        output_dir = f"{base}/{study.metadata.name}/runs/{key}"
    token = f"{MOUNT_TOKEN}/token" if spec.model.token_secret_ref else None
    return Paths(checkpoint_dir=checkpoint, output_dir=output_dir, resolve=resolve, token_file=token)


def adapter_location(study: FineTuneStudy, trial: TrialView) -> str | None:
    """Where the trial's final stage saved its adapter, `pvc/CLAIM:PATH` (PATH from the volume's root); None when the
    study keeps no output or the final's result was copied by a warm start (its adapter is the source study's)."""
    output = study.spec.trial.output
    if output is None or trial.final is None or "final" in trial.copied:
        return None
    # The attempt that succeeded comes after every failed or disrupted one.
    output_dir = pod_paths(study, RunKey("trial", trial.number, "final", trial.attempts("final"))).output_dir
    assert output_dir is not None  # an output volume gives every run a folder
    return f"pvc/{output.pvc}:{output_dir.removeprefix(MOUNT_OUTPUT).lstrip('/')}/{ADAPTER_DIR}"


def _data_claims(study: FineTuneStudy) -> list[str]:
    dataset = study.spec.dataset
    claims = [s.pvc for s in (dataset.train, dataset.validation, dataset.schema_) if s is not None and s.pvc]
    return list(dict.fromkeys(claims))


def _data_mount(study: FineTuneStudy, pvc: str) -> str:
    claims = _data_claims(study)
    return MOUNT_DATA if claims.index(pvc) == 0 else f"{MOUNT_DATA}-{claims.index(pvc)}"


def config_map(study: FineTuneStudy, key: RunKey, config: TrialConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": object_name(study.metadata.name, key),
            "namespace": study.metadata.namespace,
            "labels": labels(study, key),
            "ownerReferences": [owner_reference(study)],
        },
        "data": {CONFIG_KEY: config.to_json()},
    }


def volumes_and_mounts(study: FineTuneStudy) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec = study.spec
    cache = spec.trial.cache
    volumes: list[dict[str, Any]] = [
        # Writable scratch on a read-only root filesystem; /dev/shm in memory for data loaders and NCCL; the model
        # cache on the study's cache volume when it has one (converted models and downloads outlive the pod).
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "persistentVolumeClaim": {"claimName": cache.pvc}}
        if cache
        else {"name": "cache", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": "/cache"}
        | ({"subPath": cache.path.strip("/")} if cache and cache.path.strip("/.") else {}),
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if spec.model.pvc:
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": spec.model.pvc, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": MOUNT_MODEL, "readOnly": True})
    for index, claim in enumerate(_data_claims(study)):
        name = "data" if index == 0 else f"data-{index}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": _data_mount(study, claim), "readOnly": True})
    if spec.trial.output is not None:
        volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": spec.trial.output.pvc}})
        mounts.append({"name": "output", "mountPath": MOUNT_OUTPUT})
    if spec.model.token_secret_ref is not None:
        ref = spec.model.token_secret_ref
        volumes.append(
            {"name": "hf-token", "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "token"}]}}
        )
        mounts.append({"name": "hf-token", "mountPath": MOUNT_TOKEN, "readOnly": True})
    return volumes, mounts


def resources(study: FineTuneStudy) -> dict[str, dict[str, str]]:
    limits = study.spec.trial.resources
    return {k: dict(v) for k, v in (("requests", limits.requests), ("limits", limits.limits)) if v}


def env(study: FineTuneStudy, key: RunKey) -> list[dict[str, Any]]:
    """The trainer's environment: its config from the ConfigMap of the stage's name, caches on the cache volume."""
    name = object_name(study.metadata.name, key)
    return [
        {"name": CONFIG_ENV, "valueFrom": {"configMapKeyRef": {"name": name, "key": CONFIG_KEY}}},
        {"name": "HF_HOME", "value": "/cache/huggingface"},
        {"name": CACHE_ENV, "value": "/cache/sweetspot"},
        *({"name": e.name, "value": e.value} for e in study.spec.trial.env),
    ]


def pod_placement(study: FineTuneStudy) -> dict[str, Any]:
    """Where and as whom the pods run: the trial template's scheduling fields that are set."""
    trial = study.spec.trial
    optional = {
        "nodeSelector": dict(trial.node_selector) or None,
        "tolerations": [t.model_dump(mode="json", exclude_none=True) for t in trial.tolerations] or None,
        "affinity": trial.affinity,
        "priorityClassName": trial.priority_class_name,
        "serviceAccountName": trial.service_account_name,
        "imagePullSecrets": [{"name": s} for s in trial.image_pull_secrets] or None,
    }
    return {k: v for k, v in optional.items() if v}


def job(study: FineTuneStudy, key: RunKey, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, Any]:
    """The Job that runs one stage; its trial config comes from the ConfigMap of the same name. `grace_seconds`: how
    long the kubelet waits after SIGTERM (the trainer finishes its step and checkpoints) before SIGKILL."""
    trial = study.spec.trial
    name = object_name(study.metadata.name, key)
    job_labels = labels(study, key)
    if trial.queue_name:
        job_labels[LABEL_KUEUE_QUEUE] = trial.queue_name
    volumes, mounts = volumes_and_mounts(study)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": trial.image,
        "imagePullPolicy": trial.image_pull_policy,
        "command": ["python", "-m", "sweetspot_trainer"],
        "env": env(study, key),
        "resources": resources(study),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": grace_seconds,
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,  # the trainer never talks to the API server
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec.update(pod_placement(study))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": study.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference(study)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": trial.active_deadline_seconds,
            # Kueue admits a queued Job by unsuspending it.
            **({"suspend": True} if trial.queue_name else {}),
            "podFailurePolicy": {
                "rules": [
                    # Preemption, eviction, node drain: not the trial's fault; the Job controller retries the pod.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    # Stopped by SIGTERM with a checkpoint written (a drain, a node shutting down): the same.
                    {
                        "action": "Ignore",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_INTERRUPTED]},
                    },
                    # Bad input and out of memory will not get better on a retry.
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [EXIT_BAD_INPUT, EXIT_OOM],
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": labels(study, key)}, "spec": pod_spec},
        },
    }
