"""`python -m benchmarks forecast`: the backtests it builds from kept runs and means, and the table it reports."""

from __future__ import annotations

from types import ModuleType

import pytest

from support import by_path


def load(name: str) -> ModuleType:
    return by_path.load(f"benchmarks/{name}.py", f"benchmarks_{name}")


bench = load("forecast")


def test_kept_runs_make_one_sweep_per_pair_and_triple_and_windows_start_at_the_onset() -> None:
    # 0 below the onset, then a clean saturating curve (every repeat the same but for a small offset).
    curve = {25: 0.0, 50: 0.673, 100: 0.71, 200: 0.736, 400: 0.755, 800: 0.768}
    data = {
        "points": [
            {"samples": n, "runs": [f1 + (0.004 * r if f1 else 0.0) for r in range(3)]} for n, f1 in curve.items()
        ]
    }
    sweeps = bench._sweeps(data)
    assert len(sweeps) == 3 + 1  # every pair and the triple of 3 repeats
    tests = bench.backtests("toy", data)
    # Per sweep, every window of 4 or more consecutive learned sizes (curve.MIN_POINTS: one more than the forms'
    # parameters) predicts each larger size: 50-400 predicts 800; the size at F1 0 is never fitted.
    assert all(t.fitted[0] >= 50 for t in tests)
    per_sweep = {(t.fitted, t.samples) for t in tests}
    assert len(tests) == len(per_sweep) * len(sweeps)
    assert per_sweep == {((50, 100, 200, 400), 800)}
    rows = bench.summary_rows(tests)
    overall = next(r for r in rows if r["data"] == "toy" and r["extrapolation"] == "all")
    assert overall["backtests"] == len(tests)
    assert overall["coverage"] == pytest.approx(sum(t.inside for t in tests) / len(tests))
    assert overall["coverage"] >= 0.7 and overall["medianAbsError"] < 0.03


def test_means_make_one_sweep_and_the_ae110k_answer_names_both_targets() -> None:
    data = bench.json.loads(bench.SETS["ae-110k"].read_text())
    assert [name for name, _ in bench._sweeps(data)] == ["mean"]
    answer = bench.answer_ae110k(data)
    assert set(answer["targets"]) == {"0.75", "0.80"}
    assert [p["samples"] for p in answer["forecast"]] == [3136, 6272, 12544]
    assert all(p["low"] <= p["f1"] <= p["high"] for p in answer["forecast"])
    text = bench.render(bench.summary_rows(bench.backtests("ae-110k", data)), answer)
    assert "| ae-110k | all |" in text and "F1 0.80:" in text
