"""The FineTuneStudy model: defaults, the examples, and the Python side of the cross-field rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sweetspot.api.manifest import load_manifest
from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.rules import BrokenRulesError
from sweetspot.api.search import DEFAULT_SEARCH_SPACE, FloatParameter, IntParameter, SearchSpace
from sweetspot.api.spec import FineTuneStudySpec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_a_valid_study(path: Path) -> None:
    studies = load_manifest(path)
    assert len(studies) == 1
    assert studies[0].spec.search.max_trials >= studies[0].spec.search.early_evaluation.promote_top_k


def test_the_quickstart_shows_its_claims() -> None:
    """`make quickstart` must print a real early-vs-final agreement: rank statistics need `MIN_TRIALS` trials with
    both scores (with 2 promoted it printed "early vs final: n/a")."""
    from sweetspot.core.policies.guard import MIN_TRIALS

    (study,) = load_manifest(EXAMPLES[0].parent / "quickstart.yaml")
    early = study.spec.search.early_evaluation
    assert early.promote_top_k >= MIN_TRIALS
    # Some trials must still stop early, or judging early saves nothing and the plot shows no stopped trial.
    assert study.spec.search.max_trials > early.promote_top_k


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = FineTuneStudySpec.model_validate(
        {"model": {"builtin": "tiny"}, "dataset": {"train": {"builtin": "product-pages"}}}
    )
    assert spec.search.sampler == "tpe"
    assert spec.search.max_trials == 20
    assert spec.search.parallelism == 1
    assert spec.search.early_evaluation.at_fraction == 0.2
    assert spec.search.early_evaluation.policy == "proxy"
    assert spec.search.early_evaluation.promote_top_k == 3
    assert spec.search.space == DEFAULT_SEARCH_SPACE
    assert spec.objective.metric == "f1" and spec.objective.direction == "maximize"
    assert spec.trial.resources.limits == {"nvidia.com/gpu": "1"}
    assert spec.trial.active_deadline_seconds == 21600
    assert spec.dataset.stratify_by == "attributes"
    assert spec.on_delete == "keep" and spec.suspend is False
    assert spec.data_efficiency is None


def test_round_trip_through_camel_case_json(quickstart: dict[str, Any]) -> None:
    study = FineTuneStudy.model_validate(quickstart)
    dumped = study.model_dump(mode="json", exclude_none=True)
    assert dumped["apiVersion"] == "sweetspot.dev/v1alpha1"
    assert "earlyEvaluation" in dumped["spec"]["search"]
    assert FineTuneStudy.model_validate(dumped) == study


def test_integer_quantities_are_normalised_to_strings() -> None:
    spec = FineTuneStudySpec.model_validate(
        {
            "model": {"builtin": "tiny"},
            "dataset": {"train": {"builtin": "product-pages"}},
            "trial": {"resources": {"limits": {"nvidia.com/gpu": 2, "memory": "16Gi"}}},
        }
    )
    assert spec.trial.resources.limits == {"nvidia.com/gpu": "2", "memory": "16Gi"}


def test_search_space_lists_only_the_parameters_given() -> None:
    space = SearchSpace(learning_rate=FloatParameter(min=1e-4, max=1e-2, log=True), lora_rank=IntParameter(values=[8]))
    assert list(space.parameters()) == ["learningRate", "loraRank"]


def test_every_broken_rule_of_one_object_is_reported() -> None:
    with pytest.raises(ValidationError) as caught:
        FloatParameter(min=0.0, max=-1.0, log=True, step=0.1)
    violations = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(violations, BrokenRulesError)
    assert {(v.field, v.message) for v in violations.violations} == {
        ("min", "min must be less than max"),
        ("min", "log scale needs min > 0"),
        ("step", "step cannot be combined with log scale"),
    }


def test_models_are_immutable(quickstart: dict[str, Any]) -> None:
    study = FineTuneStudy.model_validate(quickstart)
    with pytest.raises(ValidationError):
        study.spec.search.max_trials = 5  # type: ignore[misc]
