"""The operator-trainer contract: one config in, one result out, both bounded and named like the API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from sweetspot.api import SearchSpace
from sweetspot.contract import TERMINATION_MESSAGE_LIMIT, Evaluation, Hyperparameters, StageResult, TrialConfig


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
    per = {f"attribute_{i:02d}": 0.5 for i in range(attributes)}
    return Evaluation(
        step=step,
        fraction=step / 100,
        accuracy=0.5,
        attribute_accuracy=per,
        present_accuracy=per,
        token_f1=0.5,
        loss=1.0,
    )


@pytest.mark.parametrize(("evaluations", "attributes"), [(2, 5), (11, 5), (11, 30), (2, 64)])
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
    assert parsed.evaluations[-1].step == 10 * evaluations
