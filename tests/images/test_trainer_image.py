"""The trainer image as a Job runs it: the operator's own Job and ConfigMap (`JobRuntime`) on the API emulator, each
pod a real container on the container node (uid 10001, read-only root, no capabilities, no network, the Job's
volumes and termination-message path), results read back as the operator reads them."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from sweetspot.api.resource import FineTuneStudy
from sweetspot.cluster.jobs import object_name
from sweetspot.cluster.memory import Memories
from sweetspot.cluster.runtimes import JobRuntime, TrainJobRuntime
from sweetspot.contract import EXIT_BAD_INPUT, StageResult, result_file_name
from sweetspot.core.records import RunKey, RunView, StartRun
from sweetspot.storage.space import preview_params

from support import containers
from support.emulator import RunningCluster, cluster
from support.node import NodeSimulator
from support.operator import NAMESPACE, eventually, tracebacks
from support.studies import small_study

pytestmark = [pytest.mark.images, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

TRAINER_UID = 10001


def study(name: str, image: str, trial: dict[str, Any] | None = None, **spec: Any) -> FineTuneStudy:
    """The small study on the built-in model and pages, its trials in `image`, outputs on the `outputs` claim."""
    manifest = small_study(name, NAMESPACE)
    manifest["metadata"]["uid"] = str(uuid.uuid4())
    manifest["spec"]["trial"] = {
        "image": image,
        "output": {"pvc": "outputs", "path": "studies"},
        "resources": {"limits": {"cpu": "2", "memory": "6Gi"}},
        **(trial or {}),
    }
    manifest["spec"] |= spec
    return FineTuneStudy.model_validate(manifest)


@contextlib.contextmanager
def container_node(tmp_path: Path, claims: dict[str, Path]) -> Iterator[tuple[RunningCluster, NodeSimulator]]:
    """The emulator, the kubernetes client's default configuration pointed at it (as the operator's is), and a
    container node; the node must end with no error and no container left."""
    with cluster(tmp_path) as running:
        kubernetes.config.load_kube_config(config_file=str(running.kubeconfig))
        node = NodeSimulator(running.client(), NAMESPACE, tmp_path / "node", containers=True)
        node.claims.update(claims)
        with node:
            yield running, node
        assert not node.errors, tracebacks(node.errors)
        assert containers.leftovers(node.node_id) == []


def finished(runtime: JobRuntime, spec: FineTuneStudy, key: RunKey, node: NodeSimulator, timeout: float) -> RunView:
    def ended() -> RunView | None:
        return next((r for r in runtime.observe(spec) if r.key == key and r.phase != "running"), None)

    return eventually(ended, timeout, lambda: f"{key} to finish (waiting: {node.waiting}, node errors: {node.errors})")


def pod_status(api: kubernetes.client.ApiClient, job: str) -> dict[str, Any]:
    (pod,) = kubernetes.client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job}").items
    terminated = pod.status.container_statuses[0].state.terminated
    return {"phase": pod.status.phase, "exitCode": terminated.exit_code, "message": terminated.message}


def test_an_early_then_the_final_stage_run_in_the_image_as_the_job_runs_them(
    images: dict[str, str], default_client: None, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    spec = study("imaged", images["trainer"])
    (params,) = preview_params(spec.spec, 1)
    runtime = JobRuntime(Memories())
    with container_node(tmp_path, {"outputs": outputs}) as (running, node):
        early_key = RunKey("trial", 0, "early")
        runtime.start(spec, StartRun(early_key, params))
        early = finished(runtime, spec, early_key, node, 600)
        assert early.phase == "succeeded", early
        assert early.result is not None and early.result.status == "ok" and not early.result.resumed
        assert 0 < early.result.step < early.result.planned_steps

        # The pod ran as the Job says, with nothing rewritten: its podman command carries the Job's securityContext,
        # and the trainer wrote to the paths the Job gave it, which only the output claim could hold.
        job = object_name("imaged", early_key)
        command = node.commands[f"{job}-pod"]
        for flag in (["--user", "10001"], ["--read-only"], ["--read-only-tmpfs=false"], ["--network", "none"]):
            assert any(command[i : i + len(flag)] == flag for i in range(len(command))), (flag, command)
        assert command[command.index("--cap-drop") : command.index("--cap-drop") + 2] == ["--cap-drop", "ALL"]
        assert "--volume" in command and not any("SWEETSPOT_TERMINATION_LOG" in part for part in command)

        # The result file on the output volume, and the termination message as the kubelet reported it.
        stored = outputs / "studies" / "imaged" / "runs" / str(early_key) / result_file_name("early")
        from_file = StageResult.model_validate_json(stored.read_text())
        reported = pod_status(running.client(), job)
        assert reported == {"phase": "Succeeded", "exitCode": 0, "message": from_file.termination_message()}
        assert from_file.step == early.result.step and from_file.evaluations[-1] == early.result.evaluations[-1]
        checkpoint = outputs / "studies" / "imaged" / "t0" / "checkpoint"
        written = [p for p in checkpoint.rglob("*") if p.is_file()]
        assert written and all(p.stat().st_uid == TRAINER_UID for p in written), written

        final_key = RunKey("trial", 0, "final")
        runtime.start(spec, StartRun(final_key, params))
        final = finished(runtime, spec, final_key, node, 600)
        assert final.phase == "succeeded", final
        assert final.result is not None and final.result.status == "ok"
        assert final.result.resumed, "the final stage did not resume the early checkpoint from the output volume"
        assert final.result.step == final.result.planned_steps == early.result.planned_steps


def test_bad_input_in_the_container_exits_2_naming_file_and_line(
    images: dict[str, str], default_client: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    good = {"input": "Acme kettle, 1.7 l, steel", "output": {"brand": "Acme"}}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + '{"input": "no closing brace"\n' + json.dumps(good))
    (data / "val.jsonl").write_text(json.dumps(good) + "\n")
    dataset = {"train": {"pvc": "data", "path": "train.jsonl"}, "validation": {"pvc": "data", "path": "val.jsonl"}}
    spec = study("badinput", images["trainer"], dataset=dataset)
    (params,) = preview_params(spec.spec, 1)
    runtime = JobRuntime(Memories())
    with container_node(tmp_path, {"data": data}) as (running, node):
        key = RunKey("trial", 0, "early")
        runtime.start(spec, StartRun(key, params))
        run = finished(runtime, spec, key, node, 300)
        reported = pod_status(running.client(), object_name("badinput", key))
    assert run.phase == "failed" and run.reason.startswith("PodFailurePolicy"), run
    assert reported["exitCode"] == EXIT_BAD_INPUT
    assert run.result is not None and run.result.status == "bad_input"
    assert "train.jsonl:2" in run.result.message, run.result.message
    assert "train.jsonl:2" in reported["message"]


def test_smollm2_converts_into_the_cache_volume_and_trains_in_the_image(
    images: dict[str, str], default_client: None, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    spec = study(
        "smol",
        images["trainer"],
        trial={"cache": {"pvc": "cache", "path": "models"}},
        model={"builtin": "smollm2-135m", "maxSequenceLength": 256},
        dataset={
            "train": {"builtin": "product-pages", "rows": 24},
            "validation": {"builtin": "product-pages", "rows": 4},
            "samples": 8,
        },
    )
    params = {**preview_params(spec.spec, 1)[0], "batchSize": 4, "epochs": 1}
    runtime = JobRuntime(Memories())
    with container_node(tmp_path, {"outputs": tmp_path / "outputs", "cache": cache}) as (_, node):
        key = RunKey("trial", 0, "early")
        runtime.start(spec, StartRun(key, params))
        run = finished(runtime, spec, key, node, 900)
    assert run.phase == "succeeded", run
    assert run.result is not None and run.result.status == "ok" and run.result.step >= 1
    weights = list((cache / "models").rglob("*.safetensors"))
    assert weights, f"no converted model in the cache volume: {sorted(p.name for p in cache.rglob('*'))}"
    assert all(w.stat().st_uid == TRAINER_UID for w in weights)


def test_a_two_node_trainjob_runs_as_two_containers_on_one_loopback(
    images: dict[str, str], default_client: None, tmp_path: Path
) -> None:
    """Each node of a TrainJob is a container of the trainer image running the runtime's torchrun command; the nodes
    rendezvous over rank 0's loopback (the others join its network namespace), and rank 0 alone reports.

    Kubeflow's runtime gives its pods no fsGroup (a TrainJob cannot override the pod's securityContext), so a volume
    as a provisioner makes it (root's, 0755) is not writable by the image's uid 10001: the stage says so before any
    training, naming the path and what to change, and is not retried (exit 2). A volume the runtime makes writable
    (0777 here, as an fsGroup in the runtime's pod template would) then runs."""
    outputs = tmp_path / "outputs"
    outputs.mkdir(mode=0o755)
    spec = study("twonode", images["trainer"], trial={"runtime": {"kind": "trainJob", "numNodes": 2}})
    (params,) = preview_params(spec.spec, 1)
    runtime = TrainJobRuntime(Memories())
    with container_node(tmp_path, {"outputs": outputs}) as (_, node):
        refused = RunKey("trial", 0, "early")
        runtime.start(spec, StartRun(refused, params))
        denied = finished(runtime, spec, refused, node, 600)
        outputs.chmod(0o777)
        key = RunKey("trial", 0, "early", attempt=1)
        runtime.start(spec, StartRun(key, params))
        run = finished(runtime, spec, key, node, 600)
        pods = sorted(name for name in node.commands if name.startswith("twonode-t0-early-r1-"))
    assert denied.phase == "failed" and denied.result is not None and denied.result.status == "bad_input", denied
    assert "cannot write /sweetspot/output/studies/twonode" in denied.result.message
    assert "fsGroup 10001" in denied.result.message and "uid 10001" in denied.result.message
    assert run.phase == "succeeded", run
    assert run.result is not None and run.result.status == "ok" and run.result.step > 0
    assert len(pods) == 2, pods
    rank0, rank1 = (node.commands[p] for p in pods)
    assert rank0[rank0.index("--network") + 1] == "none"
    assert rank1[rank1.index("--network") + 1] == f"container:{rank0[rank0.index('--name') + 1]}"
    assert all(images["trainer"] in command for command in (rank0, rank1))
