"""The one module that talks to Optuna and its database.

One Optuna study per FineTuneStudy, named `<namespace>/<name>` (both DNS labels, so two namespaces never
collide), created once and reloaded on restart. The study records the resource's uid: a FineTuneStudy deleted
with `onDelete: keep` and created again under the same name gets a study of its own, `<namespace>/<name>#<uid8>`,
rather than inheriting the old trials. Trials are Optuna trials (ask/tell); what Optuna has no
place for (stage outcomes, failed attempts, the learning curve, the spec) is kept in the study's user
attributes, in the same database, so the full history lives in one place and the optuna-dashboard shows it.

Optuna's own tools see the study as Sweetspot does: the study's metric name says what the sampler learns from
(`Policy.objective_name`: "early validation loss at 20% of steps" under `proxy`, "final F1" under `prune`), and a
trial's scores at each stage are flat numbers in its user attributes (`early:f1`, `final:loss`, ...: `score_attrs`),
which optuna-dashboard's trial table sorts by and its plots offer as targets. Optuna refuses to update a finished
trial, so they are written before the tell that finishes it. A `proxy` trial is finished by its early tell (the
sampler must learn from it during the search) long before it is promoted, so its final scores go on the study
instead (`final:trial:<number>`, among the study user attributes optuna-dashboard lists): keeping the trial RUNNING
until its final would hide its early score from the sampler, and a second trial for the final would feed the sampler
a point it never proposed.

Writes are ordered so that a crash between two of them is repaired by the next snapshot: the Optuna
state changes first (tell), the Sweetspot record second, and `snapshot()` presents a trial whose record is
behind its Optuna state as still needing that record, which the planner then proposes again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState
from sqlalchemy.engine import make_url

from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.search import FloatParameter, IntParameter
from sweetspot.api.spec import FineTuneStudySpec
from sweetspot.core.planner import best_trial
from sweetspot.core.policies.base import rank_early
from sweetspot.core.policies.registry import policy_of, study_direction
from sweetspot.core.records import (
    Action,
    AskTrials,
    Decision,
    FailTrial,
    Outcome,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    SweepView,
    TrialState,
    TrialView,
)
from sweetspot.failpoints import failpoint

SPEC_ATTR = "sweetspot:spec"
UID_ATTR = "sweetspot:uid"
PHASE_ATTR = "sweetspot:phase"
TRIAL_ATTR = "sweetspot:trial:{}"
SWEEP_ATTR = "sweetspot:sweep:{}"
INFEASIBLE_ATTR = "sweetspot:infeasible"
FAILURE_ATTR = "sweetspot:failure"
"""A failed trial's reason, in the trial's own user attributes (what optuna-dashboard shows next to it)."""
MEMORY_CONSTRAINT = "outOfMemory"
CONSTRAINT_KEY = f"constraints:{MEMORY_CONSTRAINT}"
"""The system attribute `Trial.set_constraint(MEMORY_CONSTRAINT, ...)` writes, and samplers read."""
WARM_ATTR = "sweetspot:warmStart"
"""What `spec.search.warmStart` took (a study attribute): written last, so its presence means the import is done."""
SOURCE_ATTR = "sweetspot:source"
"""A trial's user attribute: the trial it came from by warm start (`namespace/name trial N`, where it was trained)."""
FINAL_ATTR = "final:trial:{}"
"""A study user attribute: the final scores (`scores`) of a trial already finished when its final stage ended (a
`proxy` trial, told its early score), which Optuna no longer lets the trial itself take."""
REUSED_ATTR = "sweetspot:reused"
"""A trial's user attribute: its results were copied from `SOURCE_ATTR` (it was never trained in this study)."""
COPIED_ATTR = "sweetspot:copied"
"""A reused trial's user attribute: the stages whose results were copied (a stage it runs here later, such as the
final of a trial copied judged early only, is this study's compute)."""
WARM_START_FAILED = "WarmStartFailed"
"""The reason a study fails with when `spec.search.warmStart` names a study the storage does not have."""
REUSE_REQUIRES: tuple[tuple[str, ...], ...] = (
    ("model",),
    ("dataset",),
    ("objective", "metric"),
    ("objective", "direction"),
    ("search", "space"),
    ("search", "earlyEvaluation", "policy"),
    ("search", "earlyEvaluation", "atFraction"),
    ("search", "earlyEvaluation", "signal"),
    ("search", "earlyEvaluation", "pruner"),
)
"""Spec fields (API names) an earlier study must share for its results to be reused: they decide what a trial's
scores and the value its sampler was told mean."""
TRANSIENT_RETRIES = 4
_SCHEMA_LOCK = 0x5357_4545  # PostgreSQL advisory lock id guarding schema creation ("SWEE")

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy  # what `BaseStorage.get_all_studies` returns; not re-exported

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
T = TypeVar("T")


class StorageError(Exception):
    """The storage cannot be reached or used; the message never contains a password."""


class WarmStartError(Exception):
    """`spec.search.warmStart` names a study that the storage does not have."""


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def _scrub(text: str, url: str) -> str:
    try:
        password = make_url(url).password
    except sqlalchemy.exc.ArgumentError:
        password = None
    return text.replace(str(password), "***") if password else text


def study_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


# --- opening the storage --------------------------------------------------------------------------------


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Only one process creates the schema at a time (optuna#1092: concurrent creation races)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    elif parsed.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})"))
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})"))
        finally:
            engine.dispose()
    else:
        yield


def _engine_options(url: str) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # Idle connections get dropped by servers and proxies: test each before use.
        return {
            "pool_pre_ping": True,
            "pool_size": 8,  # the operator's worker threads
            "max_overflow": 8,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": 10},
        }
    if backend == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` (what CloudNativePG and most providers hand out) use psycopg 3, the
    driver installed here; SQLAlchemy would otherwise pick psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


_storages: dict[str, optuna.storages.RDBStorage] = {}
_storages_lock = threading.Lock()


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna RDB storage for `url` (SQLite or PostgreSQL via psycopg 3); raises `StorageError`.

    One per URL per process, shared by every study that uses it: an RDBStorage is thread-safe (a session per
    operation), so a hundred studies share one connection pool rather than exhaust the server's connections."""
    url = driver_url(url)
    with _storages_lock:
        storage = _storages.get(url)
    if storage is not None:
        return storage
    try:
        with _schema_lock(url):
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_options(url))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as exc:
        reason = _scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], url)
        raise StorageError(f"cannot open the storage {safe_url(url)}: {reason}") from None
    with _storages_lock:
        shared = _storages.setdefault(url, storage)
    if shared is not storage:  # another thread opened it meanwhile
        storage.engine.dispose()
    return shared


def retrying(url: str, operation: Callable[[], T], what: str) -> T:
    """Run a storage operation, retrying transient connection errors with backoff."""
    for attempt in range(TRANSIENT_RETRIES):
        try:
            return operation()
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
        ) as exc:
            if attempt == TRANSIENT_RETRIES - 1:
                reason = _scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], url)
                raise StorageError(f"{what}: the storage {safe_url(url)} is unreachable: {reason}") from None
            delay = 0.5 * 2**attempt
            log.warning("%s: storage error, retrying in %.1fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# --- samplers, pruners, distributions --------------------------------------------------------------------


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
    return optuna.samplers.GridSampler(grid(spec), seed=seed)


def make_pruner(spec: FineTuneStudySpec) -> optuna.pruners.BasePruner:
    choice = spec.search.early_evaluation.pruner
    if choice == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if choice == "percentile":
        return optuna.pruners.PercentilePruner(50.0, n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, bootstrap_count=0)


# --- the store --------------------------------------------------------------------------------------------

_STATES: dict[OptunaState, TrialState] = {
    OptunaState.RUNNING: "running",
    OptunaState.WAITING: "running",
    OptunaState.COMPLETE: "complete",
    OptunaState.PRUNED: "pruned",
    OptunaState.FAIL: "failed",
}


def _stored_spec(resource: FineTuneStudy) -> dict[str, Any]:
    return resource.model_dump(mode="json", include={"metadata": {"name", "namespace"}, "spec": True})


def _digest(resource: FineTuneStudy) -> str:
    """A short fingerprint of the manifest a study runs with (what `ended` compares)."""
    return hashlib.sha256(json.dumps(_stored_spec(resource), sort_keys=True).encode()).hexdigest()[:16]


def _sweep_attr(samples: int, repeat: int) -> str:
    """`sweetspot:sweep:200` for the first run at a size, `sweetspot:sweep:200:1` for its second repeat."""
    return SWEEP_ATTR.format(samples) + (f":{repeat}" if repeat else "")


def _sweep_point(attr: str) -> tuple[int, int]:
    samples, _, repeat = attr.removeprefix(SWEEP_ATTR.format("")).partition(":")
    return int(samples), int(repeat or 0)


def scores(outcome: Outcome) -> dict[str, float | int]:
    """A stage's scores as Optuna's tools see them (flat numbers); `fraction` is of the trial's planned steps: what
    an early stage was asked to stop at, else where it stopped."""
    fraction = outcome.judged_at
    if fraction is None:
        fraction = outcome.step / outcome.planned_steps if outcome.planned_steps else 1.0
    return {
        "f1": outcome.f1,
        "precision": outcome.precision,
        "recall": outcome.recall,
        "loss": outcome.loss,
        "accuracy": outcome.accuracy,
        "fraction": round(fraction, 4),
        "step": outcome.step,
    }


def score_attrs(stage: str, outcome: Outcome) -> dict[str, float | int]:
    """A stage's scores as trial user attributes: `early:f1`, `final:step`, ..."""
    return {f"{stage}:{name}": value for name, value in scores(outcome).items()}


def _number(trial: optuna.trial.FrozenTrial) -> int:
    return trial.number


def _outcome(data: Mapping[str, Any] | None) -> Outcome | None:
    return Outcome(**data) if data else None


def origin(study: str, trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial was trained: its own source when it was itself reused by warm start, else this study's trial."""
    if trial.user_attrs.get(REUSED_ATTR) and SOURCE_ATTR in trial.user_attrs:
        return str(trial.user_attrs[SOURCE_ATTR])
    return f"{study} trial {trial.number}"


def _named(studies: Sequence[Any], key: str) -> list[Any]:
    """The studies `key` names: `namespace/name` is that name and its re-creations (`namespace/name#uid8`)."""
    return [s for s in studies if s.study_name == key or ("#" not in key and s.study_name.startswith(key + "#"))]


def _lookup(spec: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = spec
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def reuse_differences(earlier: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """The fields of `REUSE_REQUIRES` in which an earlier study's stored manifest differs from this one's: empty when
    its results mean here what they meant there."""
    theirs, ours = earlier.get("spec", {}), mine.get("spec", {})
    return [".".join(path) for path in REUSE_REQUIRES if _lookup(theirs, path) != _lookup(ours, path)]


def _reusable(trial: optuna.trial.FrozenTrial, view: TrialView, tells_early: bool) -> bool:
    """A finished trial whose records are complete (a crash can leave a told trial without its record)."""
    if trial.state not in (OptunaState.COMPLETE, OptunaState.PRUNED) or view.state == "failed":
        return False
    if view.infeasible:
        return True
    if view.early is None:
        return False
    return trial.state == OptunaState.PRUNED or tells_early or view.final is not None


def _fits(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, FloatDistribution | IntDistribution) and isinstance(value, int | float):
        return bool(distribution.low <= value <= distribution.high)
    return False


def best_configs(
    spec: FineTuneStudySpec, views: Sequence[TrialView], count: int, space: Mapping[str, BaseDistribution]
) -> list[tuple[TrialView, dict[str, Any]]]:
    """The best `count` distinct configurations among earlier trials, with their parameters as this study's space
    takes them (a value outside it is left for the sampler to draw): by final score, then trials judged only early by
    the early signal."""
    feasible = [v for v in views if not v.infeasible and v.state != "failed"]
    ranked: list[TrialView] = []
    finished = [v for v in feasible if v.final is not None]
    while finished and (best := best_trial(spec, finished)) is not None:
        ranked.append(best)
        finished = [v for v in finished if v is not best]
    ranked += rank_early(spec, [v for v in feasible if v.final is None])
    picked: list[tuple[TrialView, dict[str, Any]]] = []
    for view in ranked:
        params = {n: v for n, v in view.params.items() if n in space and _fits(space[n], v)}
        if params and all(params != p for _, p in picked):
            picked.append((view, params))
        if len(picked) == count:
            break
    return picked


class SearchStore:
    """A FineTuneStudy's Optuna study: snapshots for the planner, and the planner's records applied to it.

    Reads go to the storage every time, except inside `holding()`: there the study's user attributes (where the
    trial records live) are read once and kept current by this store's own writes, and the trials are read again
    only after a write that may have changed them. A reconcile reads the same attributes a dozen times (spec, phase,
    snapshot per pass, each record before it is updated); reading them once cut a stage's SQL statements by half.
    Sound because a study has one writer at a time: the operator runs one reconcile of a study at a time, and the
    planner writes only through this store."""

    def __init__(
        self, url: str, study: optuna.Study, spec: FineTuneStudySpec, storage: optuna.storages.BaseStorage
    ) -> None:
        self.url = url
        self.study = study
        self.spec = spec
        self.storage = storage
        """The study's storage, for writes that need no `optuna.trial.Trial` (whose construction reads the whole
        trial back: a third of the statements of recording an early result)."""
        self.policy = policy_of(spec)
        self._snapshot: dict[int, optuna.trial.FrozenTrial] = {}
        self._study_id: int | None = None
        self._holding = False
        self._attrs: dict[str, Any] | None = None
        self._trials: list[optuna.trial.FrozenTrial] | None = None
        self.warm_started: str = ""
        """What the warm start this store just did took, in words; empty when it did none (see `warm_start`)."""
        self.warm_failed: str = ""
        """Why the warm start this store just tried failed the study; empty when it did not."""

    @classmethod
    def open(cls, url: str, resource: FineTuneStudy) -> SearchStore:
        """Create the study on first use, reload it after that."""
        spec = resource.spec
        storage = open_storage(url)
        key = study_key(resource.metadata.namespace, resource.metadata.name)

        uid = resource.metadata.uid

        def create(name: str) -> optuna.Study:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                direction=study_direction(spec),
                sampler=make_sampler(spec),
                pruner=make_pruner(spec),
                load_if_exists=True,
            )

        def load() -> optuna.Study:
            study = create(key)
            owner = study.user_attrs.get(UID_ATTR)
            if uid is not None and owner is not None and owner != uid:
                study = create(f"{key}#{uid[:8]}")  # the name belongs to an earlier, deleted study: keep apart
            if SPEC_ATTR not in study.user_attrs:
                study.set_user_attr(SPEC_ATTR, _stored_spec(resource))
            if uid is not None and UID_ATTR not in study.user_attrs:
                study.set_user_attr(UID_ATTR, uid)
            name_objective(study, spec)
            return study

        store = cls(url, retrying(url, load, f"opening study {key}"), spec, storage)
        if spec.search.warm_start is not None:
            try:
                store.warm_start(resource)
            except WarmStartError as exc:
                # Recorded as the study's end with this spec: every shell reports it, and a corrected spec retries.
                store.set_phase(Decision((), "Failed", WARM_START_FAILED, str(exc)), resource)
                store.warm_failed = str(exc)
        return store

    @property
    def name(self) -> str:
        return self.study.study_name

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Within: the user attributes read once, the trials only again after a write (see the class docstring)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding, self._attrs, self._trials = False, None, None

    def _id(self) -> int:
        if self._study_id is None:
            self._study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return self._study_id

    def _user_attrs(self) -> dict[str, Any]:
        """The study's user attributes (not to be mutated: callers copy what they change). Read from the storage as it
        stores them, without `Study.user_attrs`' deep copy of every trial record."""
        if self._attrs is not None:
            return self._attrs
        attrs = self.storage.get_study_user_attrs(self._id())
        if self._holding:
            self._attrs = attrs
        return attrs

    def _set_user_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)
        if self._attrs is not None:
            self._attrs[key] = json.loads(json.dumps(value))  # as the storage returns it

    def stored_spec(self) -> dict[str, Any]:
        """The manifest the study was last run with."""
        return self._retry(lambda: dict(self._user_attrs().get(SPEC_ATTR, {})), "reading the spec")

    def update_spec(self, resource: FineTuneStudy) -> None:
        value = _stored_spec(resource)
        self._retry(lambda: self._set_attr_if_changed(SPEC_ATTR, value), "recording the spec")

    def _set_attr_if_changed(self, key: str, value: Any) -> None:
        if self._user_attrs().get(key) != value:
            self._set_user_attr(key, value)

    def _retry(self, operation: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            try:
                return operation()
            except Exception:
                self._attrs, self._trials = None, None  # a write may or may not have landed: read afresh
                raise

        return retrying(self.url, attempt, f"{self.name}: {what}")

    # Reading.

    def snapshot(self) -> tuple[list[TrialView], list[SweepView]]:
        """Trials and learning-curve points as the planner reads them."""

        def read() -> tuple[list[optuna.trial.FrozenTrial], dict[str, Any]]:
            trials = self._trials if self._trials is not None else self.study.get_trials(deepcopy=False)
            if self._holding:
                self._trials = trials
            return trials, self._user_attrs()

        frozen, attrs = self._retry(read, "reading trials")
        self._snapshot = {t.number: t for t in frozen}
        # A WAITING trial is a configuration queued by warm start: the planner sees it once `AskTrials` takes it.
        trials = [
            self._view(t, attrs.get(TRIAL_ATTR.format(t.number), {})) for t in frozen if t.state != OptunaState.WAITING
        ]
        sweep = [
            SweepView(
                samples=samples,
                outcome=_outcome(value.get("outcome")),
                failed_attempts=frozenset(value.get("failed", [])),
                disrupted_attempts=frozenset(value.get("disrupted", [])),
                repeat=repeat,
            )
            for key, value in attrs.items()
            if key.startswith(SWEEP_ATTR.format(""))
            for samples, repeat in [_sweep_point(key)]
        ]
        return trials, sorted(sweep, key=lambda s: (s.samples, s.repeat))

    def _view(self, trial: optuna.trial.FrozenTrial, record: Mapping[str, Any]) -> TrialView:
        state: TrialState = "failed" if record.get("gaveUp") else _STATES[trial.state]
        early = _outcome(record.get("early"))
        # Repairs after a crash between the Optuna write and the record (see the module docstring).
        if early is not None and not record.get("earlyApplied", True):
            early = None
        if early is not None and self.policy.tells_early and state == "running":
            early = None
        final = _outcome(record.get("final"))
        return TrialView(
            number=trial.number,
            state=state,
            params=dict(trial.params),
            early=early,
            final=final,
            infeasible=bool(record.get("infeasible") or trial.user_attrs.get(INFEASIBLE_ATTR)),
            failed_attempts={s: frozenset(a) for s, a in record.get("failed", {}).items()},
            disrupted_attempts={s: frozenset(a) for s, a in record.get("disrupted", {}).items()},
            reason=record.get("reason", ""),
            cancelled=bool(record.get("cancelled")),
            source=str(trial.user_attrs.get(SOURCE_ATTR, "")),
            reused=bool(trial.user_attrs.get(REUSED_ATTR)),
            copied=frozenset(trial.user_attrs.get(COPIED_ATTR, ())),
        )

    def phase(self) -> dict[str, Any]:
        return self._retry(lambda: dict(self._user_attrs().get(PHASE_ATTR, {})), "reading the phase")

    def ended(self, resource: FineTuneStudy) -> dict[str, Any] | None:
        """The study's end as the storage recorded it (phase, reason, message), when it ended with the spec it has
        now; None while it runs, or once its spec changed since (a raised budget resumes it). The storage's own
        record: a status patch cannot forge it."""
        recorded = self.phase()
        if recorded.get("phase") in ("Succeeded", "Failed") and recorded.get("spec") == _digest(resource):
            return recorded
        return None

    # Writing.

    def _record(self, trial: int) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(json.dumps(self._user_attrs().get(TRIAL_ATTR.format(trial), {})))
        return record

    def _save(self, trial: int, record: Mapping[str, Any]) -> None:
        self._set_user_attr(TRIAL_ATTR.format(trial), dict(record))

    def _frozen(self, number: int) -> optuna.trial.FrozenTrial:
        """The trial as the last snapshot read it (the planner's records follow a snapshot: reading every trial
        again per record was a third of a busy operator's storage time); read afresh when it is newer."""
        if number not in self._snapshot:
            self._snapshot = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        return self._snapshot[number]

    def _trial(self, number: int) -> optuna.trial.Trial:
        return optuna.trial.Trial(self.study, self._frozen(number)._trial_id)

    def _set_trial_user_attr(self, number: int, key: str, value: Any) -> None:
        """What `Trial.set_user_attr` stores, without building a `Trial`; nothing once the trial has finished."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(self._frozen(number)._trial_id, key, value)

    def _set_trial_user_attrs(self, number: int, attrs: Mapping[str, Any]) -> None:
        """Each of `attrs` as `_set_trial_user_attr` stores it; nothing once the trial has finished (a stage recorded
        again after a crash that followed its tell: the attributes were written before it)."""
        frozen = self._frozen(number)
        if frozen.state.is_finished():
            return
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            for key, value in attrs.items():
                self.storage.set_trial_user_attr(frozen._trial_id, key, value)

    def _constrain(self, number: int, infeasible: bool) -> None:
        """Record feasibility as an Optuna constraint (> 0 violates it), once: constraint-aware samplers (TPE,
        GP) then steer away from configurations that ran out of memory. Stored where `Trial.set_constraint` stores
        it, without building a `Trial` (GP needs a constraint on every trial, so feasible ones get 0)."""
        frozen = self._frozen(number)
        if frozen.state.is_finished() or CONSTRAINT_KEY in frozen.system_attrs:
            return
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # finished since the snapshot
            self.storage.set_trial_system_attr(frozen._trial_id, CONSTRAINT_KEY, 1.0 if infeasible else 0.0)

    def apply(self, action: Action) -> list[int]:
        """Apply one planner record or ask; returns the numbers of trials asked (empty otherwise)."""
        return self._retry(lambda: self._apply(action), type(action).__name__)

    def _held(self, trial: optuna.trial.FrozenTrial) -> None:
        """Keep the held trials current with a trial as it now is (a new one, or one that `tell` returned), rather
        than reading them all again on the next pass: a trial's state changes only through this store."""
        if self._trials is not None:
            self._trials = sorted([*(t for t in self._trials if t.number != trial.number), trial], key=_number)

    def _tell(self, number: int, value: float | None = None, state: OptunaState | None = None) -> None:
        self._held(self.study.tell(number, value, state=state, skip_if_finished=True))

    def _ask(self, space: dict[str, BaseDistribution]) -> int:
        trial = self.study.ask(fixed_distributions=space)
        # As a read would return it: running, with the parameters just drawn (and no attributes yet).
        self._held(
            optuna.trial.FrozenTrial(
                number=trial.number,
                state=OptunaState.RUNNING,
                value=None,
                datetime_start=trial.datetime_start,
                datetime_complete=None,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=trial.user_attrs,  # a queued configuration's source
                system_attrs={},
                intermediate_values={},
                trial_id=trial._trial_id,
            )
        )
        return trial.number

    def _apply(self, action: Action) -> list[int]:
        if isinstance(action, AskTrials):
            space = distributions(self.spec)
            asked = []
            for _ in range(action.count):
                asked.append(self._ask(space))
                failpoint("ask")
            return asked
        if isinstance(action, RecordEarly):
            self._constrain(action.trial, infeasible=False)
            self._set_trial_user_attrs(action.trial, score_attrs("early", action.outcome))  # before the tell or prune
            record = self._record(action.trial)
            if action.report_to_pruner:
                record["early"], record["earlyApplied"] = asdict(action.outcome), False
                self._save(action.trial, record)
                trial = self._trial(action.trial)
                self._trials = None  # its constraint and intermediate value: read again
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    # One rung for every trial: the early point is step 1 whatever a trial's step count.
                    trial.report(action.value, step=1)
                    if trial.should_prune():
                        self._tell(action.trial, state=OptunaState.PRUNED)
                record["earlyApplied"] = True
            else:
                self._tell(action.trial, action.value)
                failpoint("tell")
                record["early"] = asdict(action.outcome)
            self._save(action.trial, record)
        elif isinstance(action, RecordFinal):
            if action.value is not None:
                self._set_trial_user_attrs(action.trial, score_attrs("final", action.outcome))  # before its tell
                self._tell(action.trial, action.value)
                failpoint("tell")
            else:
                # Told its early score already (proxy): finished, so its final goes on the study. Before the record,
                # so a crash between them writes it again with the record the planner proposes again.
                self._set_attr_if_changed(FINAL_ATTR.format(action.trial), scores(action.outcome))
            record = self._record(action.trial)
            record["final"] = asdict(action.outcome)
            self._save(action.trial, record)
        elif isinstance(action, RecordInfeasible):
            self._set_trial_user_attr(action.trial, INFEASIBLE_ATTR, True)
            self._constrain(action.trial, infeasible=True)
            worst = float("inf") if self.study.direction == optuna.study.StudyDirection.MINIMIZE else 0.0
            self._tell(action.trial, worst)
            record = self._record(action.trial)
            record.update(infeasible=True, reason=f"out of memory in stage {action.stage}: {action.message}"[:500])
            self._save(action.trial, record)
        elif isinstance(action, RecordFailure):
            self._record_failure(action)
        elif isinstance(action, FailTrial):
            # Shown by optuna-dashboard next to the trial (not stored once it finished: the record says why then).
            self._set_trial_user_attr(action.trial, FAILURE_ATTR, action.reason[:500])
            self._tell(action.trial, state=OptunaState.FAIL)
            record = self._record(action.trial)
            # A proxy trial is already COMPLETE in Optuna (told its early score) when its final stage gives up:
            # the record says it failed, once, so the planner neither fails it again nor waits for its final.
            record.update(gaveUp=True, reason=action.reason[:500], cancelled=action.cancelled)
            self._save(action.trial, record)
        elif isinstance(action, RecordSweepPoint):
            key = _sweep_attr(action.samples, action.repeat)
            point = dict(self._user_attrs().get(key, {}))
            point["outcome"] = asdict(action.outcome)
            self._set_user_attr(key, point)
        return []

    def _record_failure(self, action: RecordFailure) -> None:
        bucket = "disrupted" if action.disruption else "failed"
        key = action.key
        if key.kind == "sweep":
            attr = _sweep_attr(key.number, key.repeat)
            point = dict(self._user_attrs().get(attr, {}))
            point[bucket] = sorted({*point.get(bucket, []), key.attempt})
            self._set_user_attr(attr, point)
            return
        record = self._record(key.number)
        attempts = record.setdefault(bucket, {})
        attempts[key.stage] = sorted({*attempts.get(key.stage, []), key.attempt})
        record["reason"] = action.reason[:500]
        self._save(key.number, record)

    def set_phase(self, decision: Decision, resource: FineTuneStudy) -> bool:
        """Record the study's phase, and with it the spec it has (see `ended`); True when the phase changed."""
        value = {
            "phase": decision.phase,
            "reason": decision.reason,
            "message": decision.message[:500],
            "spec": _digest(resource),
        }

        def record() -> bool:
            before = self._user_attrs().get(PHASE_ATTR, {})
            if before != value:
                self._set_user_attr(PHASE_ATTR, value)
            return bool(before.get("phase") != decision.phase)

        return self._retry(record, "recording the phase")

    # Warm start.

    def warm_start(self, resource: FineTuneStudy) -> dict[str, Any]:
        """Take what `spec.search.warmStart` names from earlier studies, once; returns what was taken (`WARM_ATTR`).

        `results`: each finished trial of a compatible study (`reuse_differences`) becomes a trial of this study, told
        to its sampler as it was told to the earlier one, with its early and final records, so the planner never runs
        a stage for it. `configs` (and `results` from an incompatible study): the best configurations are queued as
        this study's first trials. Restart-safe: a copied or queued trial names its source (`SOURCE_ATTR`), so a
        crash halfway copies only what is missing, and `WARM_ATTR` is written last. Only a study that has proposed
        no trial of its own is warm-started. Raises `WarmStartError` for a study the storage does not have."""
        warm = self.spec.search.warm_start
        assert warm is not None
        done = self.warm_summary()
        if done is not None:
            return done
        with self.holding():  # every copied record updates the study's attributes: read them once
            return self._retry(lambda: self._warm_start(resource), "warm start")

    def warm_summary(self) -> dict[str, Any] | None:
        """What warm start took from earlier studies (`WARM_ATTR`); None when the study has none (yet)."""
        done = self._retry(lambda: self._user_attrs().get(WARM_ATTR), "reading the warm start")
        return dict(done) if done is not None else None

    def _warm_start(self, resource: FineTuneStudy) -> dict[str, Any]:
        warm = self.spec.search.warm_start
        assert warm is not None
        own = self.study.get_trials(deepcopy=False)
        if any(SOURCE_ATTR not in t.user_attrs for t in own):
            summary = {"studies": [], "reused": 0, "enqueued": 0, "message": "not applied: the study had started"}
            self._set_user_attr(WARM_ATTR, summary)
            return summary
        sources = self._sources(resource, warm.studies)
        copied = {str(t.user_attrs[SOURCE_ATTR]): t.number for t in own if t.user_attrs.get(REUSED_ATTR)}
        queued = {str(t.user_attrs[SOURCE_ATTR]) for t in own if not t.user_attrs.get(REUSED_ATTR)}
        mine = _stored_spec(resource)
        notes, candidates = [], []
        reused = 0
        for source in sources:
            attrs = self.storage.get_study_user_attrs(source._study_id)
            trials = self.storage.get_all_trials(source._study_id, deepcopy=False)
            differences = reuse_differences(attrs.get(SPEC_ATTR, {}), mine)
            views = [(t, self._view(t, attrs.get(TRIAL_ATTR.format(t.number), {}))) for t in trials]
            if warm.reuse == "results" and not differences:
                count = self._copy(source.study_name, views, attrs, copied)
                reused += count
                notes.append(f"reused {count} trials of {source.study_name}")
                continue
            if warm.reuse == "results":
                notes.append(f"{source.study_name}: {', '.join(differences)} differ, so its configurations are reused")
            candidates += [(origin(source.study_name, t), view) for t, view in views]
        enqueued = self._enqueue(candidates, queued) if candidates else 0
        if candidates:
            notes.append(f"queued {enqueued} configurations as the first trials")
        message = "; ".join(notes)[:1024]
        summary = {
            "studies": [s.study_name for s in sources],
            "reused": reused,
            "enqueued": enqueued,
            "message": message,
        }
        self._set_user_attr(WARM_ATTR, summary)  # last: its presence means done
        self.warm_started = message
        return summary

    def _sources(self, resource: FineTuneStudy, names: Sequence[str]) -> list[FrozenStudy]:
        """The newest study of each name other than this one; raises `WarmStartError` for a name with none."""
        studies = [s for s in self.storage.get_all_studies() if s.study_name != self.name]
        found = []
        for name in names:
            key = study_key(resource.metadata.namespace, name)
            matching = _named(studies, key)
            if not matching:
                raise WarmStartError(
                    f"spec.search.warmStart.studies: no earlier study {name!r} (Optuna study {key!r}) in the storage "
                    f"{safe_url(self.url)}"
                )
            found.append(max(matching, key=lambda s: s._study_id))
        return found

    def _copy(
        self,
        source: str,
        views: Sequence[tuple[optuna.trial.FrozenTrial, TrialView]],
        attrs: Mapping[str, Any],
        copied: dict[str, int],
    ) -> int:
        """Copy the finished trials of `source` with their records (those already copied: only a missing record)."""
        count = 0
        study_id = self._id()
        for trial, view in views:
            if not _reusable(trial, view, self.policy.tells_early):
                continue
            where = origin(source, trial)
            number = copied.get(where)
            record = attrs.get(TRIAL_ATTR.format(trial.number), {})
            if number is None:
                stages = [stage for stage in ("early", "final") if record.get(stage)]
                # A new trial takes every stage's scores, the final of a source told early (`FINAL_ATTR`) included.
                scored = {k: v for stage in stages for k, v in score_attrs(stage, Outcome(**record[stage])).items()}
                template = optuna.trial.create_trial(
                    state=trial.state,
                    value=trial.value if trial.state == OptunaState.COMPLETE else None,
                    params=dict(trial.params),
                    distributions=dict(trial.distributions),
                    user_attrs={
                        **scored,
                        **trial.user_attrs,
                        SOURCE_ATTR: where,
                        REUSED_ATTR: True,
                        COPIED_ATTR: stages,
                    },
                    system_attrs=dict(trial.system_attrs),  # the constraint, and the grid sampler's visited point
                    intermediate_values=dict(trial.intermediate_values),
                )
                number = self.storage.get_trial_number_from_id(
                    self.storage.create_new_trial(study_id, template_trial=template)
                )
                copied[where] = number
                failpoint("warm-copy")
            if TRIAL_ATTR.format(number) not in self._user_attrs():
                self._save(number, {k: record[k] for k in ("early", "final", "infeasible", "reason") if k in record})
            count += 1
        return count

    def _enqueue(self, candidates: Sequence[tuple[str, TrialView]], queued: set[str]) -> int:
        """Queue the best configurations among `candidates` (already queued ones count) as the next trials asked."""
        space = distributions(self.spec)
        wanted = min(self.spec.search.early_evaluation.promote_top_k, self.spec.search.max_trials)
        picked = best_configs(self.spec, [view for _, view in candidates], wanted, space)
        where = {id(view): name for name, view in candidates}
        for view, params in picked:
            if where[id(view)] not in queued:
                self.study.enqueue_trial(params, user_attrs={SOURCE_ATTR: where[id(view)]})
                queued.add(where[id(view)])
        return len(picked)


def name_objective(study: optuna.Study, spec: FineTuneStudySpec) -> None:
    """Name the study's objective for what its sampler learns from (`Policy.objective_name`), once per name: a study
    created before names existed, or whose spec changed what it is told, is renamed when it is next opened."""
    name = [policy_of(spec).objective_name(spec)]
    if study.metric_names != name:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(name)


def preview_params(spec: FineTuneStudySpec, count: int) -> list[dict[str, Any]]:
    """The hyperparameters the study's sampler proposes first (in memory; nothing is stored)."""
    study = optuna.create_study(direction=study_direction(spec), sampler=make_sampler(spec))
    space = distributions(spec)
    return [dict(study.ask(fixed_distributions=space).params) for _ in range(count)]


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
    matching = _named(summaries, key)
    if not matching:
        known = ", ".join(sorted(s.study_name for s in summaries)) or "none"
        raise StorageError(f"no study {key!r} in {safe_url(url)} (studies there: {known})")
    name = max(matching).study_name  # summaries order by creation
    study = retrying(url, lambda: optuna.load_study(study_name=name, storage=storage), f"loading {name}")
    return study, dict(study.user_attrs.get(SPEC_ATTR, {}))
