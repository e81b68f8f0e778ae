"""The Optuna layer against real storages: every test body runs on SQLite and on a throwaway PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest

from sweetspot.api.resource import FineTuneStudy
from sweetspot.core.planner import plan
from sweetspot.core.records import (
    AskTrials,
    FailTrial,
    Observed,
    Outcome,
    RecordEarly,
    RecordFailure,
    RecordFinal,
    RecordInfeasible,
    RecordSweepPoint,
    RunKey,
)
from sweetspot.storage.connect import StorageError, open_storage, safe_url
from sweetspot.storage.layout import scores
from sweetspot.storage.space import distributions, grid
from sweetspot.storage.store import SearchStore
from sweetspot.storage.studies import delete_study, load_study

from support.builders import outcome as outcome_of

pytestmark = pytest.mark.integration


def study(name: str = "s1", namespace: str = "default", uid: str | None = None, **search: Any) -> FineTuneStudy:
    return FineTuneStudy.model_validate(
        {
            "apiVersion": "sweetspot.dev/v1alpha1",
            "kind": "FineTuneStudy",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {
                "model": {"builtin": "tiny"},
                "dataset": {"train": {"builtin": "product-pages"}},
                "search": {"maxTrials": 4, "seed": 1, "earlyEvaluation": {"promoteTopK": 2}, **search},
            },
        }
    )


def outcome(score: float) -> Outcome:
    """F1 (the default objective) and accuracy both `score`."""
    return outcome_of(f1=score, loss=1 - score, seconds=12.0, attribute_accuracy={"brand": score})


def dashboard_get(storage_url: str, path: str) -> dict[str, Any]:
    """optuna-dashboard's own API, called as its web server would (WSGI)."""
    import io
    import json

    from optuna_dashboard import wsgi

    status: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    body = b"".join(wsgi(storage_url)(environ, lambda s, h, e=None: status.append(s)))
    assert status[-1].startswith("200"), status
    return json.loads(body)  # type: ignore[no-any-return]


def dashboard_study(storage_url: str, name: str) -> dict[str, Any]:
    (summary,) = [s for s in dashboard_get(storage_url, "/api/studies")["study_summaries"] if s["study_name"] == name]
    return dashboard_get(storage_url, f"/api/studies/{summary['study_id']}")


def attrs(serialized: list[dict[str, str]]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in serialized}


def stage_outcome(loss: float, f1: float, step: int, judged_at: float | None = None) -> Outcome:
    """Precision, recall and accuracy set apart from F1, so each attribute is seen to be the right one."""
    return Outcome(
        accuracy=round(f1 - 0.1, 4),
        loss=loss,
        token_f1=f1,
        attribute_accuracy={},
        seconds=3.0,
        gpu_seconds=0.0,
        step=step,
        planned_steps=100,
        samples=300,
        f1=f1,
        precision=round(f1 + 0.05, 4),
        recall=round(f1 - 0.05, 4),
        judged_at=judged_at,
    )


def early_outcome(loss: float, f1: float) -> Outcome:
    return stage_outcome(loss, f1, step=25, judged_at=0.25)


def final_outcome(loss: float, f1: float) -> Outcome:
    return stage_outcome(loss, f1, step=100)


EARLY_0 = {
    "early:f1": 0.5,
    "early:precision": 0.55,
    "early:recall": 0.45,
    "early:loss": 0.9,
    "early:accuracy": 0.4,
    "early:fraction": 0.25,
    "early:step": 25,
}


def test_ask_record_and_reload_after_a_restart(storage_url: str) -> None:
    resource = study()
    store = SearchStore.open(storage_url, resource)
    assert store.apply(AskTrials(2)) == [0, 1]
    trials, _ = store.snapshot()
    assert [t.number for t in trials] == [0, 1]
    assert set(trials[0].params) == {"learningRate", "loraRank", "loraAlpha", "loraDropout", "batchSize", "epochs"}
    store.apply(RecordEarly(0, outcome(0.6), 0.6, report_to_pruner=False))
    store.apply(RecordFailure(RunKey("trial", 1, "early"), "exit 1", disruption=False))
    store.apply(RecordFailure(RunKey("trial", 1, "early", 1), "preempted", disruption=True))

    reopened = SearchStore.open(storage_url, resource)  # what a restarted operator does
    trials, _ = reopened.snapshot()
    assert trials[0].state == "complete" and trials[0].early == outcome(0.6)
    assert trials[1].failed_attempts == {"early": frozenset({0})}
    assert trials[1].disrupted_attempts == {"early": frozenset({1})}
    assert reopened.study.trials[0].value == 0.6
    reopened.apply(RecordFinal(0, outcome(0.8), None))
    reopened.apply(FailTrial(1, "gave up"))
    reopened.apply(RecordSweepPoint(100, outcome(0.7)))
    trials, sweep = reopened.snapshot()
    assert trials[0].final == outcome(0.8)
    assert (trials[1].state, trials[1].reason) == ("failed", "gave up")
    assert [(p.samples, p.outcome) for p in sweep] == [(100, outcome(0.7))]


def test_a_promoted_trial_whose_final_gives_up_fails_once_and_is_replaced(storage_url: str) -> None:
    """Proxy: a trial is COMPLETE in Optuna once told its early score; if its final stage then fails for good,
    the trial must count as failed exactly once and the next-best early trial be promoted in its place."""
    resource = study(maxTrials=3, earlyEvaluation={"promoteTopK": 1})
    spec = resource.spec
    store = SearchStore.open(storage_url, resource)
    store.apply(AskTrials(3))
    for number, accuracy in enumerate([0.8, 0.5, 0.7]):
        store.apply(RecordEarly(number, outcome(accuracy), accuracy, report_to_pruner=False))
    for attempt in range(spec.trial.retries + 1):
        store.apply(RecordFailure(RunKey("trial", 0, "final", attempt), "exit 1", disruption=False))

    trials, sweep = store.snapshot()
    decision = plan(spec, Observed(trials, sweep))
    (give_up,) = decision.actions
    assert isinstance(give_up, FailTrial) and give_up.trial == 0
    store.apply(give_up)

    trials, sweep = store.snapshot()
    assert [t.state for t in trials] == ["failed", "complete", "complete"]
    decision = plan(spec, Observed(trials, sweep))
    assert not any(isinstance(a, FailTrial) for a in decision.actions)
    starts = [str(a.key) for a in decision.actions if hasattr(a, "key")]
    assert starts == ["t2-final"], decision


def test_two_namespaces_never_share_a_study(storage_url: str) -> None:
    a = SearchStore.open(storage_url, study(namespace="team-a"))
    b = SearchStore.open(storage_url, study(namespace="team-b"))
    a.apply(AskTrials(3))
    assert len(b.snapshot()[0]) == 0
    assert (a.name, b.name) == ("team-a/s1", "team-b/s1")


def test_out_of_memory_is_a_constraint_violation(storage_url: str) -> None:
    store = SearchStore.open(storage_url, study())
    store.apply(AskTrials(1))
    store.apply(RecordInfeasible(0, "early", "CUDA out of memory"))
    (trial,), _ = store.snapshot()
    assert trial.infeasible and trial.state == "complete"
    frozen = store.study.trials[0]
    assert frozen.system_attrs["constraints:outOfMemory"] == 1.0


def test_a_crash_between_tell_and_record_is_repaired(storage_url: str) -> None:
    resource = study()
    store = SearchStore.open(storage_url, resource)
    store.apply(AskTrials(1))
    store.study.tell(0, 0.6)  # the tell happened; the operator died before it wrote the record
    trials, sweep = store.snapshot()
    decision = plan(resource.spec, Observed(trials, sweep))
    # The planner does not know the early outcome yet, so it is proposed again (once its run is observed).
    assert trials[0].early is None and trials[0].state == "complete"
    assert decision.phase == "Searching"


def test_prune_policy_reports_to_the_pruner(storage_url: str) -> None:
    store = SearchStore.open(storage_url, study(earlyEvaluation={"policy": "prune", "pruner": "median"}))
    store.apply(AskTrials(4))
    for number, accuracy in enumerate((0.9, 0.8, 0.92, 0.1)):
        store.apply(RecordEarly(number, outcome(accuracy), accuracy, report_to_pruner=True))
        if number < 3:
            store.apply(RecordFinal(number, outcome(accuracy + 0.05), accuracy + 0.05))
    trials, _ = store.snapshot()
    assert [t.state for t in trials] == ["complete", "complete", "complete", "pruned"]
    assert trials[3].early == outcome(0.1)


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random", "cmaes", "qmc"])
def test_every_sampler_proposes_inside_the_space(sampler: str, tmp_path: Any) -> None:
    resource = study(sampler=sampler, maxTrials=8)
    store = SearchStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}", resource)
    space = distributions(resource.spec)
    for number in range(6):
        store.apply(AskTrials(1))
        store.apply(RecordEarly(number, outcome(0.1 * number), 0.1 * number, report_to_pruner=False))
    for trial in store.study.trials:
        for name, value in trial.params.items():
            assert space[name]._contains(space[name].to_internal_repr(value))


def test_grid_sampler_walks_the_whole_grid(tmp_path: Any) -> None:
    resource = study(
        sampler="grid",
        maxTrials=6,
        space={"learningRate": {"values": [0.001, 0.01]}, "loraRank": {"min": 4, "max": 12, "step": 4}},
    )
    assert grid(resource.spec) == {"learningRate": [0.001, 0.01], "loraRank": [4, 8, 12]}
    store = SearchStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}", resource)
    store.apply(AskTrials(6))
    seen = {(t.params["learningRate"], t.params["loraRank"]) for t in store.study.trials}
    assert len(seen) == 6


def test_wrong_password_is_a_clear_error_without_the_password(postgres_server_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server_url).set(username="nobody", password="s3cret-pw", database="absent")
    text = url.render_as_string(hide_password=False)
    with pytest.raises(StorageError) as caught:
        open_storage(text)
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "cannot open the storage postgresql+psycopg://nobody:***@" in message


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="cannot open the storage"):
        open_storage("postgresql+psycopg://user:pw@127.0.0.1:1/db")
    assert safe_url("postgresql+psycopg://user:pw@host/db") == "postgresql+psycopg://user:***@host/db"


def test_optuna_and_optuna_dashboard_read_the_study(storage_url: str) -> None:
    store = SearchStore.open(storage_url, study())
    store.apply(AskTrials(1))
    store.apply(RecordEarly(0, outcome(0.5), 0.5, report_to_pruner=False))
    loaded = optuna.load_study(study_name="default/s1", storage=storage_url)
    assert loaded.best_value == 0.5
    assert "sweetspot:spec" in loaded.user_attrs

    # optuna-dashboard's own API lists the study and its trial.
    assert [t["number"] for t in dashboard_study(storage_url, "default/s1")["trials"]] == [0]


def test_proxy_optuna_tools_show_the_early_value_it_learns_from_and_each_stage_s_scores(storage_url: str) -> None:
    """Proxy: the study's value is the early signal, so its metric name says so; a trial's early scores are its user
    attributes (written before the tell); its final, reached once the trial is finished, is on the study."""
    resource = study(earlyEvaluation={"atFraction": 0.25, "promoteTopK": 1})
    store = SearchStore.open(storage_url, resource)
    assert store.study.metric_names == ["early validation loss at 25% of steps"]
    store.apply(AskTrials(2))
    store.apply(RecordEarly(0, early_outcome(0.9, 0.5), 0.9, report_to_pruner=False))
    store.apply(RecordEarly(1, early_outcome(1.2, 0.3), 1.2, report_to_pruner=False))
    trial = store.study.trials[0]
    assert (trial.state, trial.value) == (optuna.trial.TrialState.COMPLETE, 0.9)
    assert {k: v for k, v in trial.user_attrs.items() if k.startswith("early:")} == EARLY_0
    assert not any(k.startswith("final:") for k in trial.user_attrs)

    store.apply(RecordFinal(0, final_outcome(0.4, 0.8), None))
    assert store.study.trials[0].user_attrs == trial.user_attrs  # Optuna refuses to update a finished trial
    final = {"f1": 0.8, "precision": 0.85, "recall": 0.75, "loss": 0.4, "accuracy": 0.7, "fraction": 1.0, "step": 100}
    assert store.study.user_attrs["final:trial:0"] == final == scores(final_outcome(0.4, 0.8))
    # Recorded again (a crash after the tell, before the record): nothing raises, nothing changes.
    store.apply(RecordEarly(0, early_outcome(0.9, 0.5), 0.9, report_to_pruner=False))
    store.apply(RecordFinal(0, final_outcome(0.4, 0.8), None))
    assert store.study.trials[0].user_attrs == trial.user_attrs
    assert SearchStore.open(storage_url, resource).snapshot()[0][0].final == final_outcome(0.4, 0.8)

    # What optuna-dashboard serves its pages and plots from.
    detail = dashboard_study(storage_url, "default/s1")
    assert detail["objective_names"] == ["early validation loss at 25% of steps"]
    assert detail["directions"] == ["minimize"]
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    assert set(EARLY_0) <= sortable  # numbers: columns to sort by, targets to plot
    assert attrs(detail["trials"][0]["user_attrs"])["early:f1"] == "0.5"
    assert json.loads(attrs(detail["user_attrs"])["final:trial:0"]) == final


def test_prune_optuna_tools_show_the_final_value_it_learns_from_and_each_stage_s_scores(storage_url: str) -> None:
    """Prune: the study's value is the final objective (the early one is the pruner's intermediate value); a trial
    runs on after its early stage, so both stages' scores are its own user attributes."""
    store = SearchStore.open(storage_url, study(earlyEvaluation={"policy": "prune", "pruner": "median"}))
    assert store.study.metric_names == ["final F1"]
    store.apply(AskTrials(1))
    store.apply(RecordEarly(0, early_outcome(0.9, 0.5), 0.5, report_to_pruner=True))
    assert store.study.trials[0].state == optuna.trial.TrialState.RUNNING
    store.apply(RecordFinal(0, final_outcome(0.4, 0.8), 0.8))
    trial = store.study.trials[0]
    assert (trial.state, trial.value, trial.intermediate_values) == (optuna.trial.TrialState.COMPLETE, 0.8, {1: 0.5})
    assert {k: v for k, v in trial.user_attrs.items() if k.startswith("early:")} == EARLY_0
    assert {k: v for k, v in trial.user_attrs.items() if k.startswith("final:")} == {
        f"final:{k}": v for k, v in scores(final_outcome(0.4, 0.8)).items()
    }
    assert not any(k.startswith("final:trial:") for k in store.study.user_attrs)
    assert dashboard_study(storage_url, "default/s1")["objective_names"] == ["final F1"]


def test_a_study_from_before_metric_names_is_named_when_opened_once(storage_url: str) -> None:
    """Restart-safe: a study an earlier Sweetspot created (no metric name) is named by the next operator to open it,
    a spec that changes what the sampler is told renames it, and opening it again writes nothing."""
    import sqlalchemy

    old = optuna.create_study(storage=storage_url, study_name="default/s1", direction="minimize")
    old.enqueue_trial({})
    old.tell(old.ask(), 0.7)
    assert old.metric_names is None
    store = SearchStore.open(storage_url, study())
    assert store.study.metric_names == ["early validation loss at 20% of steps"]
    assert [t.value for t in store.study.trials] == [0.7]  # nothing else changed
    renamed = SearchStore.open(storage_url, study(earlyEvaluation={"signal": "f1", "minAgreement": 0.6}))
    assert renamed.study.metric_names == ["early F1 at 20% of steps (the guard may widen it up to 50%)"]

    writes: list[str] = []
    engine = open_storage(storage_url).engine

    def count(*args: Any) -> None:
        if not args[2].lstrip().upper().startswith("SELECT"):
            writes.append(args[2])

    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        SearchStore.open(storage_url, study(earlyEvaluation={"signal": "f1", "minAgreement": 0.6}))
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    assert not [w for w in writes if "system_attr" in w], writes


def test_deleting_a_study_removes_it_and_only_it(storage_url: str) -> None:
    SearchStore.open(storage_url, study("doomed")).apply(AskTrials(1))
    SearchStore.open(storage_url, study("kept"))
    delete_study(storage_url, "default/doomed")
    with pytest.raises(StorageError, match="no study 'default/doomed'"):
        load_study(storage_url, "default/doomed")
    assert load_study(storage_url, "default/kept")[0].study_name == "default/kept"
    with pytest.raises(StorageError, match="no study"):
        delete_study(storage_url, "default/doomed")


def test_a_study_re_created_under_a_kept_name_starts_afresh(storage_url: str) -> None:
    first = SearchStore.open(storage_url, study("again", uid="11111111-aaaa"))
    first.apply(AskTrials(3))
    # The resource is deleted with onDelete: keep, and created again: a new uid.
    second = SearchStore.open(storage_url, study("again", uid="22222222-bbbb"))
    assert second.name == "default/again#22222222"
    assert second.snapshot()[0] == []
    assert second.apply(AskTrials(1)) == [0]
    # Each incarnation finds its own study after a restart, and the old trials are still there to read.
    assert len(SearchStore.open(storage_url, study("again", uid="11111111-aaaa")).snapshot()[0]) == 3
    assert len(SearchStore.open(storage_url, study("again", uid="22222222-bbbb")).snapshot()[0]) == 1
    # A report by name reads the newest; the full name reads exactly that one.
    assert load_study(storage_url, "default/again")[0].study_name == "default/again#22222222"
    assert len(load_study(storage_url, "default/again#22222222")[0].trials) == 1
    # Deleting the new one (onDelete: delete) leaves the old one alone.
    delete_study(storage_url, second.name)
    assert load_study(storage_url, "default/again")[0].study_name == "default/again"


def test_sweep_repeats_are_kept_apart(storage_url: str) -> None:
    store = SearchStore.open(storage_url, study())
    store.apply(RecordSweepPoint(100, outcome(0.6)))
    store.apply(RecordSweepPoint(100, outcome(0.7), repeat=1))
    store.apply(RecordFailure(RunKey("sweep", 200, "full", 0, repeat=2), "exit 1", disruption=False))
    _, sweep = SearchStore.open(storage_url, study()).snapshot()
    assert [(p.samples, p.repeat, p.outcome.accuracy if p.outcome else None, p.failed_attempts) for p in sweep] == [
        (100, 0, 0.6, frozenset()),
        (100, 1, 0.7, frozenset()),
        (200, 2, None, frozenset({0})),
    ]


@pytest.mark.parametrize("policy", ["proxy", "prune"])
def test_a_held_store_sees_what_a_fresh_read_sees_with_fewer_statements(storage_url: str, policy: str) -> None:
    """Inside `holding()` the store keeps its trials and records current from its own writes instead of reading
    them again; every snapshot must still equal what a store that reads everything afresh sees."""
    import sqlalchemy

    resource = study(maxTrials=4, earlyEvaluation={"policy": policy, "pruner": "median", "promoteTopK": 2})
    store = SearchStore.open(storage_url, resource)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    actions = [
        AskTrials(3),
        RecordEarly(0, outcome(0.6), 0.6, report_to_pruner=policy == "prune"),
        RecordInfeasible(1, "early", "CUDA out of memory"),
        RecordFailure(RunKey("trial", 2, "early"), "exit 1", disruption=False),
        RecordFinal(0, outcome(0.7), 0.7 if policy == "prune" else None),
        FailTrial(2, "gave up"),
        AskTrials(1),
        RecordSweepPoint(100, outcome(0.7)),
    ]
    engine = open_storage(storage_url).engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        with store.holding():
            for action in actions:
                store.apply(action)
                held = store.snapshot()
                assert held == SearchStore.open(storage_url, resource).snapshot(), action
            statements.clear()
            assert store.snapshot() == held and store.stored_spec()
            assert statements == []  # nothing written since: nothing read again
        assert store.snapshot() == held and statements  # outside, every read goes to the storage
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
