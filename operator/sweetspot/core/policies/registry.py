"""How trials are judged early: one `Policy` per value of `spec.search.earlyEvaluation.policy` (pure).

Adding a policy: a module here with a `Policy` subclass (see `base.Policy` for what it owes), its instance in
`POLICIES`, its name in `sweetspot.api.search.Policy`, and its tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.objectives import goals
from sweetspot.core.policies.base import Direction, Judging, Policy, Widening, early_signal, rank_early
from sweetspot.core.policies.proxy import Proxy
from sweetspot.core.policies.prune import Prune
from sweetspot.core.records import TrialView

POLICIES: dict[str, Policy] = {policy.name: policy for policy in (Proxy(), Prune())}


def policy_of(spec: FineTuneStudySpec) -> Policy:
    return POLICIES[spec.search.early_evaluation.policy]


def study_direction(spec: FineTuneStudySpec) -> Direction:
    """What the Optuna study optimises: the early signal under `proxy`, the objective under `prune`."""
    return policy_of(spec).direction(spec)


def study_directions(spec: FineTuneStudySpec) -> list[Direction]:
    """One direction per objective, in `objectives.goals` order: the policy's for the quality slot (under `proxy`,
    the early signal's), minimize for every cost."""
    quality = study_direction(spec)
    return [quality if not goal.is_cost else "minimize" for goal in goals(spec)]


def judging(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Judging:
    """Where the study judges new trials early after `trials` (its policy's `judging`)."""
    return policy_of(spec).judging(spec, trials)


__all__ = [
    "POLICIES",
    "Direction",
    "Judging",
    "Policy",
    "Proxy",
    "Prune",
    "Widening",
    "early_signal",
    "judging",
    "policy_of",
    "rank_early",
    "study_direction",
    "study_directions",
]
