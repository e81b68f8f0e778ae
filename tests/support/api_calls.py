"""The Kubernetes API calls the operator's code makes, read from its source: the least privilege it needs.

Two kinds of callers: the kubernetes client (`batch.create_namespaced_job(...)`, `api.get_namespaced_custom_object`)
and kopf, which lists and watches what its handlers are registered on and patches its own resource (finalizers,
progress annotations, status). A call this module cannot attribute to a resource fails the test that uses it,
so a new call in the operator cannot slip past the chart's RBAC.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "sweetspot"
CLIENT_CALL = re.compile(r"^(read|list|create|delete|patch|replace|get)_namespaced_([a-z_]+?)(_status)?$")
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "delete": "delete", "patch": "patch"}
RESOURCES = {
    "job": ("batch", "jobs"),
    "pod": ("", "pods"),
    "config_map": ("", "configmaps"),
    "event": ("", "events"),
    "secret": ("", "secrets"),
    "custom_object": ("sweetspot.dev", "finetunestudies"),
}
STUDIES = ("sweetspot.dev", "finetunestudies")
TRAINJOBS = ("trainer.kubeflow.org", "trainjobs")
"""Custom objects of Kubeflow Trainer: a call (or the call it is passed to) that names `trainjobs.GROUP`."""
KOPF_HANDLERS = {"timer", "daemon", "create", "update", "delete", "resume", "field", "event", "index"}

Verbs = dict[tuple[str, str], set[str]]


def _grant(found: Verbs, key: tuple[str, str], verb: str) -> None:
    found.setdefault(key, set()).add(verb)


def _runtime_targets() -> list[tuple[str, str]]:
    """(group, plural) of every runtime's objects: the operator registers a run watch per runtime from its registry
    (`kopf.on.event(*runtime.resource, ...)` in `sweetspot.cluster.handlers`)."""
    from sweetspot.cluster.runtimes import RUNTIMES

    return [(runtime.resource[0], runtime.resource[2]) for runtime in RUNTIMES.values()]


def _kopf_target(decorator: ast.expr) -> tuple[str, str] | None:
    """(group, plural) of a `@kopf.on.event("batch", "v1", "jobs")` or `@kopf.timer(GROUP, VERSION, PLURAL)`."""
    if not isinstance(decorator, ast.Call):
        return None
    name = ast.unparse(decorator.func)
    if not name.startswith("kopf.") or name.rsplit(".", 1)[-1] not in KOPF_HANDLERS:
        return None
    args = decorator.args
    if len(args) >= 3 and all(isinstance(a, ast.Constant) for a in args[:3]):
        return str(args[0].value), str(args[2].value)  # type: ignore[attr-defined]
    if [ast.unparse(a) for a in args[:3]] == ["GROUP", "VERSION", "PLURAL"]:
        return STUDIES
    if [ast.unparse(a) for a in args[:3]] == ["trainjobs.GROUP", "trainjobs.VERSION", "trainjobs.PLURAL"]:
        return TRAINJOBS
    raise AssertionError(f"cannot tell what kopf handler {ast.unparse(decorator)} watches")


def operator_verbs(directory: Path = OPERATOR) -> Verbs:
    found: Verbs = {}
    for path in sorted(directory.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        calls = {id(child): node for node in ast.walk(tree) if isinstance(node, ast.Call) for child in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (match := CLIENT_CALL.match(node.attr)):
                verb, kind, status = match.groups()
                if kind not in RESOURCES:
                    raise AssertionError(f"{path.name}: unknown API resource in {node.attr}")
                group, resource = RESOURCES[kind]
                call = calls.get(id(node))
                if kind == "custom_object" and call is not None and "trainjobs.GROUP" in ast.unparse(call):
                    group, resource = TRAINJOBS
                _grant(found, (group, resource + ("/status" if status else "")), VERBS[verb])
            elif (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "kopf.on.event"
                and node.args
                and ast.unparse(node.args[0]) == "*runtime.resource"
            ):
                for target in _runtime_targets():
                    _grant(found, target, "list")
                    _grant(found, target, "watch")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = _kopf_target(decorator)
                    if target is None:
                        continue
                    _grant(found, target, "list")  # kopf lists, then watches, what a handler is registered on
                    _grant(found, target, "watch")
                    if target == STUDIES and ast.unparse(decorator.func) != "kopf.on.event":  # type: ignore[attr-defined]
                        # Persistent handlers: kopf patches its finalizer and progress annotations, and the status.
                        _grant(found, STUDIES, "patch")
                        _grant(found, (STUDIES[0], STUDIES[1] + "/status"), "patch")
    # kopf posts its own warnings as Events (settings.posting) on the studies it handles.
    if STUDIES in found:
        _grant(found, ("", "events"), "create")
    return found
