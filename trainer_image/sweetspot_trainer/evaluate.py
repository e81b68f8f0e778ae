"""Scoring extracted attributes: one evaluator for both task heads.

Values are compared after normalisation: surrounding and repeated whitespace collapsed, and case folded
(`"Navy  Blue"` equals `"navy blue"`); an empty string is null. Reported:
- per-attribute accuracy over all rows (null predicted for a null gold value counts as right);
- per-attribute accuracy over the rows where the attribute is present, so that a model always answering
  null cannot look good on a rare attribute;
- overall accuracy, the mean of the per-attribute accuracies;
- token F1 of the values (a finer signal than exact match: many early trials tie on accuracy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Values = Mapping[str, str | None]


def normalize(value: str | None) -> str | None:
    if value is None:
        return None
    folded = " ".join(value.split()).casefold()
    return folded or None


def token_f1(predicted: str | None, gold: str | None) -> float:
    p, g = normalize(predicted), normalize(gold)
    if p is None or g is None:
        return 1.0 if p == g else 0.0
    common = sum((Counter(p.split()) & Counter(g.split())).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p.split()), common / len(g.split())
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Scores:
    accuracy: float
    attribute_accuracy: dict[str, float]
    present_accuracy: dict[str, float]
    token_f1: float


def score(predictions: Sequence[Values], golds: Sequence[Values], attributes: Sequence[str]) -> Scores:
    """Compare predicted and gold values row by row; missing attributes count as null."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} rows")
    if not golds or not attributes:
        raise ValueError("nothing to score: no rows or no attributes")
    accuracy: dict[str, float] = {}
    present: dict[str, float] = {}
    f1_total = 0.0
    for attribute in attributes:
        right = right_present = present_rows = 0
        for predicted, gold in zip(predictions, golds, strict=True):
            p, g = normalize(predicted.get(attribute)), normalize(gold.get(attribute))
            right += p == g
            f1_total += token_f1(p, g)
            if g is not None:
                present_rows += 1
                right_present += p == g
        accuracy[attribute] = right / len(golds)
        if present_rows:
            present[attribute] = right_present / present_rows
    return Scores(
        accuracy=sum(accuracy.values()) / len(attributes),
        attribute_accuracy=accuracy,
        present_accuracy=present,
        token_f1=f1_total / (len(golds) * len(attributes)),
    )


def null_baseline(golds: Sequence[Values], attributes: Sequence[str]) -> float:
    """The accuracy of always answering null: what a model must beat to have learned anything."""
    return score([{} for _ in golds], golds, attributes).accuracy
