"""The TrainJob runtime's objects (pure), `sweetspot render` of a trainJob study, and the runtime field's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweetspot.api.manifest import load_manifest
from sweetspot.api.spec import FineTuneStudySpec, immutable_changes
from sweetspot.cluster import jobs, trainjobs
from sweetspot.core.records import RunKey

ROOT = Path(__file__).resolve().parents[2]


def study(**runtime: Any) -> Any:
    (resource,) = load_manifest(ROOT / "examples" / "product-attributes.yaml")
    data = resource.model_dump(mode="json", exclude_none=True)
    data["metadata"]["uid"] = "0b7f4c52-0000-4000-8000-000000000001"
    data["spec"]["trial"]["runtime"] = {"kind": "trainJob", "numNodes": 2} | runtime
    return type(resource).model_validate(data)


def test_a_trainjob_runs_the_stage_like_its_job_would_on_n_nodes_under_torchrun() -> None:
    resource = study(numProcPerNode=4)
    key = RunKey("trial", 3, "early")
    made, job = trainjobs.trainjob(resource, key), jobs.job(resource, key)
    assert made["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and made["kind"] == "TrainJob"
    assert made["metadata"]["name"] == job["metadata"]["name"]
    assert made["metadata"]["labels"] == job["metadata"]["labels"]
    assert made["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
    spec = made["spec"]
    assert spec["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    assert spec["labels"] == job["spec"]["template"]["metadata"]["labels"]  # the pods find their study
    (container,) = job["spec"]["template"]["spec"]["containers"]
    trainer = spec["trainer"]
    assert trainer["command"][0] == "torchrun" and trainer["command"][-1] == "sweetspot_trainer"
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["env"] == container["env"] and trainer["resourcesPerNode"] == container["resources"]
    (override,) = spec["podSpecOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert override["volumes"] == job["spec"]["template"]["spec"]["volumes"]
    assert override["containers"] == [{"name": "node", "volumeMounts": container["volumeMounts"]}]
    assert spec.get("suspend") == job["spec"].get("suspend")  # queued for Kueue like the Job


def test_the_result_comes_from_node_rank_0() -> None:
    assert trainjobs.rank0_pods("s-t0-early") == (
        "jobset.sigs.k8s.io/jobset-name=s-t0-early,jobset.sigs.k8s.io/replicatedjob-name=node,"
        "batch.kubernetes.io/job-completion-index=0"
    )


def test_several_nodes_need_a_trainjob() -> None:
    (resource,) = load_manifest(ROOT / "examples" / "product-attributes.yaml")
    data = resource.model_dump(mode="json", exclude_none=True)
    data["spec"]["trial"]["runtime"] = {"numNodes": 2}
    with pytest.raises(ValueError, match="numNodes above 1 and numProcPerNode need kind: trainJob"):
        type(resource).model_validate(data)


def test_the_runtime_cannot_change_once_a_study_started() -> None:
    before, after = study().spec, study(numNodes=4).spec
    assert immutable_changes(before, after) == ["spec.trial.runtime"]
    job_spec = FineTuneStudySpec.model_validate(
        before.model_dump(mode="json", exclude_none=True) | {"trial": {"image": "x:1"}}
    )
    assert immutable_changes(before, job_spec) == ["spec.trial.runtime"]


def test_render_prints_the_trainjob_and_configmap_a_stage_would_create(tmp_path: Path) -> None:
    manifest = tmp_path / "study.yaml"
    manifest.write_text(yaml.safe_dump(study().model_dump(mode="json", exclude_none=True)))
    result = subprocess.run(
        [sys.executable, "-m", "sweetspot.cli", "render", str(manifest), "--trials", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config_map, trainjob = yaml.safe_load_all(result.stdout)
    assert (config_map["kind"], trainjob["kind"]) == ("ConfigMap", "TrainJob")
    assert trainjob["metadata"]["name"] == config_map["metadata"]["name"]
    assert trainjob["spec"]["trainer"]["numNodes"] == 2
