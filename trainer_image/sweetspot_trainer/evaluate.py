"""Scoring extracted attributes the way the attribute-extraction field does (one evaluator for both heads).

Only *applicable* pairs are scored: a (row, attribute) pair exists when the attribute is a key of the row's gold
`output` (a value, a list of acceptable values, or null for "applies, but the text does not state it"). An
attribute absent from a row is not applicable there and is never scored, whatever the model says.

Each pair falls in one of five cases (Brinkmann et al. 2023, following Ghani et al. 2006 and Xu et al. 2019):

    NN  gold null,  predicted null          NV  gold null,  a value predicted
    VN  gold value, predicted null          VC  gold value, the predicted value is correct
    VW  gold value, a wrong value predicted

precision = VC / (NV + VC + VW), recall = VC / (VN + VC + VW), F1 their harmonic mean (0 when VC is 0). Micro
scores pool the pairs; macro-F1 averages F1 over the (category, attribute) combinations that have at least one
pair that is not NN. Always answering null makes every pair NN or VN: F1 0, whatever the share of nulls.
`accuracy` is exact match over applicable pairs ((NN + VC) / pairs). Values are compared after normalisation:
surrounding and repeated whitespace collapsed and case folded (`"Navy  Blue"` equals `"navy blue"`); an empty
string is null. Token F1 is a finer signal: the mean over pairs of the best token overlap with an acceptable
value (1 for NN, 0 for NV and VN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Gold = str | tuple[str, ...] | None
"""A gold value: one string, several acceptable strings, or null."""
Golds = Mapping[str, Gold]
Values = Mapping[str, str | None]


def normalize(value: str | None) -> str | None:
    if value is None:
        return None
    folded = " ".join(value.split()).casefold()
    return folded or None


def acceptable(gold: Gold) -> tuple[str, ...]:
    """The normalised values that count as correct (empty: gold null)."""
    if gold is None:
        return ()
    values = (gold,) if isinstance(gold, str) else gold
    return tuple(dict.fromkeys(v for v in map(normalize, values) if v is not None))


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
class Counts:
    """Pairs by case."""

    nn: int = 0
    nv: int = 0
    vn: int = 0
    vc: int = 0
    vw: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.nn + other.nn, self.nv + other.nv, self.vn + other.vn, self.vc + other.vc, self.vw + other.vw
        )

    @property
    def pairs(self) -> int:
        return self.nn + self.nv + self.vn + self.vc + self.vw

    @property
    def values(self) -> int:
        """Pairs whose gold has a value (the attribute's support)."""
        return self.vn + self.vc + self.vw

    @property
    def precision(self) -> float:
        predicted = self.nv + self.vc + self.vw
        return self.vc / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        return self.vc / self.values if self.values else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        return (self.nn + self.vc) / self.pairs if self.pairs else 0.0


def case(predicted: str | None, gold: Gold) -> Counts:
    """The one case of a pair, as counts."""
    p, golds = normalize(predicted), acceptable(gold)
    if not golds:
        return Counts(nn=1) if p is None else Counts(nv=1)
    if p is None:
        return Counts(vn=1)
    return Counts(vc=1) if p in golds else Counts(vw=1)


@dataclass(frozen=True)
class Scores:
    counts: Counts
    """Micro counts over every applicable pair."""
    macro_f1: float
    attribute_counts: dict[str, Counts]
    """Per attribute over all categories, ordered by support (gold values), most first, then by name."""
    category_counts: dict[str, Counts]
    token_f1: float

    @property
    def accuracy(self) -> float:
        return self.counts.accuracy

    @property
    def precision(self) -> float:
        return self.counts.precision

    @property
    def recall(self) -> float:
        return self.counts.recall

    @property
    def f1(self) -> float:
        return self.counts.f1


def score(
    predictions: Sequence[Values],
    golds: Sequence[Golds],
    categories: Sequence[str] | None = None,
    attributes: Sequence[str] | None = None,
) -> Scores:
    """Score predicted against gold values over the applicable pairs (the keys of each gold row), restricted to
    `attributes` when given. `categories[i]` names row i's category (macro-F1 is per (category, attribute))."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} rows")
    categories = categories if categories is not None else [""] * len(golds)
    if len(categories) != len(golds):
        raise ValueError(f"{len(categories)} categories for {len(golds)} rows")
    keep = set(attributes) if attributes is not None else None
    combos: dict[tuple[str, str], Counts] = {}
    overlap = 0.0
    for predicted, gold, category in zip(predictions, golds, categories, strict=True):
        for attribute, value in gold.items():
            if keep is not None and attribute not in keep:
                continue
            counts = case(predicted.get(attribute), value)
            combos[(category, attribute)] = combos.get((category, attribute), Counts()) + counts
            overlap += max((token_f1(predicted.get(attribute), g) for g in acceptable(value)), default=float(counts.nn))
    if not combos:
        raise ValueError("nothing to score: no row has an applicable attribute")
    by_attribute: dict[str, Counts] = {}
    by_category: dict[str, Counts] = {}
    for (category, attribute), counts in combos.items():
        by_attribute[attribute] = by_attribute.get(attribute, Counts()) + counts
        by_category[category] = by_category.get(category, Counts()) + counts
    total = sum(by_category.values(), Counts())
    informative = [c.f1 for c in combos.values() if c.pairs > c.nn]
    return Scores(
        counts=total,
        macro_f1=sum(informative) / len(informative) if informative else 0.0,
        attribute_counts=dict(sorted(by_attribute.items(), key=lambda item: (-item[1].values, item[0]))),
        category_counts=dict(sorted(by_category.items())),
        token_f1=overlap / total.pairs,
    )


def null_baseline(golds: Sequence[Golds], attributes: Sequence[str] | None = None) -> float:
    """Accuracy of always answering null (its F1 is 0 by definition): what exact match must beat."""
    return score([{} for _ in golds], golds, attributes=attributes).accuracy
