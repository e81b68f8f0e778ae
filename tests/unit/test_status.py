"""The status a study gets: built from a pass, written as the fewest changes, and a status the operator did not
write told apart (pure functions, no cluster)."""

from __future__ import annotations

from typing import Any

from sweetspot.api.crd import crd
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import ConditionType, Reason
from sweetspot.core.records import Decision, Outcome, TrialView
from sweetspot.core.stats import summarize
from sweetspot.core.study_status import (
    build_status,
    condition,
    known_conditions,
    merge_patch,
    normalized,
    over_budget,
    tampering,
    with_conditions,
)

from support.builders import outcome as outcome_of
from support.builders import study_spec
from support.kube_schema import CrdValidator

NOW, LATER = "2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z"


def spec(max_trials: int = 4) -> FineTuneStudySpec:
    return study_spec({"maxTrials": max_trials, "parallelism": 1, "earlyEvaluation": {"promoteTopK": 1}}, samples=300)


def status(phase: str = "Searching", trials: int = 2, max_trials: int = 4, now: str = NOW) -> dict[str, Any]:
    views = [TrialView(n, "running", {}) for n in range(trials)]
    decision = Decision((), phase, "TrialsRunning", "asked")  # type: ignore[arg-type]
    summary = summarize(spec(max_trials), views, [])
    return build_status(decision, summary, {}, 3, spec(max_trials), views, "default/s", now)


CLUSTER = CrdValidator(crd())


def crd_errors(built: dict[str, Any]) -> list[Any]:
    """What the API server's schema says of a study carrying this status (it would prune or refuse the rest)."""
    study = {"apiVersion": "sweetspot.dev/v1alpha1", "kind": "FineTuneStudy", "metadata": {"name": "s"}}
    return CLUSTER.errors(study | {"spec": spec().model_dump(by_alias=True, exclude_none=True), "status": built})


def test_a_built_status_is_what_the_schema_allows_with_no_nulls() -> None:
    built = status()
    assert normalized(built) is not None and crd_errors(built) == []
    assert crd_errors({**built, "trials": {"running": -1}}), "the check accepts what the CRD refuses"
    assert "best" not in built and "overBudget" not in built  # absent, not null
    assert [c["type"] for c in built["conditions"]] == ["Ready", "Succeeded", "StorageReachable", "Suspended"]
    assert built["trials"]["running"] == 2 and built["observedGeneration"] == 3
    assert (
        crd_errors(
            with_conditions(
                built, [condition({}, ConditionType.READY, False, Reason.STORAGE_UNREACHABLE, "down", 3, LATER)]
            )
        )
        == []
    )


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    before = known_conditions(status())
    assert condition(before, ConditionType.READY, True, "Other", "", 4, LATER)["lastTransitionTime"] == NOW
    assert condition(before, ConditionType.READY, False, "Broken", "", 4, LATER)["lastTransitionTime"] == LATER
    assert known_conditions({"conditions": "x"}) == {} and known_conditions(None) == {}


def test_the_patch_removes_what_is_no_longer_wanted_and_is_empty_when_nothing_changed() -> None:
    wanted = status()
    assert merge_patch(wanted, wanted) == {}
    current = {**wanted, "phase": "Succeeded", "best": {"trial": 9, "params": {"forged": 1}}, "conditions": "x"}
    patch = merge_patch(current, wanted)
    assert patch == {"phase": "Searching", "best": None, "conditions": wanted["conditions"]}
    assert merge_patch(None, wanted) == wanted


def test_a_status_the_operator_did_not_write_is_told_apart() -> None:
    written = status()
    assert tampering(written, written) == ""
    assert tampering({}, None) == "" and tampering(None, None) == ""
    forged = tampering({**written, "phase": "Succeeded", "observedGeneration": 1}, written)
    assert forged == "changed by someone else (observedGeneration, phase)"
    malformed = tampering({**written, "conditions": "x"}, None)
    assert malformed.startswith("malformed (conditions: ")
    # Defaults a server fills in are no change.
    assert tampering({**written, "learningCurve": []}, {k: v for k, v in written.items() if k != "learningCurve"}) == ""


def test_an_outage_keeps_the_last_picture_and_says_why() -> None:
    last = status(phase="Promoting")
    previous = known_conditions(last)
    down = [
        condition(previous, ConditionType.READY, False, Reason.STORAGE_UNREACHABLE, "no answer", 3, LATER),
        condition(previous, ConditionType.STORAGE_REACHABLE, False, Reason.STORAGE_UNREACHABLE, "no answer", 3, LATER),
    ]
    kept = with_conditions(last, down)
    assert {k: v for k, v in kept.items() if k != "conditions"} == {k: v for k, v in last.items() if k != "conditions"}
    by_type = {c["type"]: c for c in kept["conditions"]}
    assert [c["type"] for c in kept["conditions"]] == ["Ready", "Succeeded", "StorageReachable", "Suspended"]
    assert (by_type[ConditionType.READY]["status"], by_type[ConditionType.READY]["reason"]) == (
        "False",
        Reason.STORAGE_UNREACHABLE,
    )
    assert by_type[ConditionType.STORAGE_REACHABLE]["lastTransitionTime"] == LATER
    assert by_type["Succeeded"] == known_conditions(last)["Succeeded"]
    assert [c["type"] for c in with_conditions(None, down)["conditions"]] == [
        ConditionType.READY,
        ConditionType.STORAGE_REACHABLE,
    ]


def test_a_lowered_budget_names_the_trials_past_it() -> None:
    views = [TrialView(n, "running", {}) for n in range(3)]
    over = over_budget(spec(max_trials=2), views)
    assert over is not None and over["trials"] == [2]
    assert "maxTrials is 2 but 3 trials were asked: trial 2 is past the budget" in over["message"]
    assert "no new trial starts" in over["message"]
    assert over_budget(spec(max_trials=3), views) is None
    assert status(trials=3, max_trials=2)["overBudget"] == over
    assert crd_errors(status(trials=3, max_trials=2)) == []


def test_the_agreement_guard_shows_where_trials_are_judged_and_why() -> None:

    guarded = FineTuneStudySpec.model_validate(
        spec().model_dump(by_alias=True)
        | {"search": {"maxTrials": 4, "earlyEvaluation": {"promoteTopK": 3, "minAgreement": 0.6}}}
    )

    def scored(loss: float, f1: float, step: int) -> Outcome:
        return outcome_of(f1=f1, loss=loss, step=step)

    # The lower the early loss, the lower the final F1: ranks reversed.
    views = [
        TrialView(n, "complete", {}, scored(loss, 0.5, 20), scored(0.1, final, 100))
        for n, (loss, final) in enumerate([(0.2, 0.5), (0.3, 0.6), (0.4, 0.7)])
    ]
    decision = Decision((), "Promoting", "PromotedTrialsRunning", "")
    built = build_status(decision, summarize(guarded, views, []), {}, 1, guarded, views, "default/s", NOW)
    judging = built["earlyEvaluation"]
    assert (judging["atFraction"], judging["widenings"], judging["agreementTrials"]) == (0.35, 1, 0)
    assert "Spearman -1.000 < 0.60 over 3 finals" in judging["message"]
    assert built["earlyFinalCorrelation"] == -1.0
    assert crd_errors(built) == []
    assert "earlyEvaluation" not in status()  # the guard is off by default: nothing to show


def test_the_best_trial_says_where_its_adapter_is() -> None:
    final = outcome_of(f1=0.8, accuracy=0.9, loss=0.1, step=100)
    views = [TrialView(0, "complete", {}, final, final)]
    decision = Decision((), "Succeeded", "StudyComplete", "best trial 0")
    where = "pvc/checkpoints:studies/s/runs/t0-final/adapter"
    built = build_status(decision, summarize(spec(), views, []), {}, 1, spec(), views, "default/s", NOW, adapter=where)
    assert built["best"]["trial"] == 0 and built["best"]["adapter"] == where and crd_errors(built) == []
    kept_nothing = build_status(decision, summarize(spec(), views, []), {}, 1, spec(), views, "default/s", NOW)
    assert "adapter" not in kept_nothing["best"]  # absent, not null


def test_every_condition_type_and_reason_is_declared_once_in_camel_case() -> None:
    import re

    from sweetspot.api.status import Condition, EventReason

    reason = re.compile(Condition.model_fields["reason"].metadata[-1].pattern)
    for vocabulary in (ConditionType, Reason, EventReason):
        values = [v.value for v in vocabulary]
        assert len(set(values)) == len(values)
        assert all(reason.fullmatch(v) and v[0].isupper() for v in values), vocabulary
    # An Event that reports a condition's reason posts the `Reason` itself, not a second name for it.
    assert not {r.value for r in Reason} & {e.value for e in EventReason}
