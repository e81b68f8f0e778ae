"""The agreement guard of `proxy` (pure): notice when early scores stop ranking trials like final ones, and widen.

`proxy` trusts that a trial's early signal ranks it like its final objective. The guard checks that trust on the
study's own evidence: once at least `MIN_TRIALS` promoted trials judged at the current fraction have final scores,
it takes the Spearman correlation of their early signal and final objective; below
`earlyEvaluation.minAgreement`, later trials are judged at the next fraction of `widenTo`, and one more trial is
promoted per step. The state is derived from the trials alone (no memory to lose in a crash): the fraction a trial
was judged at is in its early result, and once a trial was judged wider that step holds. Until one was (under
`proxy` finals run after the search, so in a study run straight through none is), a later final at the same
fraction can lift the agreement back over the bar and undo the step; the trial it promoted keeps its final.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core import pareto
from sweetspot.core.objectives import early_values, is_multi, minimised
from sweetspot.core.policies.base import Judging, Widening, early_signal, rank_early
from sweetspot.core.records import Outcome, TrialView

MIN_TRIALS = 3
"""Finals needed before agreement is measured: over 2 trials a rank correlation is only ever -1 or 1."""


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None below `MIN_TRIALS` pairs or when either side is all tied."""
    if len(xs) < MIN_TRIALS or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    # Imported here: scipy.stats costs the operator's start-up and memory, and only studies with finals rank.
    from scipy import stats as scipy_stats

    value = float(scipy_stats.spearmanr(xs, ys).statistic)
    return None if math.isnan(value) else round(value, 4)


def judged_fraction(spec: FineTuneStudySpec, outcome: Outcome) -> float:
    """The fraction of `earlyEvaluation.fractions()` an early result was judged at: the one its stage echoed;
    for a record kept before stages echoed it, `atFraction` while the guard is off (it never widens), else the
    nearest to the result's step."""
    early = spec.search.early_evaluation
    if outcome.judged_at is not None:
        at = outcome.judged_at
    elif early.min_agreement is None:
        return early.at_fraction
    else:
        at = outcome.step / outcome.planned_steps if outcome.planned_steps else 0.0
    return min(early.fractions(), key=lambda f: abs(f - at))


def _level(spec: FineTuneStudySpec, outcome: Outcome) -> int:
    return spec.search.early_evaluation.fractions().index(judged_fraction(spec, outcome))


def agreement_of(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> float | None:
    """Spearman of the early signal and the final objective over `trials` (both oriented higher-is-better)."""
    signal, objective = early_signal(spec), spec.objective.metric
    early = [(-1.0 if signal == "loss" else 1.0) * t.early.metric(signal) for t in trials]  # type: ignore[union-attr]
    final = [(-1.0 if objective == "loss" else 1.0) * t.final.metric(objective) for t in trials]  # type: ignore[union-attr]
    return spearman(early, final)


def judging(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> Judging:
    """The guard's state after `trials`, for a policy that guards (`Proxy.judging`; without `minAgreement` the
    base fraction holds). A study's judging, whatever its policy: `registry.judging`."""
    early = spec.search.early_evaluation
    fractions = early.fractions()
    if early.min_agreement is None:
        return Judging(early.at_fraction)
    judged = [t for t in trials if t.early is not None and not t.infeasible]
    reached = max((_level(spec, t.early) for t in judged), default=0)  # type: ignore[arg-type]
    widenings: list[Widening] = []
    level = 0
    while True:
        both = [t for t in judged if t.final is not None and _level(spec, t.early) == level]  # type: ignore[arg-type]
        agreement = agreement_of(spec, both)
        if level + 1 < len(fractions) and (
            level < reached or (agreement is not None and agreement < early.min_agreement)
        ):
            # A level below the widest one used was left for a reason: its finals disagreed (or, if they agree
            # by now, they did when the study widened; the step stays).
            widenings.append(
                Widening(
                    fractions[level], fractions[level + 1], math.nan if agreement is None else agreement, len(both)
                )
            )
            level += 1
            continue
        return Judging(fractions[level], tuple(widenings), agreement, len(both))


def promotion_order(spec: FineTuneStudySpec, trials: Sequence[TrialView]) -> list[TrialView]:
    """Feasible trials with early scores, best first. Trials judged at different fractions are compared by their
    rank among the trials judged at the same fraction (a loss at 35% of the steps is lower than at 20% for the
    same configuration); ties: lower number first. With several objectives, by early Pareto front (`pareto.ranked`)."""
    ranked = rank_early(spec, trials)
    groups: dict[float, list[TrialView]] = {}
    for trial in ranked:
        groups.setdefault(judged_fraction(spec, trial.early), []).append(trial)  # type: ignore[arg-type]
    # Mid-rank percentiles: the best of 5 is 0.1, a lone trial 0.5 (as likely good as bad among its peers).
    share = {t.number: (i + 0.5) / len(group) for group in groups.values() for i, t in enumerate(group)}
    if not is_multi(spec):
        return sorted(ranked, key=lambda t: (share[t.number], t.number))
    # Several objectives: non-dominated sorting of (that share, the costs known or projected early), each front by
    # crowding distance, so the promoted trials spread along the early front rather than crowd at one end.
    points = [
        minimised(
            spec,
            early_values(spec, t.early, share[t.number], judged_fraction(spec, t.early)),  # type: ignore[arg-type]
            quality_lower_is_better=True,
        )
        for t in ranked
    ]
    return [ranked[i] for i in pareto.ranked(points)]
