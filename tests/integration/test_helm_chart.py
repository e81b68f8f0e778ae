"""The Helm chart with the real helm binary: lint over a values matrix, every rendered object valid against the
Kubernetes OpenAPI schemas (offline, kubernetes-validate), least-privilege RBAC, the restricted Pod Security
profile for every pod, and invalid values refused with a message that names the value."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sweetspot.api.manifest import parse_documents

from support.api_calls import TRAINJOBS, operator_verbs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "sweetspot"
VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES = "1.30.0"
API_VERSIONS = ("monitoring.coreos.com/v1", "postgresql.cnpg.io/v1")
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "Cluster"}  # not in the Kubernetes schemas: checked below

# What the operator's code calls (read from its source: tests/support/api_calls.py): the chart may grant no more,
# and no less.
OPERATOR_VERBS = operator_verbs()


def helm_binary() -> str:
    found = shutil.which("helm") or str(Path(sys.executable).parent / "helm")
    if not Path(found).exists():
        raise RuntimeError("helm not found: `make install` puts one in .venv/bin (see the README)")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=False)


def render(values: Path | None = None, *extra: str) -> list[dict[str, Any]]:
    args = ["template", "study-ops", str(CHART), "--namespace", "ml-ops", "--include-crds"]
    args += [f"--kube-version={KUBERNETES}", *(f"--api-versions={v}" for v in API_VERSIONS)]
    if values is not None:
        args += ["-f", str(values)]
    result = helm(*args, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_every_rendered_object_is_valid_kubernetes(values: Path) -> None:
    objects = render(values)
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "Service"} <= kinds
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"] in API_VERSIONS and obj["metadata"]["name"] and obj["spec"]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
            ) from None


def test_the_chart_crd_is_the_repository_crd() -> None:
    chart_crd = (CHART / "crds" / "finetunestudies.sweetspot.dev.yaml").read_text()
    assert chart_crd == (ROOT / "crds" / "finetunestudies.sweetspot.dev.yaml").read_text(), "copy crds/ into the chart"


def rbac_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_rbac_is_least_privilege(values: Path) -> None:
    objects = render(values)
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rbac_rules(objects):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    wanted = dict(OPERATOR_VERBS)
    if env["SWEETSPOT_TRAINJOBS"] != "true":  # TrainJob verbs only where the operator is told to use TrainJobs
        del wanted[TRAINJOBS]
    assert granted == wanted


def test_namespaced_scope_grants_only_in_the_watched_namespaces() -> None:
    objects = render(CHART / "ci" / "namespaced-values.yaml")
    assert not [o for o in objects if o["kind"].startswith("Cluster") and o["kind"] != "CustomResourceDefinition"]
    roles = {(o["kind"], o["metadata"]["namespace"]) for o in objects if o["kind"] in ("Role", "RoleBinding")}
    assert roles == {(k, ns) for k in ("Role", "RoleBinding") for ns in ("ml-team-a", "ml-team-b")}
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "study-ops-sweetspot", "namespace": "ml-ops"}]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-team-a" in args and "--namespace=ml-team-b" in args


def test_cluster_scope_watches_every_namespace() -> None:
    objects = render(CHART / "ci" / "cluster-scope-values.yaml")
    assert {"ClusterRole", "ClusterRoleBinding"} <= {o["kind"] for o in objects}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert not [a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"] if "--namespace" in a]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    ]


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' restricted profile, as the admission controller checks it."""
    problems = []
    pod = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(flag)
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for volume in spec.get("volumes", []):
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"volume {volume['name']}")
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (context.get("runAsNonRoot") or pod.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if 0 in (context.get("runAsUser"), pod.get("runAsUser")):
            problems.append(f"{name}: runs as root")
        seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities must drop ALL")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.name)
def test_every_pod_meets_the_restricted_profile(values: Path) -> None:
    specs = pod_specs(render(values))
    assert specs
    for name, spec in specs:
        assert restricted_violations(spec) == [], name


def test_the_restricted_check_catches_a_privileged_pod() -> None:
    spec = {"containers": [{"name": "bad", "securityContext": {"privileged": True}}], "hostNetwork": True}
    assert len(restricted_violations(spec)) >= 5


def test_the_operator_runs_one_replica_recreated_with_probes() -> None:
    (deployment,) = [o for o in render() if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "sweetspot-operator:0.1.0"
    assert {"startupProbe", "livenessProbe", "readinessProbe", "resources"} <= set(container)
    assert "SWEETSPOT_DATABASE_URL" not in {e["name"] for e in container["env"]}  # no storage configured


def test_database_options_feed_the_operator() -> None:
    def storage_ref(values: str) -> dict[str, Any]:
        objects = render(CHART / "ci" / values)
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["SWEETSPOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]  # type: ignore[no-any-return]

    assert storage_ref("cluster-scope-values.yaml") == {"name": "sweetspot-db", "key": "url"}
    assert storage_ref("cloudnativepg-values.yaml") == {"name": "study-ops-sweetspot-db-app", "key": "uri"}
    assert storage_ref("dev-database-values.yaml") == {"name": "study-ops-sweetspot-database", "key": "url"}
    dev = render(CHART / "ci" / "dev-database-values.yaml")
    (secret,) = [o for o in dev if o["kind"] == "Secret"]
    url = secret["stringData"]["url"]
    assert url.startswith("postgresql+psycopg://sweetspot:") and url.endswith(
        "@study-ops-sweetspot-database:5432/sweetspot"
    )
    assert any(o["kind"] == "StatefulSet" for o in dev)


def test_monitoring_objects_only_where_their_api_exists() -> None:
    values = CHART / "ci" / "monitoring-values.yaml"
    objects = render(values)
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    source = yaml.safe_load((CHART / "alerts" / "sweetspot.rules.yaml").read_text())
    assert rule["spec"] == source and rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert any(o["kind"] == "ServiceMonitor" for o in objects)
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert {o["metadata"]["namespace"] for o in dashboards} == {"monitoring"}
    shipped = {key: text for o in dashboards for key, text in o["data"].items()}
    assert shipped == {p.name: p.read_text().rstrip("\n") for p in (CHART / "dashboards").glob("*.json")}
    # Without the Prometheus Operator's API: no ServiceMonitor or PrometheusRule (NOTES.txt says why).
    result = helm("template", "x", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stderr
    assert "kind: ServiceMonitor" not in result.stdout and "kind: PrometheusRule" not in result.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("rbac.scope=galaxy", "rbac.scope must be one of the following"),
        ("surprise=1", "Additional property surprise is not allowed"),
        ("image.pullPolicy=Sometimes", "image.pullPolicy must be one of the following"),
        ("metrics.port=8080", "metrics.port"),
        ("operator.workers=0", "operator.workers"),
        ("database.dev.storageSize=lots", "database.dev.storageSize"),
        ("database.dev.enabled=true,database.existingSecret.name=db", "choose one of existingSecret.name"),
        ("rbac.watchNamespaces={a}", "rbac.watchNamespaces only applies with rbac.scope=namespaced"),
    ],
)
def test_invalid_values_are_refused_with_the_value_named(setting: str, message: str) -> None:
    result = helm("template", "x", str(CHART), "--set", setting)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_cloudnativepg_without_its_api_renders_no_cluster() -> None:
    result = helm("template", "x", str(CHART), "-f", str(CHART / "ci" / "cloudnativepg-values.yaml"))
    assert result.returncode == 0, result.stderr
    assert "kind: Cluster\n" not in result.stdout and "kind: Deployment" in result.stdout


def documented_values(schema: dict[str, Any], values: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every value of values.yaml with its schema node (free-form maps such as resources count as one value)."""
    properties = schema.get("properties")
    if not properties or schema.get("additionalProperties") is not False or path.endswith("resources"):
        return [(path, schema)]
    assert isinstance(values, dict) and set(values) == set(properties), (path, set(properties) ^ set(values or {}))
    found = []
    for key, node in properties.items():
        found += documented_values(node, values[key], f"{path}.{key}" if path else key)
    return found


def test_every_value_is_typed_and_documented() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    found = documented_values(schema, values)
    assert len(found) > 40
    for path, node in found:
        assert node.get("description") and "type" in node, path
        assert f"`{path}`" in readme, f"{path} is missing from the chart README"


def notes(tmp_path: Path, *values: str) -> str:
    """NOTES.txt as `helm install` prints it (rendered as an ordinary template from a copy of the chart)."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / "templates" / "NOTES.txt").rename(copy / "templates" / "notes.txt")
    args = ["template", "sweetspot", str(copy), "--namespace", "sweetspot", "--show-only", "templates/notes.txt"]
    # --debug prints a template that is not YAML (plain text here) instead of refusing it.
    return helm(*args, "--debug", *(a for v in values for a in ("--set", v))).stdout


@pytest.mark.parametrize(
    ("values", "namespace"),
    [((), "ml-team"), (("rbac.scope=namespaced", "rbac.watchNamespaces={team-a}"), "team-a")],
    ids=["cluster scope", "namespaced"],
)
def test_notes_print_commands_that_work(tmp_path: Path, values: tuple[str, ...], namespace: str) -> None:
    """Every file the NOTES tell `kubectl apply -n NS -f` exists, pins no namespace of its own (kubectl would refuse
    the mismatch), and its studies are valid; the namespace is one the operator watches."""
    text = notes(tmp_path, *values)
    applies = re.findall(r"kubectl apply -n (\S+) -f (\S+)", text)
    assert applies == [(namespace, "examples/cluster-quickstart.yaml")], text
    for _, path in applies:
        documents = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
        assert all("namespace" not in d["metadata"] for d in documents), path
        assert parse_documents((ROOT / path).read_text(), path)
    assert f"kubectl get fts -n {namespace} -w" in text
