"""The search space as Optuna sees it: a spec's parameters as distributions (and as a grid), and the sampler and
pruner the spec names."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweetspot.api.search import FloatParameter, IntParameter
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.policies.registry import study_directions


def distributions(spec: FineTuneStudySpec) -> dict[str, BaseDistribution]:
    """The search space as Optuna distributions, by API name."""
    out: dict[str, BaseDistribution] = {}
    for name, parameter in spec.search.space.parameters().items():
        if parameter.values is not None:
            out[name] = CategoricalDistribution(list(parameter.values))
        elif isinstance(parameter, FloatParameter):
            assert parameter.min is not None and parameter.max is not None
            out[name] = FloatDistribution(parameter.min, parameter.max, log=parameter.log, step=parameter.step)
        elif isinstance(parameter, IntParameter):
            assert parameter.min is not None and parameter.max is not None
            out[name] = IntDistribution(parameter.min, parameter.max, log=parameter.log, step=parameter.step or 1)
    return out


def grid(spec: FineTuneStudySpec) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler (validation ensures floats are stepped or listed)."""
    space: dict[str, list[Any]] = {}
    for name, dist in distributions(spec).items():
        if isinstance(dist, CategoricalDistribution):
            space[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            space[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            count = round((dist.high - dist.low) / dist.step)
            space[name] = [round(dist.low + i * dist.step, 12) for i in range(count + 1)]
    return space


def make_sampler(spec: FineTuneStudySpec) -> optuna.samplers.BaseSampler:
    # GP and QMC are stable enough for us; their "experimental" warnings would only confuse users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(spec)


def _sampler(spec: FineTuneStudySpec) -> optuna.samplers.BaseSampler:
    search = spec.search
    seed = search.seed
    # Few random start-up trials on small budgets, so the model-based samplers get to work.
    startup = max(2, min(10, search.max_trials // 3))
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if search.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if search.sampler == "nsga2":
        # Generations as large as the trials that run at once, so a generation is complete when its slots free up.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, search.parallelism))
    return optuna.samplers.GridSampler(grid(spec), seed=seed)


def make_pruner(spec: FineTuneStudySpec) -> optuna.pruners.BasePruner:
    choice = spec.search.early_evaluation.pruner
    if choice == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if choice == "percentile":
        return optuna.pruners.PercentilePruner(50.0, n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, bootstrap_count=0)


def preview_params(spec: FineTuneStudySpec, count: int) -> list[dict[str, Any]]:
    """The hyperparameters the study's sampler proposes first (in memory; nothing is stored)."""
    study = optuna.create_study(directions=study_directions(spec), sampler=make_sampler(spec))
    space = distributions(spec)
    return [dict(study.ask(fixed_distributions=space).params) for _ in range(count)]
