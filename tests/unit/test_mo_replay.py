"""The multi-objective HPO replay (`benchmarks/mo_replay.py`): the hypervolume bookkeeping on a hand-made table
(numbers worked by hand, not by the code under test), the summary's target and ratios from traces alone, and
Sweetspot's multi-objective rows run end to end on the real planner and store."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from types import ModuleType
from typing import Any

import pytest

from support import by_path


def load(name: str) -> ModuleType:
    """`benchmarks.<name>` with its package (it imports `hpo_replay` relatively), found by path: the repository root
    is never put on sys.path (its `operator/` must not shadow Python's module)."""
    if "benchmarks" not in sys.modules:
        folder = by_path.ROOT / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"benchmarks.{name}")


mo = load("mo_replay")
replay = load("hpo_replay")
table_module = load("hpo_table")


def hand_made() -> Any:
    """Four configurations (final accuracy, full seconds): A (0.8, 30), B (0.6, 10), C (0.5, 20: dominated by B),
    D (0.4, 5). Reference: accuracy 0.4 - 10% of 0.4 = 0.36, seconds 30 + 10% of 25 = 32.5."""
    finals = {"A": (0.8, 30.0), "B": (0.6, 10.0), "C": (0.5, 20.0), "D": (0.4, 5.0)}
    rows = [
        {
            "config": index,
            "params": {"name": name},
            "plannedSteps": 10,
            "curve": [
                {"fraction": 0.5, "accuracy": score / 2, "loss": 1.0, "seconds": seconds / 2},
                {"fraction": 1.0, "accuracy": score, "loss": 0.5, "seconds": seconds},
            ],
        }
        for index, (name, (score, seconds)) in enumerate(finals.items())
    ]
    return replay.Table.of({"configs": rows})


TRUE_VOLUME = 27.5 * 0.04 + 22.5 * 0.2 + 2.5 * 0.2  # D's slab, B's above it, A's above B's: 6.1


def test_the_reference_point_and_the_true_front_of_a_table() -> None:
    volume = mo.Volume.of(hand_made())
    assert volume.reference == pytest.approx((-0.36, 32.5))
    assert volume.front == (0, 1, 3)  # C is dominated by B
    assert volume.total == pytest.approx(TRUE_VOLUME)


def test_a_front_trace_counts_what_was_trained_to_the_end_at_its_true_final() -> None:
    table = hand_made()
    a, b, c, d = table.configs
    trace = mo.FrontTrace.for_table(table)
    trace.pay(c.at(0.5).seconds)
    trace.ran(c, "early")  # an early stage adds nothing
    assert trace.history == [] and trace.incumbent is None
    trace.pay(c.final.seconds - c.at(0.5).seconds)
    trace.ran(c, "final")  # C alone: [20, 32.5] x [0.36, 0.5]
    for config in (b, c, a, d):  # B covers C; C again adds nothing; A above B; D's strip left of B
        trace.pay(config.final.seconds)
        trace.trained_to_end(config)
    shares = [12.5 * 0.14, 22.5 * 0.24, 22.5 * 0.24 + 2.5 * 0.2, TRUE_VOLUME]
    assert [s for s, _ in trace.history] == [20, 30, 80, 85]
    assert [h for _, h in trace.history] == pytest.approx([s / TRUE_VOLUME for s in shares])
    assert trace.incumbent == pytest.approx(1.0)
    assert trace.trained == [2, 1, 2, 0, 3] and trace.on_front == 3
    assert trace.compute_to(0.99) == 85 and trace.best_within(79) == pytest.approx(shares[1] / TRUE_VOLUME)


def front_trace(table: Any, *steps: tuple[float, int]) -> Any:
    """A run that had paid `spent` when it trained configuration `index` to the end, for each (spent, index)."""
    trace = mo.FrontTrace.for_table(table)
    for spent, index in steps:
        trace.pay(spent - trace.spent)
        trace.trained_to_end(table.configs[index])
    return trace


def test_the_summary_follows_from_the_traces_alone() -> None:
    """The target is 99% of the baseline's median share within the whole budget (65 s: every configuration once);
    a seed that never reached it counts as infinite compute, and the ratio divides medians."""
    table = hand_made()
    whole = (22.5 * 0.24 + 2.5 * 0.2) / TRUE_VOLUME  # B and A: the baseline's median seed
    traces = {
        mo.BASELINE: [
            front_trace(table, (10, 1), (40, 0), (45, 3)),  # B, then A: at the target at 40 s; then everything
            front_trace(table, (30, 0), (40, 1)),  # A, then B: `whole`, at 40 s
            front_trace(table, (15, 2)),  # C alone: never
        ],
        "mo-proxy@0.2": [
            front_trace(table, (5, 0), (12, 1)),  # 12 s
            front_trace(table, (5, 3), (50, 0), (60, 1)),  # 60 s
            front_trace(table, (10, 0), (12, 1), (20, 3)),  # 12 s
        ],
    }
    report = mo.summarize(table, traces)
    assert report["allOnce"] == 65 and report["baselineWhole"] == pytest.approx(whole)
    assert report["target"] == pytest.approx(0.99 * whole)
    assert report["trueFront"] == [0, 1, 3] and report["trueVolume"] == pytest.approx(TRUE_VOLUME)
    rows = {row["strategy"]: row for row in report["strategies"]}
    assert (rows[mo.BASELINE]["reached"], rows[mo.BASELINE]["medianCompute"]) == (2, 40)
    assert (rows["mo-proxy@0.2"]["reached"], rows["mo-proxy@0.2"]["medianCompute"]) == (3, 12)
    assert rows["mo-proxy@0.2"]["vsBaseline"] == pytest.approx(12 / 40) and rows[mo.BASELINE]["vsBaseline"] == 1
    # Within a quarter of 65 s: B alone, nothing, C alone; the median is C's share.
    assert rows[mo.BASELINE]["hv@25%"] == pytest.approx(12.5 * 0.14 / TRUE_VOLUME)
    assert rows["mo-proxy@0.2"]["hv@100%"] == pytest.approx(1.0)
    assert rows["mo-proxy@0.2"]["medianTrained"] == 3 and rows[mo.BASELINE]["medianOnFront"] == 2
    text = mo.render(table, report)
    assert "mo-proxy@0.2: goal" in text and "met: 0.30x" in text
    json.dumps(report)  # the --json output
    nothing = mo.summarize(table, {mo.BASELINE: [front_trace(table)], "late": [front_trace(table, (10, 0))]})
    late = nothing["strategies"][1]
    assert math.isinf(nothing["strategies"][0]["medianCompute"]) and late["medianCompute"] == 10
    assert math.isnan(late["vsBaseline"])  # nothing to compare with


def synthetic() -> dict[str, Any]:
    """12 configurations of the default space; final accuracy rises with the learning rate, a configuration costs
    10 s per epoch, curves rise like a square root (as `test_hpo_replay`'s table)."""
    rows = []
    for index, params in enumerate(table_module.configurations(12)):
        final = 0.4 + 0.5 * (math.log(params["learningRate"]) - math.log(1e-5)) / (math.log(5e-4) - math.log(1e-5))
        seconds = 10.0 * params["epochs"]
        curve = [
            {"fraction": k / 10, "accuracy": round(final * math.sqrt(k / 10), 4), "loss": 1 - final * k / 10,
             "seconds": seconds * k / 10}
            for k in range(1, 11)
        ]  # fmt: skip
        rows.append({"config": index, "params": params, "plannedSteps": 10, "curve": curve})
    return {"machine": "synthetic", "configs": rows}


@pytest.fixture(scope="module")
def table() -> Any:
    return replay.Table.of(synthetic())


def test_the_planner_values_a_finished_trial_as_the_replay_does(table: Any) -> None:
    """The real loop on a multi-objective study: every trial trained to the end is worth its configuration's true
    final (score, seconds) to `core.objectives` too (early and final stages together cost the full seconds), and the
    trace counted exactly those configurations."""
    import optuna

    from sweetspot.core.loop import settle
    from sweetspot.core.objectives import final_values, front
    from sweetspot.storage.store import SearchStore

    resource = replay._study(0, "proxy", 0.2, 10, early={"promoteTopK": 4}, objectives=mo.objectives(table))
    store = SearchStore.on(optuna.storages.InMemoryStorage(), resource)
    trace = mo.FrontTrace.for_table(table)
    runtime = replay.TableRuntime(table, 0.2, trace)
    for _ in range(100):
        if settle(resource, store, runtime, lambda _: None).finished:
            break
    trials, _ = store.snapshot()
    finished = [t for t in trials if t.final is not None]
    assert len(finished) >= 4
    for trial in finished:
        config = table.nearest(trial.params)
        assert final_values(resource.spec, trial) == pytest.approx([config.final.score, config.final.seconds])
    assert set(trace.points) == {table.nearest(t.params).index for t in finished}
    assert sorted(trace.trained) == sorted(table.nearest(t.params).index for t in finished)
    on_front = {table.nearest(t.params).index for t in front(resource.spec, trials)}
    assert trace.volume.share([mo.point(table.configs[i]) for i in on_front]) == pytest.approx(trace.incumbent)


@pytest.mark.parametrize("name", ["mo-proxy@0.2", "mo-prune@0.2", "mo-tpe-full"])
def test_a_multi_objective_row_runs_end_to_end(table: Any, name: str) -> None:
    strategy = mo.strategies(table)[name]
    for seed in range(2):
        trace = strategy(table, seed, table.all_once)
        assert trace.history and 0 < trace.incumbent <= 1 + 1e-9
        assert trace.spent < table.all_once + max(c.final.seconds for c in table.configs)
        shares = [h for _, h in trace.history]
        assert shares == sorted(shares) and len(set(shares)) == len(shares)  # recorded when it grew


def test_the_command_line_prints_the_table_and_writes_json(tmp_path: Any, capsys: Any) -> None:
    path, out = tmp_path / "table.json", tmp_path / "out.json"
    path.write_text(json.dumps(synthetic()))
    argv = ["--multi-objective", "--seeds", "2", "--table", str(path), "--only", "mo-random-full", "--json", str(out)]
    assert replay.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mo-tpe-full" in printed and "mo-random-full" in printed and "hv@25%" in printed
    report = json.loads(out.read_text())
    assert [row["strategy"] for row in report["strategies"]] == ["mo-random-full", "mo-tpe-full"]
