"""Policies are classes behind one interface: every name the API accepts has one, and each answers as documented."""

from __future__ import annotations

from typing import get_args

from sweetspot.api.search import Policy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.proxy import Proxy
from sweetspot.core.policies.prune import Prune
from sweetspot.core.policies.registry import POLICIES, policy_of, study_direction
from sweetspot.core.records import Outcome, TrialView

from support.builders import outcome as outcome_of

SPEC = {"model": {"builtin": "tiny"}, "dataset": {"train": {"builtin": "product-pages"}}}


def spec(policy: str, **early: object) -> FineTuneStudySpec:
    search = {"maxTrials": 4, "earlyEvaluation": {"policy": policy, "promoteTopK": 2, **early}}
    return FineTuneStudySpec.model_validate(SPEC | {"search": search})


def outcome(loss: float, f1: float) -> Outcome:
    return outcome_of(f1=f1, loss=loss, seconds=1, step=1, planned_steps=5, samples=10)


def test_every_policy_the_api_accepts_has_one_class() -> None:
    assert sorted(POLICIES) == sorted(get_args(Policy))
    assert isinstance(policy_of(spec("proxy")), Proxy) and isinstance(policy_of(spec("prune")), Prune)


def test_proxy_learns_from_the_early_signal_and_promotes_the_best_early_trials() -> None:
    proxy = spec("proxy")
    assert study_direction(proxy) == "minimize"  # validation loss by default
    record = Proxy().record_early(proxy, 1, outcome(0.5, 0.7), [])
    assert (record.value, record.report_to_pruner) == (0.5, False)
    assert Proxy().final_value(proxy, outcome(0.4, 0.8)) is None
    trials = [TrialView(n, "complete", {}, early=outcome(loss, 0.5)) for n, loss in enumerate([0.9, 0.3, 0.5, 0.4])]
    assert [t.number for t in Proxy().promoted(proxy, trials)] == [1, 3]
    assert Proxy().stopped_early(proxy, trials) == {0, 2}


def test_prune_reports_the_objective_and_trains_survivors_at_once() -> None:
    prune = spec("prune")
    assert study_direction(prune) == "maximize"
    record = Prune().record_early(prune, 1, outcome(0.5, 0.7), [])
    assert (record.value, record.report_to_pruner) == (0.7, True)
    assert Prune().final_value(prune, outcome(0.4, 0.8)) == 0.8
    assert Prune().final_during_search and not Prune().tells_early
    assert Prune().promoted(prune, [TrialView(0, "complete", {}, early=outcome(0.1, 0.9))]) == []


def test_each_policy_names_the_value_its_sampler_is_told() -> None:
    """The Optuna study's metric name, which optuna-dashboard shows for a trial's value."""
    assert Proxy().objective_name(spec("proxy")) == "early validation loss at 20% of steps"
    assert Proxy().objective_name(spec("proxy", signal="f1", atFraction=0.25)) == "early F1 at 25% of steps"
    assert Proxy().objective_name(spec("proxy", signal="tokenF1", minAgreement=0.6)) == (
        "early token F1 at 20% of steps (the guard may widen it up to 50%)"
    )
    no_wider = spec("proxy", atFraction=0.6, minAgreement=0.6)
    assert Proxy().objective_name(no_wider) == "early validation loss at 60% of steps"
    assert Prune().objective_name(spec("prune")) == "final F1"  # the early score is the pruner's intermediate value
    accuracy = FineTuneStudySpec.model_validate(
        SPEC | {"objective": {"metric": "accuracy"}, "search": {"earlyEvaluation": {"policy": "prune"}}}
    )
    assert Prune().objective_name(accuracy) == "final accuracy"


def test_the_status_the_report_and_the_metrics_ask_the_policy_whether_the_guard_is_on() -> None:
    from sweetspot.core.stats import summarize
    from sweetspot.core.study_status import early_judging
    from sweetspot.observe.metrics import Metrics, StudyState

    for name, policy in POLICIES.items():
        for minimum in (None, 0.6):
            study = spec(name, minAgreement=minimum)
            assert policy.guards(study) == (policy.guardable and minimum is not None)
            assert policy.min_agreement(study) == (minimum if policy.guards(study) else None)
            summary = summarize(study, [], [])
            assert (early_judging(study, summary) is not None) == policy.guards(study)
            metrics = Metrics.create()
            metrics.publish(StudyState.of("ns", "s", study, [], [], "Pending"))
            families = {f.name for f in metrics.studies.collect() if f.samples}
            assert ("sweetspot_study_early_fraction" in families) == policy.guardable


def test_no_policy_name_is_tested_outside_the_policies() -> None:
    import re
    from pathlib import Path

    import sweetspot

    root = Path(sweetspot.__file__).parent
    names = "|".join(map(re.escape, POLICIES)) + "|predicted"
    asked = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)|policy\s*(==|!=)""")
    leaks = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if not path.is_relative_to(root / "core" / "policies") and path.parent.name != "api"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if asked.search(line)
    ]
    assert leaks == []
