"""Generate the FineTuneStudy CustomResourceDefinition from the API model (`sweetspot crd`).

Pydantic writes JSON Schema (2020-12); the API server wants a *structural* OpenAPI v3.0 schema. The
translation inlines `$ref`s, turns optional fields (`X | null`) into plain optional properties, spells
exclusive bounds the OpenAPI 3.0 way, drops what structural schemas forbid (`additionalProperties: false`
next to `properties`, `title`, `const`), and keeps every description, default, enum and bound.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from sweetspot.api.names import GROUP, KIND, PLURAL, VERSION
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import FineTuneStudyStatus

JsonSchema = dict[str, Any]

_DROPPED_KEYS = {"title", "$schema"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Publish defaults made by `default_factory` (nested objects) so the API server fills them in too.

    A nested object's default is only what differs from its own fields' defaults: the API server then
    applies the inner defaults itself, as it does for `default: {}`.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default_factory" in schema:
            value = schema["default_factory"]()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            return NoDefault  # empty lists and maps: absent means empty
        default = schema.get("default", NoDefault)
        return NoDefault if default is None else default


def openapi_schema(model: type[BaseModel]) -> JsonSchema:
    """The structural OpenAPI v3.0 schema of a model, as a CRD embeds it."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    definitions = raw.pop("$defs", {})
    return _structural(raw, definitions)


def _structural(node: JsonSchema, definitions: dict[str, JsonSchema]) -> JsonSchema:
    node = dict(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        # The field's own description and default win over the referenced model's.
        node = {**_structural(target, definitions), **node}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"a union of {len(branches)} types has no structural schema: {branches}")
        node = {**_structural(branches[0], definitions), **node}
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound in ("Minimum", "Maximum"):
        exclusive = node.get(f"exclusive{bound}")
        if isinstance(exclusive, int | float) and not isinstance(exclusive, bool):
            node[bound.lower()] = exclusive
            node[f"exclusive{bound}"] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    if "properties" in node:
        node["properties"] = {k: _structural(v, definitions) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], definitions)
    if "items" in node:
        node["items"] = _structural(node["items"], definitions)
    if "description" in node:
        node["description"] = " ".join(node["description"].split())  # docstrings wrap; kubectl explain re-wraps
    return {k: node[k] for k in sorted(node, key=_key_order)}


_FIRST_KEYS = ("type", "description", "default", "enum")


def _key_order(key: str) -> tuple[int, str]:
    # Read like `kubectl explain`: what it is first, then the constraints, then the children.
    if key in _FIRST_KEYS:
        return (_FIRST_KEYS.index(key), "")
    if key in ("required", "properties", "additionalProperties", "items"):
        return (len(_FIRST_KEYS) + 1, key)
    return (len(_FIRST_KEYS), key)


class _NoAliasDumper(yaml.SafeDumper):
    """Spell shared sub-trees out in full: anchors and aliases confuse readers and some tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _condition_column(name: str, condition: str, description: str) -> JsonSchema:
    # Pick a condition by type, never by position: the list order is not stable.
    return {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
        "description": description,
    }


def crd() -> JsonSchema:
    """The FineTuneStudy CustomResourceDefinition."""
    spec_schema = openapi_schema(FineTuneStudySpec)
    status_schema = openapi_schema(FineTuneStudyStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "sweetspot", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["fts"],
                "categories": ["sweetspot"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Phase",
                            "type": "string",
                            "jsonPath": ".status.phase",
                            "description": "Where the study is.",
                        },
                        _condition_column("Ready", "Ready", "Whether the study is progressing normally."),
                        {
                            "name": "Complete",
                            "type": "integer",
                            "jsonPath": ".status.trials.complete",
                            "description": "Trials that finished their last stage.",
                        },
                        {
                            "name": "Trials",
                            "type": "integer",
                            "jsonPath": ".spec.search.maxTrials",
                            "description": "Trials the search may run.",
                        },
                        {
                            "name": "Best F1",
                            "type": "number",
                            "jsonPath": ".status.best.finalF1",
                            "description": "Best final micro-F1 so far.",
                        },
                        {
                            "name": "Rho",
                            "type": "number",
                            "jsonPath": ".status.earlyFinalCorrelation",
                            "description": "Spearman correlation of the early signal and the final objective.",
                        },
                        _condition_column("Storage", "StorageReachable", "Whether the Optuna storage answers."),
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A FineTuneStudy searches LoRA fine-tuning hyperparameters for a model "
                            "and dataset, judging trials early, and sweeps training-set sizes to find where more "
                            "data stops paying.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "Versioned schema of this object: sweetspot.dev/v1alpha1.",
                                },
                                "kind": {"type": "string", "description": "FineTuneStudy."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            # Names prefix Job names and label values, so they are DNS labels.
                            "x-kubernetes-validations": [
                                {
                                    "rule": "size(self.metadata.name) <= 63",
                                    "message": "metadata.name must be at most 63 characters",
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML document committed under `crds/`."""
    header = "# Generated by `sweetspot crd` from operator/sweetspot/api/. Do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliasDumper, sort_keys=False, width=120, allow_unicode=True)


# --- the field reference (docs/reference.md) -------------------------------------------------------------

_REFERENCE_HEADER = """\
# The FineTuneStudy resource: every field

Generated by `make crd` (`sweetspot crd --reference`) from the same model as the CRD, so it is exactly what the API
server and `sweetspot validate` accept; `kubectl explain finetunestudy.spec --recursive` prints the same
descriptions. A field without a default is optional unless the object lists it under "required". Rules across
fields are listed under each object (the CRD's CEL rules; `sweetspot validate` checks the same ones). Examples:
`examples/quickstart.yaml` (a laptop), `examples/cluster-quickstart.yaml` (a small cluster study),
`examples/product-attributes.yaml` (GPUs, volumes, Kueue).

[Back to the README](../README.md)
"""


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _type(schema: JsonSchema) -> str:
    kind = schema.get("type", "any")
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    if schema.get("x-kubernetes-int-or-string"):
        return "quantity"
    return str(kind)


def _bounds(schema: JsonSchema) -> str:
    """Numeric bounds as `≥ 0, < 1` (OpenAPI 3.0 spells an exclusive bound as a flag beside it)."""
    low = f"{'>' if schema.get('exclusiveMinimum') else '≥'} {schema['minimum']}" if "minimum" in schema else ""
    high = f"{'<' if schema.get('exclusiveMaximum') else '≤'} {schema['maximum']}" if "maximum" in schema else ""
    return ", ".join(b for b in (low, high) if b)


def _objects(schema: JsonSchema, path: str) -> list[tuple[str, JsonSchema]]:
    """Every object with properties under `schema`, depth first, by its dotted path (`[]` for list items)."""
    found = [(path, schema)] if schema.get("properties") else []
    for name, child in schema.get("properties", {}).items():
        found += _objects(child, f"{path}.{name}")
    if "items" in schema:
        found += _objects(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _objects(schema["additionalProperties"], f"{path}.*")
    return found


def _anchor(path: str) -> str:
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_")


def reference_markdown() -> str:
    """The field reference: one table per object of `spec` and `status`, every field with its type, default and
    description, then the object's rules."""
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    sections = [_REFERENCE_HEADER]
    for top in ("spec", "status"):
        for path, schema in _objects(root[top], top):
            lines = [f"## `{path}`", "", _cell(schema.get("description", "")), ""]
            required = schema.get("required", [])
            if required:
                lines += ["Required: " + ", ".join(f"`{name}`" for name in required) + ".", ""]
            lines += ["| Field | Type | Default | Description |", "|---|---|---|---|"]
            for name, child in schema["properties"].items():
                nested = [p for p, _ in _objects(child, f"{path}.{name}")]
                label = f"[`{name}`](#{_anchor(nested[0])})" if nested else f"`{name}`"
                default = child.get("default")
                shown = "" if default is None else f"`{json.dumps(default, ensure_ascii=False)}`"
                described = _cell(child.get("description", ""))
                bounds = _bounds(child)
                lines.append(f"| {label} | {_type(child)} | {shown} | {described}{f' ({bounds})' if bounds else ''} |")
            rules = [rule["message"] for rule in schema.get("x-kubernetes-validations", [])]
            if rules:
                lines += ["", "Rules: " + "; ".join(_cell(r) for r in rules) + "."]
            sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)
