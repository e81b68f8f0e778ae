"""Studies by name: a resource's own study (created on first use, reloaded after that, kept apart from an earlier
resource's of the same name), finding the newest of a name, loading one for a report, deleting one."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.objectives import COST_WORDS, goals
from sweetspot.core.policies.registry import policy_of, study_directions
from sweetspot.storage.connect import StorageError, open_storage, retrying, safe_url
from sweetspot.storage.layout import SPEC_ATTR, UID_ATTR, manifest, study_key
from sweetspot.storage.space import make_pruner, make_sampler


def study_of(storage: optuna.storages.BaseStorage, resource: FineTuneStudy) -> optuna.Study:
    """The resource's Optuna study in `storage`: created on first use, reloaded after that. A resource created
    again under a deleted one's name (another uid) gets a study of its own, `namespace/name#uid8`."""
    spec = resource.spec
    key = study_key(resource.metadata.namespace, resource.metadata.name)
    uid = resource.metadata.uid

    def create(name: str) -> optuna.Study:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            directions=study_directions(spec),
            sampler=make_sampler(spec),
            pruner=make_pruner(spec),
            load_if_exists=True,
        )

    study = create(key)
    owner = study.user_attrs.get(UID_ATTR)
    if uid is not None and owner is not None and owner != uid:
        study = create(f"{key}#{uid[:8]}")  # the name belongs to an earlier, deleted study: keep apart
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, manifest(resource))
    if uid is not None and UID_ATTR not in study.user_attrs:
        study.set_user_attr(UID_ATTR, uid)
    name_objective(study, spec)
    return study


def name_objective(study: optuna.Study, spec: FineTuneStudySpec) -> None:
    """Name the study's objectives for what its sampler learns from (`Policy.objective_name`; each cost in words),
    once: a study created before names existed, or whose spec changed what it is told, is renamed when next opened."""
    quality = policy_of(spec).objective_name(spec)
    name = [COST_WORDS[g.metric] if g.is_cost else quality for g in goals(spec)]
    if study.metric_names != name:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(name)


def named(studies: Sequence[Any], key: str) -> list[Any]:
    """The studies `key` names: `namespace/name` is that name and its re-creations (`namespace/name#uid8`)."""
    return [s for s in studies if s.study_name == key or ("#" not in key and s.study_name.startswith(key + "#"))]


def delete_study(url: str, name: str) -> None:
    """Delete the Optuna study `name` and its trials (`onDelete: delete`); raises `StorageError` when absent or
    unreachable."""
    storage = open_storage(url)
    names = retrying(url, lambda: [s.study_name for s in optuna.get_all_study_summaries(storage)], "listing studies")
    if name not in names:
        raise StorageError(f"no study {name!r} in {safe_url(url)}")
    retrying(url, lambda: optuna.delete_study(study_name=name, storage=storage), f"deleting {name}")


def load_study(url: str, key: str) -> tuple[optuna.Study, dict[str, Any]]:
    """An existing study (for reports), with its stored manifest; raises `StorageError` when absent.

    `namespace/name` means the newest study of that name (a study re-created under a deleted one's name has its
    own, `namespace/name#uid8`, which names exactly that one)."""
    storage = open_storage(url)
    summaries = retrying(url, lambda: optuna.get_all_study_summaries(storage), "listing studies")
    matching = named(summaries, key)
    if not matching:
        known = ", ".join(sorted(s.study_name for s in summaries)) or "none"
        raise StorageError(f"no study {key!r} in {safe_url(url)} (studies there: {known})")
    name = max(matching).study_name  # summaries order by creation
    study = retrying(url, lambda: optuna.load_study(study_name=name, storage=storage), f"loading {name}")
    return study, dict(study.user_attrs.get(SPEC_ATTR, {}))
