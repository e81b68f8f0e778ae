"""The generated CRD: committed copy up to date, structural, documented, and consistent with the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from sweetspot.api.crd import crd, crd_yaml
from sweetspot.api.resource import FineTuneStudy

from support.kube_schema import CrdValidator, apply_defaults

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "finetunestudies.sweetspot.dev.yaml"
Schema = dict[str, Any]


def _version() -> Schema:
    (version,) = crd()["spec"]["versions"]
    return version  # type: ignore[no-any-return]


def _walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == crd_yaml(), (
        "crds/ is stale: run `sweetspot crd > crds/finetunestudies.sweetspot.dev.yaml`"
    )


def test_names_scope_and_subresources() -> None:
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["fts"]
    assert spec["names"]["categories"] == ["sweetspot"]
    assert spec["scope"] == "Namespaced"
    assert _version()["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    assert "x-kubernetes-preserve-unknown-fields" not in root
    for path, node in _walk(root):
        assert "$ref" not in node and "const" not in node and "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        else:
            assert "type" in node, f"{path} has no type"
        assert not isinstance(node.get("exclusiveMinimum"), float), path


def test_every_field_is_documented() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    undocumented = [
        path
        for path, node in _walk(root)
        if path and not path.endswith(("[]", ".*")) and path != ".metadata" and not node.get("description")
    ]
    assert undocumented == []


def test_printer_columns_pick_conditions_by_type() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    assert {"Phase", "Complete", "Trials", "Best F1", "Rho", "Age"} <= set(columns)
    for column in columns.values():
        if "conditions" in column["jsonPath"]:
            assert "@.type==" in column["jsonPath"], column


def test_every_cel_rule_compiles() -> None:
    env = celpy.Environment()
    rules = [
        r["rule"]
        for _, node in _walk(_version()["schema"]["openAPIV3Schema"])
        for r in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 20
    for rule in rules:
        env.compile(rule)


def test_cluster_defaults_equal_model_defaults() -> None:
    minimal = {
        "apiVersion": "sweetspot.dev/v1alpha1",
        "kind": "FineTuneStudy",
        "metadata": {"name": "minimal"},
        "spec": {"model": {"builtin": "tiny"}, "dataset": {"train": {"builtin": "product-pages"}}},
    }
    schema = _version()["schema"]["openAPIV3Schema"]
    defaulted = apply_defaults(schema, minimal)
    from_model = FineTuneStudy.model_validate(minimal).model_dump(mode="json", exclude_none=True)
    # What the API server stores is exactly what the model fills in (lists and maps aside: absent is empty).
    assert _drop_empty(defaulted["spec"]) == _drop_empty(from_model["spec"])


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in ({}, [])}
    return value


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_the_cluster_schema_and_rules(path: Path) -> None:
    validator = CrdValidator(crd())
    studies = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "FineTuneStudy"]
    assert studies, f"{path.name} holds no FineTuneStudy"
    for document in studies:  # other objects beside them (a claim) are the cluster's own kinds
        assert validator.errors(document) == []


def test_the_cluster_refuses_immutable_changes_but_allows_budget_and_suspend(quickstart: dict[str, Any]) -> None:
    import copy

    validator = CrdValidator(crd())
    assert validator.errors(quickstart) == []
    allowed = copy.deepcopy(quickstart)
    allowed["spec"]["search"].update(maxTrials=12, parallelism=2)
    allowed["spec"]["suspend"] = True
    assert validator.errors(allowed, old=quickstart) == []
    for path, value in (
        (("model", "maxSequenceLength"), 256),
        (("dataset", "samples"), 100),
        (("objective", "target"), 0.9),
        (("search", "sampler"), "random"),
        (("search", "seed"), 8),
        (("search", "earlyEvaluation", "atFraction"), 0.5),
    ):
        changed = copy.deepcopy(quickstart)
        node = changed["spec"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        errors = validator.errors(changed, old=quickstart)
        field = "spec." + ".".join(path[:2] if path[0] == "search" else path[:1])
        assert [e.path for e in errors] == [field], errors
        assert "cannot change once the study exists" in errors[0].message


def test_the_cannot_change_message_names_only_fields_that_may_change() -> None:
    import re

    from pydantic.alias_generators import to_camel

    from sweetspot.api.spec import IMMUTABLE, FineTuneStudySpec, api_path, changeable

    fixed = {api_path(p) for p in IMMUTABLE}
    messages = [r.message for r in FineTuneStudySpec.rules if "cannot change" in r.message]
    assert len(messages) == len(IMMUTABLE)
    for message in messages:
        (listed,) = re.findall(r"\(only (.*) can\)", message)
        assert listed == changeable()
        named = set(re.split(r", | and |the rest of ", listed)) - {""}
        assert not named & fixed, message  # a field IMMUTABLE fixes whole is never said to change
        # Every top-level field is either fixed whole or named, so nothing that may change goes unsaid.
        assert named | fixed >= {to_camel(name) for name in FineTuneStudySpec.model_fields}, message
