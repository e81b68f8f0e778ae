"""Builders of the records tests feed the pure core and the fakes report: by keyword, with defaults a test overrides
only where it matters (a field added to or reordered in `Outcome`, `Evaluation` or `StageResult` then breaks nothing
silently)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.contract import Evaluation, StageResult
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
    attributes: Sequence[str] = (),
    **more: Any,
) -> Outcome:
    """A finished stage's record. Accuracy and token F1 are `f1` unless given, and so is the F1 and accuracy of each
    of `attributes`; `more` sets any other field of `Outcome` by name (`attribute_f1`, `curve`, `precision`, ...)."""
    score = f1 if accuracy is None else accuracy
    if attributes:
        more.setdefault("attribute_f1", dict.fromkeys(attributes, f1))
        more.setdefault("attribute_accuracy", dict.fromkeys(attributes, score))
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


def evaluation(*, score: float, loss: float = 0.5, step: int = 20, fraction: float = 0.2, **more: Any) -> Evaluation:
    """One evaluation of a stage whose F1, precision, recall, macro-F1, accuracy and token F1 all are `score`; `more`
    sets any other field of `Evaluation` by name (`attribute_f1`, `train_seconds`, ...)."""
    return Evaluation(
        step=step, fraction=fraction, f1=score, precision=score, recall=score, macro_f1=score, accuracy=score,
        token_f1=score, loss=loss, **more,
    )  # fmt: skip


def stage_result(
    *,
    stage: str,
    trial: int = 0,
    study: str = "s",
    evaluations: Sequence[Evaluation] = (),
    status: str = "ok",
    step: int | None = None,
    planned_steps: int = 100,
    seconds: float = 10.0,
    samples: int = 300,
    **more: Any,
) -> StageResult:
    """A stage's result as the trainer reports it; its step is its last evaluation's unless given. `more` sets any
    other field of `StageResult` by name."""
    return StageResult(
        study=study,
        trial=trial,
        stage=stage,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        step=step if step is not None else evaluations[-1].step if evaluations else 0,
        planned_steps=planned_steps,
        evaluations=list(evaluations),
        seconds=seconds,
        samples=samples,
        **more,
    )
