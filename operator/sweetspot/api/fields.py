"""Field types several parts of the spec share: names, paths, quantities and secret references."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
)

from sweetspot.api.rules import Model, Rule

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
# A path inside a volume or image with no `..` segment (no escape from the volume). Written without
# look-ahead because the API server checks it with RE2.
_SEGMENT = r"([^/.\x00][^/\x00]*|\.|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)"
SAFE_PATH = rf"^/?{_SEGMENT}(/{_SEGMENT})*/?$"
SafePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=SAFE_PATH)]

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


PATTERN_HINTS = {
    DNS_LABEL: "is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)",
    SAFE_PATH: "is not an allowed path (no '..' segments)",
    QUANTITY_PATTERN: "is not a Kubernetes quantity (such as 1, 500m, 16Gi)",
}
"""What a user should read instead of a regular expression."""


def _quantity_to_str(value: object) -> object:
    # Kubernetes accepts `1` and `"1"` alike for a quantity; keep one spelling.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(
        pattern=QUANTITY_PATTERN,
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,  # pydantic leaves it out after a BeforeValidator
        },
    ),
]


def _set(*names: str) -> Callable[[Any], bool]:
    """Python twin of CEL `has(...)` counting: how many of the named attributes are set."""
    return lambda obj: sum(getattr(obj, n) is not None for n in names) == 1


def _has_cel(*names: str) -> str:
    return " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in names) + " == 1"


def _only_with(field: str, required: str) -> Rule:
    return Rule(
        cel=f"!has(self.{field}) || has(self.{required})",
        message=f"{field} is only allowed together with {required}",
        field=field,
        holds=lambda o: getattr(o, _snake(field)) is None or getattr(o, _snake(required)) is not None,
    )


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


class SecretKeyRef(Model):
    """A key in a Secret in the study's namespace."""

    name: DnsLabel
    """Name of the Secret."""
    key: str = Field(default="url", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret (default `url`)."""


class TokenSecretRef(Model):
    """A key in a Secret in the study's namespace that holds an access token."""

    name: DnsLabel
    """Name of the Secret."""
    key: str = Field(default="token", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret (default `token`)."""


class VolumePath(Model):
    """A path on a PersistentVolumeClaim that is mounted into every trial pod."""

    pvc: DnsLabel
    """Name of the PersistentVolumeClaim, in the study's namespace."""
    path: SafePath = "."
    """Path inside the volume, relative to its root."""

    rules = (
        Rule(
            cel="!self.path.startsWith('/')",
            message="path must be relative to the volume root",
            field="path",
            holds=lambda o: not o.path.startswith("/"),
        ),
    )
