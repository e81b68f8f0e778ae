"""`spec.dataEfficiency`: the learning-curve sweep over training-set sizes, and its forecast."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
)

from sweetspot.api.rules import Model, Rule
from sweetspot.contract import Hyperparameters


class Ladder(Model):
    """Training-set sizes spaced evenly on a log scale, from `from` to `to`."""

    from_: int = Field(alias="from", ge=1, le=10_000_000)
    """The smallest size."""
    to: int = Field(ge=2, le=10_000_000)
    """The largest size."""
    steps: int = Field(default=6, ge=2, le=32)
    """How many sizes, both ends included."""

    rules = (
        Rule(cel="self.from < self.to", message="from must be below to", field="to", holds=lambda o: o.from_ < o.to),
    )

    def sizes(self) -> list[int]:
        ratio = self.to / self.from_
        sizes = [round(self.from_ * ratio ** (i / (self.steps - 1))) for i in range(self.steps)]
        return sorted(set(sizes))


class CurveForecast(Model):
    """Sizes past the measured ones at which the study forecasts micro-F1, each with an 80% band."""

    to: list[Annotated[int, Field(ge=2, le=100_000_000)]] = Field(min_length=1, max_length=16)
    """Training-set sizes to forecast F1 at, strictly increasing and above the largest measured size."""

    rules = (
        Rule(
            cel="self.to.isSorted() && self.to.all(n, self.to.exists_one(m, m == n))",
            message="forecast sizes must be strictly increasing",
            field="to",
            holds=lambda o: all(a < b for a, b in zip(o.to, o.to[1:], strict=False)),
        ),
    )


class CurveTarget(Model):
    """A micro-F1 to reach: the study answers how many training rows reach it, with an 80% band."""

    f1: float = Field(gt=0.0, le=1.0)
    """The micro-F1 to reach, in (0, 1]."""


FixedHyperparameters = Annotated[
    dict[str, float | int | str],
    Field(
        strict=False, min_length=1, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"}
    ),
]


class DataEfficiency(Model):
    """A learning-curve sweep: one configuration trained on nested, stratified samples of growing size, to find
    the size past which more data stops paying (and which attribute the late gains come from)."""

    sample_sizes: list[Annotated[int, Field(ge=1, le=10_000_000)]] | None = Field(
        default=None, min_length=1, max_length=32
    )
    """Training-set sizes, strictly increasing; smaller samples are subsets of larger ones. Or give `ladder`."""
    ladder: Ladder | None = None
    """Sizes on a log scale (`from`, `to`, `steps`) instead of `sampleSizes`."""
    hyperparameters: Literal["best", "fixed"] = "best"
    """`best`: the best configuration of the search (the sweep runs after it); `fixed`: the values in `params`
    (the sweep runs alone, no search)."""
    params: FixedHyperparameters | None = None
    """With `hyperparameters: fixed`: the trainer's hyperparameters, e.g. `{learningRate: 5.0e-4, loraRank: 16}`;
    unset ones take the trainer's defaults."""
    repeats: int = Field(default=1, ge=1, le=10)
    """Runs per size with different seeds (different nested samples): the curve shows their mean and spread."""
    hold: Literal["steps", "epochs"] = "steps"
    """What stays fixed across sizes: `steps` (every size gets the optimizer steps of the largest size, or of the
    best trial; comparable compute) or `epochs` (every size gets the same epochs; small sizes then train less)."""
    tolerance: float = Field(default=0.01, gt=0.0, le=0.5)
    """The sweet spot is the smallest size whose fitted micro-F1 is within this much of the fitted plateau; when
    even the largest size is further away, the curve has not saturated and no sweet spot is claimed."""
    forecast: CurveForecast | None = None
    """Sizes past the measured ones at which to forecast F1 with an 80% band (`to: [sizes]`); none when unset."""
    target: CurveTarget | None = None
    """A micro-F1 to reach (`f1`): the study forecasts how many rows reach it, or says it lies above the plateau."""
    cost_per_label: float | None = Field(default=None, ge=0.0, le=1e6)
    """The price of labelling one row: forecasts and targets then state what the labels past the largest measured
    size cost (in the unit of this price)."""

    rules = (
        Rule(
            cel="has(self.sampleSizes) != has(self.ladder)",
            message="give either sampleSizes or ladder",
            field="sampleSizes",
            holds=lambda o: (o.sample_sizes is None) != (o.ladder is None),
        ),
        Rule(
            cel="!has(self.sampleSizes) || (self.sampleSizes.isSorted() "
            "&& self.sampleSizes.all(n, self.sampleSizes.exists_one(m, m == n)))",
            message="sampleSizes must be strictly increasing",
            field="sampleSizes",
            holds=lambda o: (
                o.sample_sizes is None or all(a < b for a, b in zip(o.sample_sizes, o.sample_sizes[1:], strict=False))
            ),
        ),
        Rule(
            cel="(self.hyperparameters == 'fixed') == has(self.params)",
            message="params are required with hyperparameters: fixed, and only then",
            field="params",
            holds=lambda o: (o.hyperparameters == "fixed") == (o.params is not None),
        ),
        Rule(
            cel="!has(self.forecast) || !has(self.sampleSizes) || size(self.sampleSizes) == 0 "
            "|| self.forecast.to.all(n, n > self.sampleSizes[size(self.sampleSizes) - 1])",
            message="forecast sizes must lie above the largest of sampleSizes",
            field="forecast.to",
            holds=lambda o: o.forecast is None or not o.sample_sizes or min(o.forecast.to) > o.sample_sizes[-1],
        ),
        Rule(
            cel="!has(self.forecast) || !has(self.ladder) || self.forecast.to.all(n, n > self.ladder.to)",
            message="forecast sizes must lie above ladder.to, the largest measured size",
            field="forecast.to",
            holds=lambda o: o.forecast is None or o.ladder is None or min(o.forecast.to) > o.ladder.to,
        ),
    )

    @field_validator("params")
    @classmethod
    def _known_hyperparameters(cls, params: dict[str, Any] | None) -> dict[str, Any] | None:
        if params is not None:
            try:
                Hyperparameters.model_validate(params)
            except ValidationError as exc:
                problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)]
                raise ValueError("; ".join(problems)) from None
        return params

    def sizes(self) -> list[int]:
        """The training-set sizes, increasing."""
        return list(self.sample_sizes) if self.sample_sizes is not None else self.ladder.sizes()  # type: ignore[union-attr]
