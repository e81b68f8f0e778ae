"""The evaluator both task heads share."""

from __future__ import annotations

import pytest

from sweetspot_trainer.evaluate import normalize, null_baseline, score, token_f1
from sweetspot_trainer.generative import parse_answer


def test_normalisation_folds_case_and_whitespace() -> None:
    assert normalize("  Navy   Blue ") == "navy blue"
    assert normalize("   ") is None
    assert normalize(None) is None


def test_token_f1() -> None:
    assert token_f1("Ultra Blender", "ultra blender") == 1.0
    assert token_f1("Ultra Blender X200", "Ultra Blender") == pytest.approx(0.8)
    assert token_f1(None, None) == 1.0
    assert token_f1("x", None) == 0.0


def test_scores_per_attribute_and_on_present_rows() -> None:
    golds = [{"brand": "Acme", "rating": None}, {"brand": "Zen", "rating": "4.5"}, {"brand": None, "rating": None}]
    predictions = [{"brand": "acme"}, {"brand": "Zen", "rating": None}, {"brand": "Oops"}]
    scores = score(predictions, golds, ["brand", "rating"])
    assert scores.attribute_accuracy == {"brand": pytest.approx(2 / 3), "rating": pytest.approx(2 / 3)}
    # Always-null on the rare attribute looks fine over all rows but scores 0 where it is present.
    assert scores.present_accuracy == {"brand": 1.0, "rating": 0.0}
    assert scores.accuracy == pytest.approx(2 / 3)


def test_null_baseline_is_the_share_of_absent_values() -> None:
    golds = [{"a": "x", "b": None}, {"a": None, "b": None}]
    assert null_baseline(golds, ["a", "b"]) == pytest.approx(0.75)


def test_score_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 rows"):
        score([{}, {}], [{"a": "x"}], ["a"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"brand": "Acme", "price": null}', {"brand": "Acme", "price": None}),
        ('  {"brand": "Acme"} ', {"brand": "Acme", "price": None}),
        ('{"brand": 5}', {"brand": "5", "price": None}),
        ('{"brand": "Acme"', None),
        ("[1]", None),
        ("", None),
    ],
)
def test_generated_answers_parse_or_count_as_invalid(text: str, expected: object) -> None:
    assert parse_answer(text, ["brand", "price"]) == expected
