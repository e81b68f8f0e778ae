"""A stage's costs (weights trained and held, peak memory, time per row) survive the 4 KiB termination message: the
trimming drops per-attribute detail and middle evaluations, never top-level scalars or the last evaluation."""

from __future__ import annotations

import pytest

from sweetspot.contract import TERMINATION_MESSAGE_LIMIT, Evaluation, StageResult

from support import builders


def evaluation(step: int, attributes: int) -> Evaluation:
    per = {f"attribute {i:03d}": 0.5 for i in range(attributes)}
    return builders.evaluation(
        score=0.5,
        loss=1.0,
        step=step,
        fraction=step / 100,
        attribute_f1=per,
        attribute_support=dict.fromkeys(per, 10),
        attribute_accuracy=per,
        ms_per_row=1.25 + step,
    )


@pytest.mark.parametrize(("evaluations", "attributes"), [(2, 5), (11, 30), (3, 300)])
def test_the_costs_survive_the_termination_message(evaluations: int, attributes: int) -> None:
    result = StageResult(
        study="s",
        trial=0,
        stage="full",
        status="ok",
        message="m" * 3000,
        evaluations=[evaluation(10 * (i + 1), attributes) for i in range(evaluations)],
        trainable_parameters=77_963,
        total_parameters=22_647_574,
        peak_memory_bytes=700_035_072,
    )
    message = result.termination_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = StageResult.model_validate_json(message)
    assert (parsed.trainable_parameters, parsed.total_parameters, parsed.peak_memory_bytes) == (
        77_963,
        22_647_574,
        700_035_072,
    )
    assert parsed.evaluations[-1].ms_per_row == 1.25 + 10 * evaluations
    assert all(e.ms_per_row == 1.25 + e.step for e in parsed.evaluations)
