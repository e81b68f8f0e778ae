"""A Kubeflow Trainer v2 TrainJob for one trial stage, and the ConfigMap it reads (pure).

Kubeflow Trainer runs a TrainJob on a runtime (`spec.trial.runtime.runtimeRef`, `torch-distributed` by default):
a JobSet of `numNodes` pods, each starting `torchrun` with the `PET_*` environment (nodes, processes per node, node
rank, master address), so the trainer trains data-parallel over every GPU of every node. Everything else is the
Job's: the same name, labels (on the TrainJob and, through `spec.labels`, on its pods), owner, ConfigMap, trainer
environment, resources per node, volumes and placement (`podSpecOverrides` on the runtime's `node` job). Only the
pod of global rank 0 writes the stage's result into its termination message; the operator reads it there.

What the runtime owns, not the TrainJob: the pods' security context and failure policy (a TrainJob cannot
override them; Kubeflow's `torch-distributed` runs the trainer image as its own user), and the deadline.
"""

from __future__ import annotations

from typing import Any

from sweetspot.api.resource import FineTuneStudy
from sweetspot.cluster.jobs import (
    LABEL_KUEUE_QUEUE,
    env,
    labels,
    object_name,
    owner_reference,
    pod_placement,
    resources,
    volumes_and_mounts,
)
from sweetspot.core.records import RunKey

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
NODE_JOB = "node"
"""The runtime's replicated job (and container) that runs the trainer: `node` in Kubeflow's torch runtimes."""
LABEL_JOBSET = "jobset.sigs.k8s.io/jobset-name"
LABEL_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
LABEL_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMMAND = ["torchrun", "--module", "sweetspot_trainer"]
"""torchrun reads the runtime's `PET_*` variables for its flags and starts one trainer per process slot."""
_PLACEMENT_OVERRIDES = ("nodeSelector", "tolerations", "affinity", "serviceAccountName", "imagePullSecrets")
"""The placement fields a TrainJob's pod spec override accepts (not `priorityClassName`: the runtime's)."""


def rank0_pods(name: str) -> str:
    """The label selector of the pod that reports the stage's result: node rank 0 of the trainer job."""
    return f"{LABEL_JOBSET}={name},{LABEL_REPLICATED_JOB}={NODE_JOB},{LABEL_COMPLETION_INDEX}=0"


def all_pods(name: str) -> str:
    return f"{LABEL_JOBSET}={name}"


def trainjob(study: FineTuneStudy, key: RunKey) -> dict[str, Any]:
    """The TrainJob that runs one stage; its trial config comes from the ConfigMap of the same name."""
    trial = study.spec.trial
    runtime = trial.runtime
    name = object_name(study.metadata.name, key)
    stage_labels = labels(study, key)
    metadata_labels = stage_labels | ({LABEL_KUEUE_QUEUE: trial.queue_name} if trial.queue_name else {})
    volumes, mounts = volumes_and_mounts(study)
    placement = {k: v for k, v in pod_placement(study).items() if k in _PLACEMENT_OVERRIDES}
    trainer: dict[str, Any] = {
        "image": trial.image,
        "command": COMMAND,
        "env": env(study, key),
        "numNodes": runtime.num_nodes,
        "resourcesPerNode": resources(study),
    }
    if runtime.num_proc_per_node is not None:
        trainer["numProcPerNode"] = runtime.num_proc_per_node
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": study.metadata.namespace,
            "labels": metadata_labels,
            "ownerReferences": [owner_reference(study)],
        },
        "spec": {
            "runtimeRef": {"name": runtime.runtime_ref.name, "apiGroup": GROUP, "kind": runtime.runtime_ref.kind},
            "labels": stage_labels,
            # Kueue admits a queued TrainJob by unsuspending it.
            **({"suspend": True} if trial.queue_name else {}),
            "trainer": trainer,
            "podSpecOverrides": [
                {
                    "targetJobs": [{"name": NODE_JOB}],
                    "volumes": volumes,
                    "containers": [{"name": NODE_JOB, "volumeMounts": mounts}],
                    **placement,
                }
            ],
        },
    }
