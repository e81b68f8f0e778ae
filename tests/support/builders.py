"""Builders of the records unit tests feed the pure core: by keyword, with defaults a test overrides only where it
matters (a field added to or reordered in `Outcome` then breaks nothing silently)."""

from __future__ import annotations

from typing import Any

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.records import Outcome


def study_spec(search: dict[str, Any] | None = None, *, samples: int | None = None, **top: Any) -> FineTuneStudySpec:
    """The smallest valid spec: the built-in tiny model on the built-in pages. `search` is `spec.search`,
    `samples` the rows each trial trains on, and `top` any other field of `spec` by its API name."""
    dataset: dict[str, Any] = {"train": {"builtin": "product-pages"}} | ({"samples": samples} if samples else {})
    document = {"model": {"builtin": "tiny"}, "dataset": dataset} | ({"search": search} if search else {}) | top
    return FineTuneStudySpec.model_validate(document)


def outcome(
    *,
    f1: float = 0.0,
    loss: float = 0.5,
    accuracy: float | None = None,
    seconds: float = 10.0,
    gpu_seconds: float = 0.0,
    step: int = 20,
    planned_steps: int = 100,
    samples: int = 300,
    **more: Any,
) -> Outcome:
    """A finished stage's record. Accuracy and token F1 are `f1` unless given; `more` sets any other field of
    `Outcome` by name (`attribute_f1`, `curve`, `precision`, ...)."""
    score = f1 if accuracy is None else accuracy
    return Outcome(
        accuracy=score,
        loss=loss,
        token_f1=more.pop("token_f1", score),
        attribute_accuracy=more.pop("attribute_accuracy", {}),
        seconds=seconds,
        gpu_seconds=gpu_seconds,
        step=step,
        planned_steps=planned_steps,
        samples=samples,
        f1=f1,
        **more,
    )
