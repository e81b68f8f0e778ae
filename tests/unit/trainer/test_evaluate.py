"""The evaluator both task heads share."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweetspot_trainer.data import load_path
from sweetspot_trainer.evaluate import Counts, case, normalize, null_baseline, score, token_f1
from sweetspot_trainer.generative import parse_answer

AE_110K = Path(__file__).parents[3] / "examples" / "ae-110k"


def test_normalisation_folds_case_and_whitespace() -> None:
    assert normalize("  Navy   Blue ") == "navy blue"
    assert normalize("   ") is None
    assert normalize(None) is None


def test_token_f1() -> None:
    assert token_f1("Ultra Blender", "ultra blender") == 1.0
    assert token_f1("Ultra Blender X200", "Ultra Blender") == pytest.approx(0.8)
    assert token_f1(None, None) == 1.0
    assert token_f1("x", None) == 0.0


def test_each_pair_falls_in_exactly_one_case() -> None:
    assert case(None, None) == Counts(nn=1)
    assert case("Acme", None) == Counts(nv=1)
    assert case(None, "Acme") == Counts(vn=1)
    assert case(" acme ", "Acme") == Counts(vc=1)  # normalised: case and whitespace
    assert case("Zen", "Acme") == Counts(vw=1)
    assert case("", "Acme") == Counts(vn=1)  # an empty answer is null
    assert case("9 g", ("9g", "9 g")) == Counts(vc=1)  # any acceptable value counts
    assert case("9 grams", ("9g", "9 g")) == Counts(vw=1)


def test_micro_scores_over_applicable_pairs_worked_by_hand() -> None:
    """Three titles, two categories. Absent keys are never scored, whatever the model says there.

    Lure row 1:  Brand Name VC, Weight VW, Length VN          (Color absent: the 'red' prediction is ignored)
    Lure row 2:  Brand Name NV, Weight NN
    Rod row 3:   Material VC (one of two acceptable values), Power NN
    Cases: NN 2, NV 1, VN 1, VC 2, VW 1 (7 pairs).
    precision = VC / (NV + VC + VW) = 2/4; recall = VC / (VN + VC + VW) = 2/4; F1 = 0.5; accuracy = 4/7.
    """
    golds = [
        {"Brand Name": "SEAPESCA", "Weight": "9g", "Length": "150mm"},
        {"Brand Name": None, "Weight": None},
        {"Material": ["Carbon", "Carbon Fiber"], "Power": None},
    ]
    predictions = [
        {"Brand Name": "seapesca", "Weight": "19g", "Length": None, "Color": "red"},
        {"Brand Name": "Oops", "Weight": None},
        {"Material": "carbon fiber", "Power": None},
    ]
    scores = score(predictions, golds, ["Lure", "Lure", "Rod"])
    assert scores.counts == Counts(nn=2, nv=1, vn=1, vc=2, vw=1)
    assert (scores.precision, scores.recall, scores.f1) == (0.5, 0.5, 0.5)
    assert scores.accuracy == pytest.approx(4 / 7)
    assert "Color" not in scores.attribute_counts
    # Per attribute (ordered by gold values, most first): Brand Name VC+NV -> P 1/2, R 1/1 -> F1 2/3.
    assert list(scores.attribute_counts) == ["Brand Name", "Length", "Material", "Weight", "Power"]
    assert scores.attribute_counts["Brand Name"].f1 == pytest.approx(2 / 3)
    assert scores.attribute_counts["Weight"].f1 == 0.0 and scores.attribute_counts["Weight"].accuracy == 0.5
    assert scores.attribute_counts["Material"].f1 == 1.0
    # Per category: Lure VC 1, VW 1, VN 1, NV 1, NN 1 -> P 1/3, R 1/3; Rod VC 1, NN 1 -> 1.0.
    assert scores.category_counts["Lure"].f1 == pytest.approx(1 / 3)
    assert scores.category_counts["Rod"].f1 == 1.0
    # Macro over (category, attribute) with a pair that is not NN: Lure/Brand 2/3, Lure/Weight 0, Lure/Length 0,
    # Rod/Material 1; Rod/Power is only NN and does not count.
    assert scores.macro_f1 == pytest.approx((2 / 3 + 0 + 0 + 1) / 4)
    # Token F1: VC 1, VW 0 ("19g" vs "9g"), VN 0, NV 0, NN 1, VC 1 (best of the alternatives), NN 1.
    assert scores.token_f1 == pytest.approx(4 / 7)


def test_the_always_null_baseline_scores_f1_zero_whatever_the_share_of_nulls() -> None:
    golds = [{"a": "x", "b": None}, {"a": None, "b": None}, {"c": None}]
    nulls = score([{} for _ in golds], golds)
    assert nulls.f1 == 0.0 and nulls.precision == 0.0 and nulls.recall == 0.0
    assert nulls.counts == Counts(nn=4, vn=1)
    assert null_baseline(golds) == pytest.approx(4 / 5)


def test_a_category_with_no_value_at_all_is_left_out_of_macro_f1() -> None:
    golds = [{"Pickup": None}, {"Pickup": None}, {"Brand": "Acme"}]
    predictions = [{"Pickup": None}, {"Pickup": None}, {"Brand": "Acme"}]
    scores = score(predictions, golds, ["Guitar", "Guitar", "Kettle"])
    assert scores.category_counts["Guitar"] == Counts(nn=2) and scores.category_counts["Guitar"].f1 == 0.0
    assert scores.macro_f1 == 1.0  # only Kettle/Brand has a pair that is not NN
    assert scores.f1 == 1.0 and scores.accuracy == 1.0


def test_scoring_can_be_restricted_to_some_attributes() -> None:
    golds = [{"a": "x", "b": "y"}]
    scores = score([{"a": "x", "b": "z"}], golds, attributes=["a"])
    assert scores.counts == Counts(vc=1) and list(scores.attribute_counts) == ["a"]


def test_score_rejects_mismatched_rows_and_nothing_to_score() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 rows"):
        score([{}, {}], [{"a": "x"}])
    with pytest.raises(ValueError, match="nothing to score"):
        score([{"a": "x"}], [{}])


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


def test_on_the_real_ae_110k_test_titles_always_null_scores_f1_zero() -> None:
    """524 real titles, 1,482 annotated pairs, 1,248 with a value (examples/ae-110k/README.md)."""
    rows = load_path(AE_110K / "test.jsonl")
    golds = [row.output for row in rows]
    nulls = score([{} for _ in rows], golds, [row.category for row in rows])
    assert nulls.counts == Counts(nn=1482 - 1248, vn=1248)
    assert nulls.f1 == 0.0 and len(nulls.category_counts) == 10
    assert null_baseline(golds) == pytest.approx(234 / 1482)
    # Extracting every gold value (the first of its alternatives) is perfect.
    perfect = score([{a: row.first_value(a) for a in row.output} for row in rows], golds)
    assert perfect.f1 == 1.0 and perfect.accuracy == 1.0
