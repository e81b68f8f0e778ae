"""The FineTuneStudy resource (`sweetspot.dev/v1alpha1`): one typed model for the operator, the local mode and
the CRD, assembled from the parts of this package."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from sweetspot.api.fields import DnsLabel
from sweetspot.api.rules import Model
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import FineTuneStudyStatus


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta Sweetspot reads; the rest (uid, resourceVersion, ...) is ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    name: DnsLabel
    """Study name; it prefixes trial Job names and labels, so it is a DNS label (at most 63 characters)."""
    namespace: DnsLabel = "default"
    """Namespace of the study."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


class FineTuneStudy(Model):
    """A FineTuneStudy resource."""

    api_version: Literal["sweetspot.dev/v1alpha1"]
    kind: Literal["FineTuneStudy"]
    metadata: ObjectMeta
    spec: FineTuneStudySpec
    status: FineTuneStudyStatus | None = None

    @property
    def key(self) -> str:
        """`namespace/name`, the study's identity across the operator, storage and metrics."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
