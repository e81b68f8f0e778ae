"""The operator-trainer contract: one config in, one result out, both bounded and named like the API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from sweetspot.api.search import SearchSpace
from sweetspot.contract import (
    TERMINATION_MESSAGE_LIMIT,
    Evaluation,
    Hyperparameters,
    StageResult,
    TrialConfig,
)


def test_every_searchable_parameter_is_a_trainer_hyperparameter() -> None:
    searchable = {to_camel(name) for name in SearchSpace.model_fields}
    known = {field.alias for field in Hyperparameters.model_fields.values()}
    assert searchable <= known


def test_unknown_hyperparameters_are_rejected() -> None:
    with pytest.raises(ValidationError, match="temperature"):
        TrialConfig.model_validate(
            {
                "study": "s",
                "trial": 0,
                "stage": "early",
                "model": {"builtin": "tiny"},
                "train": {"builtin": "product-pages"},
                "hyperparameters": {"temperature": 0.7},
            }
        )


def _evaluation(step: int, attributes: int) -> Evaluation:
    # Ordered as the trainer orders them: most gold values first.
    support = {f"attribute {i:03d}": 1000 - i for i in range(attributes)}
    per = dict.fromkeys(support, 0.5)
    return Evaluation(
        step=step,
        fraction=step / 100,
        f1=0.5,
        precision=0.5,
        recall=0.5,
        macro_f1=0.5,
        accuracy=0.5,
        attribute_f1=per,
        attribute_support=support,
        attribute_accuracy=per,
        category_f1={f"category {i}": 0.5 for i in range(10)},
        token_f1=0.5,
        loss=1.0,
    )


@pytest.mark.parametrize(("evaluations", "attributes"), [(2, 5), (11, 5), (11, 30), (2, 64), (3, 300)])
def test_termination_message_fits_in_4_kib_and_keeps_the_headline(evaluations: int, attributes: int) -> None:
    result = StageResult(
        study="s",
        trial=3,
        stage="full",
        status="ok",
        message="m" * 3000,
        evaluations=[_evaluation(10 * (i + 1), attributes) for i in range(evaluations)],
    )
    message = result.termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = StageResult.model_validate_json(message) if len(message) > 0 else None
    assert parsed is not None
    assert (parsed.trial, parsed.status) == (3, "ok")
    assert parsed.evaluations[0].step == 10
    last = parsed.evaluations[-1]
    assert last.step == 10 * evaluations and last.f1 == 0.5
    # Per-attribute F1 is cut from the rarest end, never in the middle: what is left is the most supported prefix.
    kept = list(last.attribute_f1)
    assert kept == list(result.evaluations[-1].attribute_f1)[: len(kept)]
    assert list(last.attribute_support) == kept
    if attributes <= 30:
        assert len(kept) == attributes
