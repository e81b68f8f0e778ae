"""`spec.trial` and `spec.storage`: the pod every trial stage runs in, and where trials are kept."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
)

from sweetspot.api.fields import DnsLabel, Quantity, SecretKeyRef, VolumePath
from sweetspot.api.names import DEFAULT_TRAINER_IMAGE
from sweetspot.api.rules import Model, Rule


class Toleration(Model):
    """A core/v1 Toleration for the trial pods."""

    key: str | None = Field(default=None, max_length=317)
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """`Equal` matches the value; `Exists` matches any value."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value to match with `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when unset."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """With NoExecute, how long the pod stays bound after the taint appears."""


class Resources(Model):
    """Compute resources of the trainer container."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Minimum resources, e.g. `cpu: 4`, `memory: 32Gi`."""
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Maximum resources; GPUs go here, e.g. `nvidia.com/gpu: 1`."""


class EnvVar(Model):
    """A plain environment variable of the trainer container (never put secrets here)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class TrainingRuntimeRef(Model):
    """A Kubeflow Trainer runtime: the blueprint (torchrun, its environment, the JobSet) a TrainJob runs on."""

    name: DnsLabel = "torch-distributed"
    """The runtime's name; Kubeflow Trainer installs `torch-distributed` as a ClusterTrainingRuntime."""
    kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    """ClusterTrainingRuntime (cluster-wide) or TrainingRuntime (in the study's namespace)."""


DEFAULT_CHECKPOINT_MINUTES = 5.0
"""A checkpoint every 5 minutes of a stage unless the spec says otherwise: a write costs well under 2% of that
(measured in docs/preemption.md), and a SIGKILL loses at most that much training."""


class CheckpointPolicy(Model):
    """How often a running stage writes a checkpoint that a rerun after a disruption continues (with an output
    volume, or in local mode). A stopped stage (SIGTERM: eviction, preemption, a drain) writes one anyway; the
    interval bounds what a SIGKILL (a lost node) throws away."""

    every_minutes: float | None = Field(default=None, gt=0.0, le=1440.0)
    """A checkpoint after the first step that ends this many minutes after the last one; 5 when neither is set."""
    every_steps: int | None = Field(default=None, ge=1)
    """A checkpoint after every this many optimizer steps (instead of `everyMinutes`)."""

    rules = (
        Rule(
            cel="!(has(self.everyMinutes) && has(self.everySteps))",
            message="set everyMinutes or everySteps, not both",
            field="everySteps",
            holds=lambda o: o.every_minutes is None or o.every_steps is None,
        ),
    )

    @property
    def every_seconds(self) -> float | None:
        """The interval in seconds, when the checkpoints go by time."""
        if self.every_steps is not None:
            return None
        return 60.0 * (self.every_minutes or DEFAULT_CHECKPOINT_MINUTES)


class TrialRuntime(Model):
    """Where each trial stage runs: a batch/v1 Job (one pod), or a Kubeflow Trainer v2 TrainJob (`numNodes` pods
    under torchrun: data-parallel training over several GPUs and nodes; Kubeflow Trainer must be installed)."""

    kind: Literal["job", "trainJob"] = "job"
    """`job`: one Job per stage, one pod. `trainJob`: one TrainJob per stage (trainer.kubeflow.org/v1alpha1)."""
    num_nodes: int = Field(default=1, ge=1, le=128)
    """Nodes (pods) per stage, each with `trial.resources`; more than 1 needs `kind: trainJob`."""
    num_proc_per_node: int | None = Field(default=None, ge=1, le=64)
    """Training processes per node (one per GPU); the runtime's default (`auto`: one per GPU) when unset."""
    runtime_ref: TrainingRuntimeRef = Field(default_factory=TrainingRuntimeRef)
    """The Kubeflow Trainer runtime a TrainJob uses."""

    rules = (
        Rule(
            cel="self.kind == 'trainJob' || (self.numNodes == 1 && !has(self.numProcPerNode))",
            message="numNodes above 1 and numProcPerNode need kind: trainJob",
            field="numNodes",
            holds=lambda o: o.kind == "trainJob" or (o.num_nodes == 1 and o.num_proc_per_node is None),
        ),
    )


class TrialTemplate(Model):
    """The pod of every trial stage."""

    runtime: TrialRuntime = Field(default_factory=TrialRuntime)
    """Where each stage runs: a Job (default) or a Kubeflow TrainJob over several nodes. Fixed once the study
    started."""
    image: str = Field(default=DEFAULT_TRAINER_IMAGE, min_length=1, max_length=512)
    """The trainer image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    image_pull_secrets: list[DnsLabel] = Field(default_factory=list, max_length=8)
    """Secrets with registry credentials for the image."""
    resources: Resources = Field(default_factory=lambda: Resources(limits={"nvidia.com/gpu": "1"}))
    """Container resources; one GPU by default."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables, e.g. NCCL or cache settings."""
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict, max_length=32)
    """Node labels the trial pods must match, e.g. a GPU product."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the trial pods tolerate, e.g. a GPU node taint."""
    affinity: dict[str, Any] | None = Field(
        default=None, strict=False, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A core/v1 Affinity passed to the trial pods as is."""
    priority_class_name: DnsLabel | None = None
    """PriorityClass of the trial pods."""
    queue_name: DnsLabel | None = None
    """Kueue LocalQueue: trial Jobs get the `kueue.x-k8s.io/queue-name` label and are admitted by Kueue."""
    service_account_name: DnsLabel | None = None
    """ServiceAccount of the trial pods (it needs no API permissions)."""
    active_deadline_seconds: int = Field(default=21600, ge=60, le=2_592_000)
    """A trial stage running longer than this is stopped and counted as failed."""
    retries: int = Field(default=1, ge=0, le=10)
    """How often a stage that failed for a reason other than a disruption is retried before its trial fails;
    disruptions (preemption, eviction) are always retried."""
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    """How often a running stage checkpoints, so that a disrupted stage resumes close to where it stopped."""
    output: VolumePath | None = None
    """Volume for checkpoints and adapters; with it, a promoted trial resumes from its early checkpoint instead
    of retraining, and `status.best.adapter` says where the best adapter lies. Without it a study on a cluster keeps
    no checkpoint and no adapter (`sweetspot validate` warns); `sweetspot run` keeps both under its workdir."""
    cache: VolumePath | None = None
    """Volume for model caches shared by the study's trials, mounted at /cache: a built-in model converted once
    (`smollm2-135m`: about 0.5 GB, converted by the first trial, loaded in seconds by the others) and Hugging Face
    downloads. ReadWriteMany when trials run in parallel. Without it every pod starts from an empty cache."""


class Storage(Model):
    """Where the Optuna study (the full trial history) is kept."""

    secret_ref: SecretKeyRef | None = None
    """Secret key holding an SQLAlchemy URL such as `postgresql+psycopg://user:pass@host/db`; the operator's
    default storage when unset. Only the operator reads it; trial pods never see it."""
