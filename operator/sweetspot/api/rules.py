"""Cross-field rules, declared once per model: a Kubernetes CEL expression (enforced by the API server as
`x-kubernetes-validations`) next to the same check in Python (enforced by `sweetspot validate`, the operator and
local mode, with the field path in the error). Tests evaluate both on the same manifests so they cannot drift apart.

`Model` is every API model's base: strict, as the API server is (no type coercion, unknown fields are errors), and
its docstrings become the CRD's `kubectl explain` text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    model_validator,
)
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, stated once for the API server (CEL) and once for Python."""

    cel: str
    """Kubernetes CEL expression over `self` (the object the rule is declared on); true means valid."""
    message: str
    field: str
    """Dotted path, relative to the object, of the field the error names ('' for the object itself)."""
    holds: Callable[[Any], bool]
    """The same rule over the validated Python model."""
    transition: bool = False
    """A rule over `oldSelf` (updates only): the API server enforces it; the operator checks it itself."""


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class BrokenRulesError(ValueError):
    """Raised by a model validator; carries every broken rule so each becomes its own error line."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field or '<object>'}: {v.message}" for v in violations))


def _schema_extra(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, **({"fieldPath": "." + r.field} if r.field else {})} for r in rules
        ]


class Model(BaseModel):
    """Base of every API object: camelCase names, strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,  # JSON (and so the API server) cannot carry them
        use_attribute_docstrings=True,
        json_schema_extra=_schema_extra,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = [Violation(r.field, r.message) for r in type(self).rules if not r.transition and not r.holds(self)]
        if broken:
            raise BrokenRulesError(broken)
        return self
