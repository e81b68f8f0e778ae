"""A study's status, built from one pass over the storage and the cluster (pure: the clock is passed in).

Status is output, never input: nothing here takes a value the status had for the truth about the study. The
status an object has is read for two things only: a condition keeps its `lastTransitionTime` while its status
holds, and a status that differs from the one the operator last wrote (changed by someone else, restored from a
backup, or broken by a client of an older CRD) is told apart, so that its repair can be announced.

The status is written as the merge patch that turns the object's status into the wanted one (`merge_patch`):
fields the operator no longer sets are removed, and nothing is written when nothing changed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.api.status import MAX_FRONT, MAX_STATUS_ATTRIBUTES, ConditionType, FineTuneStudyStatus, Reason
from sweetspot.core.budget import SECONDS_PER_HOUR
from sweetspot.core.planner import past_budget
from sweetspot.core.policies.registry import policy_of
from sweetspot.core.records import Decision, TrialView, counted
from sweetspot.core.stats import Summary, best_data, curve_data, forecast_data, front_data

MAX_OVER_BUDGET = 64

Status = dict[str, Any]
Conditions = Mapping[str, Mapping[str, Any]]


def known_conditions(status: Any) -> dict[str, dict[str, Any]]:
    """The well-formed conditions of a status, by type (a malformed status has none)."""
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    if not isinstance(conditions, list):
        return {}
    return {
        c["type"]: dict(c)
        for c in conditions
        if isinstance(c, Mapping)
        and isinstance(c.get("type"), str)
        and c.get("status") in ("True", "False", "Unknown")
        and isinstance(c.get("lastTransitionTime"), str)
    }


def condition(
    previous: Conditions, kind: str, holds: bool, reason: str, message: str, generation: int | None, now: str
) -> dict[str, Any]:
    """A metav1.Condition that keeps its lastTransitionTime while its status does not change."""
    value = "True" if holds else "False"
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == value else now
    made: dict[str, Any] = without_nulls(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message[:1024],
            "lastTransitionTime": since,
            "observedGeneration": generation,
        }
    )
    return made


def over_budget(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> dict[str, Any] | None:
    """What the status says while more trials were asked than `maxTrials` now allows; None otherwise."""
    past = past_budget(spec, trials)
    if not past:
        return None
    shown = ", ".join(map(str, past[:MAX_OVER_BUDGET])) + (" ..." if len(past) > MAX_OVER_BUDGET else "")
    which = f"trial {shown} is" if len(past) == 1 else f"trials {shown} are"
    asked = len(counted(trials))
    message = (
        f"maxTrials is {spec.search.max_trials} but {asked} trials were asked: {which} past the budget "
        "and finish the stages they have; no new trial starts"
    )
    return {"trials": past[:MAX_OVER_BUDGET], "message": message}


def early_judging(spec: FineTuneStudySpec, summary: Summary) -> dict[str, Any] | None:
    """The agreement guard's status (only while the policy guards: `Policy.guards`)."""
    minimum = policy_of(spec).min_agreement(spec)
    if minimum is None:
        return None
    judging = summary.judging
    last = judging.widenings[-1].describe(minimum) if judging.widenings else ""
    return {
        "atFraction": judging.fraction,
        "widenings": judging.level,
        "agreement": judging.agreement,
        "agreementTrials": judging.trials,
        "message": last,
    }


def budget_data(summary: Summary, finished: bool, now: str) -> dict[str, Any] | None:
    """What the status says about the compute budget (`spec.search.budget`), in GPU-hours; None without one. The
    expected end is `now` plus the estimated wall time left, while the study runs."""
    use = summary.budget
    if use is None:
        return None
    hours = SECONDS_PER_HOUR
    eta = None
    if not finished and use.eta_seconds is not None:
        start = datetime.datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        eta = (start + datetime.timedelta(seconds=round(use.eta_seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "gpuHours": use.limit / hours,
        "usedGpuHours": round(use.used / hours, 4),
        "remainingGpuHours": round(use.remaining / hours, 4),
        "usedRatio": round(use.ratio, 4),
        "eta": eta,
        "message": use.describe(),
    }


def prediction_data(summary: Summary) -> dict[str, Any] | None:
    """`promote: predicted`: the predictor's feature and calibration."""
    found = summary.forecast
    if found is None:
        return None
    calibration = found.calibration
    return {
        "feature": found.model.feature if found.model else None,
        "pairs": calibration.pairs,
        "coverage": calibration.coverage,
        "checked": calibration.checked,
    }


def build_status(
    decision: Decision,
    summary: Summary,
    previous: Conditions,
    generation: int | None,
    spec: FineTuneStudySpec,
    trials: Sequence[TrialView],
    optuna_study: str,
    now: str,
    refused: str = "",
    warm_start: Mapping[str, Any] | None = None,
    adapter: str | None = None,
) -> Status:
    """The status of one reconcile; `refused` names an immutable change being ignored (Ready stays False with
    it until the user puts the field back); `warm_start`: what warm start took (the store's record of it); `adapter`:
    where the best trial's adapter lies (`jobs.adapter_location`)."""
    ready = (
        condition(previous, ConditionType.READY, False, Reason.IMMUTABLE_FIELD_CHANGED, refused, generation, now)
        if refused
        else condition(
            previous,
            ConditionType.READY,
            decision.phase != "Failed",
            decision.reason,
            decision.message,
            generation,
            now,
        )
    )
    succeeded = decision.phase == "Succeeded"
    learning_curve, sweet_spot = curve_data(summary, MAX_STATUS_ATTRIBUTES)
    status: Status = {
        "phase": decision.phase,
        "conditions": [
            ready,
            condition(previous, ConditionType.SUCCEEDED, succeeded, decision.reason, decision.message, generation, now),
            condition(
                previous,
                ConditionType.STORAGE_REACHABLE,
                True,
                Reason.CONNECTED,
                "the Optuna storage answers",
                generation,
                now,
            ),
            condition(
                previous,
                ConditionType.SUSPENDED,
                spec.suspend,
                Reason.SUSPENDED if spec.suspend else Reason.RUNNING,
                "spec.suspend is true" if spec.suspend else "",
                generation,
                now,
            ),
        ],
        "trials": summary.counts,
        "gpuSeconds": {"used": summary.compute_used, "saved": summary.compute_saved, "lost": summary.compute_lost},
        "learningCurve": learning_curve,
        "optunaStudy": optuna_study,
        "observedGeneration": generation,
        "earlyFinalCorrelation": summary.agreement.spearman,
        "earlyEvaluation": early_judging(spec, summary),
        "prediction": prediction_data(summary),
        "paretoFront": front_data(spec, summary, MAX_FRONT),
        "sweetSpot": sweet_spot,
        "forecast": forecast_data(summary),
        "overBudget": over_budget(spec, trials),
        "budget": budget_data(summary, decision.finished, now),
        "warmStart": dict(warm_start) if warm_start is not None else None,
    }
    if (best := best_data(summary, MAX_STATUS_ATTRIBUTES)) is not None:
        status["best"] = best | {"adapter": adapter}
    # Through the typed model: a field or value the CRD's schema would refuse or prune fails here, in tests, rather
    # than as a status the API server silently trims.
    typed = FineTuneStudyStatus.model_validate(without_nulls(status))
    return dict(typed.model_dump(mode="json", by_alias=True, exclude_none=True))


def with_conditions(last: Mapping[str, Any] | None, replaced: Sequence[Mapping[str, Any]]) -> Status:
    """`last` (the last status the operator built, or nothing) with `replaced` conditions put over its own: what
    the status says when a pass cannot read the study (storage down, invalid spec) keeps the last picture (phase,
    counts, best trial), so `kubectl get fts` still reads, and says why it is stale."""
    status = dict(last or {})
    conditions = known_conditions(last)
    conditions.update({c["type"]: dict(c) for c in replaced})
    ordered = [conditions.pop(kind) for kind in ConditionType if kind in conditions]
    status["conditions"] = ordered + list(conditions.values())
    return status


def without_nulls(value: Any) -> Any:
    """JSON without null members: the CRD declares no nullable field, and an absent field is what a null means."""
    if isinstance(value, Mapping):
        return {str(k): without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [without_nulls(v) for v in value]
    return value


def normalized(status: Any) -> dict[str, Any] | None:
    """The status as its schema reads it (defaults filled in), for comparison; None when it does not validate."""
    try:
        model = FineTuneStudyStatus.model_validate(status if status is not None else {})
    except ValidationError:
        return None
    return dict(model.model_dump(mode="json", by_alias=True, exclude_none=True))


def tampering(current: Any, written: Mapping[str, Any] | None) -> str:
    """Why `current` (the object's status) is not what the operator made it (`written`: its last write, when it
    remembers one): a malformed value, or fields someone else changed; "" when neither."""
    try:
        FineTuneStudyStatus.model_validate(current if current is not None else {})
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'status'}: {e['msg']}" for e in exc.errors(include_url=False)]
        return "malformed (" + "; ".join(problems[:3]) + ")"
    if written is None:
        return ""
    now, then = normalized(current) or {}, normalized(written) or {}
    changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    return f"changed by someone else ({', '.join(changed)})" if changed else ""


def merge_patch(current: Any, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `current` into `wanted` (null removes a member; lists are replaced)."""
    if not isinstance(current, Mapping):
        return dict(wanted)
    patch: dict[str, Any] = {key: None for key in current if key not in wanted}
    for key, value in wanted.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if nested := merge_patch(old, value):
                patch[key] = nested
        elif key not in current or old != value:
            patch[key] = value
    return patch
