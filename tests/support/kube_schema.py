"""What a Kubernetes API server does with a custom resource, for tests: prune, default, validate, run CEL rules.

No API server runs here, so this plays its part on the CRD that `sweetspot crd` generates:
- pruning of fields the structural schema does not declare (what a server does on every write without
  `fieldValidation=Strict`);
- structural defaulting (`default` applied where a field is absent, nested objects included);
- OpenAPI v3.0 validation (jsonschema's Draft 4 has the same boolean `exclusiveMinimum`), with unknown
  fields rejected as `kubectl apply --validate=strict` (the default since kubectl 1.27) does;
- `x-kubernetes-list-type: set` uniqueness;
- `x-kubernetes-validations` CEL rules, evaluated with cel-python, with values typed by the schema as the
  API server types them (a `number` is always a double).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

Schema = dict[str, Any]


@dataclass(frozen=True)
class ApiError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    if not part.replace("_", "").replace("-", "").isalnum():
        return f'{path}["{part}"]'
    return f"{path}.{part}" if path else part


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill in defaults the way the API server does (recursively, absent fields only), after dropping explicit
    nulls of fields that are not `nullable` (the API server prunes those before defaulting)."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value and value[name] is None and not child.get("nullable"):
                del value[name]
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default(child, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in schema.get("properties", {}):
                    _default(extra, item)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(schema["items"], item)


def prune(schema: Schema, value: Any) -> Any:
    """`value` without the fields `schema` does not declare, as the API server stores a custom resource (objects
    under `x-kubernetes-preserve-unknown-fields` keep theirs; a value of the wrong type is left for validation)."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return copy.deepcopy(value)
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        pruned = {}
        for key, item in value.items():
            if key in properties:
                pruned[key] = prune(properties[key], item)
            elif isinstance(extra, dict):
                pruned[key] = prune(extra, item)
            elif extra is True:
                pruned[key] = copy.deepcopy(item)
        return pruned
    if isinstance(value, list) and "items" in schema:
        return [prune(schema["items"], item) for item in value]
    return copy.deepcopy(value)


def _closed(schema: Schema) -> Schema:
    """A copy in which objects with declared properties reject unknown fields (strict field validation)."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    # jsonschema applies `pattern` to strings only, as the API server does for int-or-string.
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
        out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _closed(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = _closed(schema["items"])
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    # Kubernetes' CEL list library (`isSorted`), not part of standard CEL.
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


class CrdValidator:
    """Validates objects against one version of a CRD, as an API server would on create."""

    def __init__(self, crd: Schema, version: str | None = None) -> None:
        versions = crd["spec"]["versions"]
        chosen = next(v for v in versions if version in (None, v["name"]))
        self.schema: Schema = chosen["schema"]["openAPIV3Schema"]
        self._validator = jsonschema.Draft4Validator(_closed(self.schema))
        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}
        self._sections: dict[str, jsonschema.Draft4Validator] = {}

    def errors(self, obj: Any, old: Any = None) -> list[ApiError]:
        """Every error the API server would report for creating `obj`, or for updating `old` to `obj` (schema
        first, then CEL rules; transition rules over `oldSelf` only on updates)."""
        obj = apply_defaults(self.schema, obj)
        old = apply_defaults(self.schema, old) if old is not None else None
        schema_errors = [error for e in self._validator.iter_errors(obj) for error in _as_api_errors(e)]
        if schema_errors:
            return sorted(schema_errors, key=str)
        found: list[ApiError] = []
        self._run_rules(self.schema, obj, old, "", found)
        return found

    def admit(self, obj: Any, old: Any = None) -> tuple[Any, list[ApiError]]:
        """What the API server stores for a create (`old` None) or an update of `old` to `obj`, and the errors that
        refuse it (422). Fields the schema does not declare are pruned, defaults applied, then each top-level
        section that changed is validated, schema and CEL rules (unchanged ones are ratcheted, as a server
        with CRDValidationRatcheting does; validating an unchanged spec's CEL rules on every status write would
        cost the tests a lot for nothing)."""
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        stored = apply_defaults(self.schema, prune(self.schema, obj))
        if isinstance(stored, dict) and metadata is not None:
            stored["metadata"] = copy.deepcopy(metadata)  # ObjectMeta is the server's own, never pruned here
        found: list[ApiError] = []
        for name, section in self.schema.get("properties", {}).items():
            if name == "metadata" or name not in stored:
                continue
            before = old.get(name) if isinstance(old, dict) else None
            if old is not None and before is not None and apply_defaults(section, before) == stored[name]:
                continue
            errors = [
                ApiError(f"{name}.{e.path}" if e.path else name, e.message)
                for error in self._section(name).iter_errors(stored[name])
                for e in _as_api_errors(error)
            ]
            if not errors:
                self._run_rules(section, stored[name], before, name, errors)
            found += errors
        if old is None and not found:
            for rule in self.schema.get("x-kubernetes-validations", []):  # the root's own rules (metadata.name)
                result = self._program(rule["rule"]).evaluate({"self": to_cel(self.schema, stored)})
                if not bool(result):
                    found.append(ApiError("", rule.get("message", rule["rule"])))
        required = [n for n in self.schema.get("required", []) if not isinstance(stored, dict) or n not in stored]
        found += [ApiError(n, "Required value") for n in required]
        return stored, sorted(found, key=str)

    def _section(self, name: str) -> jsonschema.Draft4Validator:
        if name not in self._sections:
            self._sections[name] = jsonschema.Draft4Validator(_closed(self.schema["properties"][name]))
        return self._sections[name]

    def _program(self, rule: str) -> Any:
        if rule not in self._programs:
            self._programs[rule] = self._env.program(self._env.compile(rule), functions={"isSorted": _is_sorted})
        return self._programs[rule]

    def _run_rules(self, schema: Schema, value: Any, old: Any, path: str, found: list[ApiError]) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            context = {"self": to_cel(schema, value)}
            if "oldSelf" in rule["rule"]:
                if old is None:
                    continue  # transition rules run on updates only
                context["oldSelf"] = to_cel(schema, old)
            result = self._program(rule["rule"]).evaluate(context)
            if result is not True and not (isinstance(result, celtypes.BoolType) and bool(result)):
                where = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
                found.append(ApiError(where.lstrip("."), rule.get("message", rule["rule"])))
        if isinstance(value, dict):
            for name, child in schema.get("properties", {}).items():
                if name in value:
                    previous = old.get(name) if isinstance(old, dict) else None
                    self._run_rules(child, value[name], previous, _join(path, name), found)
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self._run_rules(schema["items"], item, None, _join(path, index), found)


def _as_api_errors(error: jsonschema.ValidationError) -> list[ApiError]:
    """Name the field itself, as the API server does (`spec.model: Required value`)."""
    path = _path(error.absolute_path)
    if error.validator == "required":
        missing = [n for n in error.validator_value if n not in error.instance]
        return [ApiError(_join(path, n), "Required value") for n in missing]
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [ApiError(_join(path, k), "field not declared in schema") for k in error.instance if k not in known]
    return [ApiError(path, error.message)]


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path = _join(path, part)
    return path


def to_cel(schema: Schema, value: Any) -> Any:
    """A JSON value as CEL sees it under `schema`: numbers typed by the schema, not by their spelling."""
    kind = schema.get("type")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        return celtypes.MapType({celtypes.StringType(k): to_cel(props.get(k, extra), v) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([to_cel(schema.get("items", {}), v) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    return value
