"""Talking to the Kubernetes API: client set-up and the raw reads and idempotent writes the operator makes.

Lists are read raw (`_preload_content=False`) and parsed as JSON: that costs a twentieth of building the client's
models (0.55 ms per Job with its pod template), and a study's list of runs grows with its trials.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sweetspot.contract import StageResult


class SecretError(Exception):
    """A Secret the study names cannot be read, or lacks its key."""


def load_config() -> None:
    """In a pod: the service account; elsewhere: KUBECONFIG (tests point it at the emulator)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def items(response: Any) -> list[dict[str, Any]]:
    """The items of a list read raw (`_preload_content=False`)."""
    return cast(list[dict[str, Any]], json.loads(response.data)["items"])


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api()
    return items(core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))


def create(create_in: Callable[..., Any], *args: Any) -> None:
    """Create one object (`create_in(*args)`); already there counts as created (an earlier attempt of this very
    action got through). The answer is not read, so not parsed into models either."""
    try:
        create_in(*args, _preload_content=False)
    except ApiException as exc:
        if exc.status != 409:
            raise


def delete(delete_in: Callable[..., Any], *args: Any, **options: Any) -> bool:
    """Delete one object; already gone counts as deleted."""
    try:
        delete_in(*args, **options)
    except ApiException as exc:
        if exc.status != 404:
            raise
    return True


def termination_message(pod_items: list[dict[str, Any]]) -> StageResult | None:
    """The stage result in the newest pod's termination message, if any."""
    newest_first = sorted(pod_items, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    for pod in reversed(newest_first):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                try:
                    return StageResult.model_validate_json(message)
                except ValidationError:
                    continue  # FallbackToLogsOnError: the log tail of a crash, not a result
    return None


def disrupted(pod_items: list[dict[str, Any]]) -> bool:
    """A pod was preempted, evicted or drained (not the trial's fault)."""
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for pod in pod_items
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def exit_codes(pod_items: list[dict[str, Any]]) -> set[int]:
    """The exit codes of the pods' ended containers."""
    return {
        int(terminated["exitCode"])
        for pod in pod_items
        for status in (pod.get("status") or {}).get("containerStatuses") or []
        if (terminated := (status.get("state") or {}).get("terminated")) and "exitCode" in terminated
    }


def finished_condition(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """`Complete` or `Failed` with its condition, when a Job or TrainJob has finished."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"]), condition
    return None


def secret_value(namespace: str, name: str, key: str) -> str:
    core = kubernetes.client.CoreV1Api()
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise SecretError(f"cannot read Secret {name}: {exc.reason}") from None
    value = (secret.data or {}).get(key)
    if not value:
        raise SecretError(f"Secret {name} has no key {key!r}")
    return base64.b64decode(value).decode()
