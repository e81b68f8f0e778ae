"""Study manifests small enough for tests: three trials of a few steps each on the built-in model and data."""

from __future__ import annotations

from typing import Any


def small_study(name: str, namespace: str | None = None, **search: Any) -> dict[str, Any]:
    """A FineTuneStudy manifest; `search` overrides or extends `spec.search`."""
    metadata: dict[str, Any] = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {
        "apiVersion": "sweetspot.dev/v1alpha1",
        "kind": "FineTuneStudy",
        "metadata": metadata,
        "spec": {
            "model": {"builtin": "tiny", "maxSequenceLength": 128},
            "dataset": {
                "train": {"builtin": "product-pages", "rows": 200},
                "validation": {"builtin": "product-pages", "rows": 40},
                "samples": 64,
            },
            "search": {
                "maxTrials": 3,
                "earlyEvaluation": {"atFraction": 0.25, "promoteTopK": 1, "signal": "loss"},
                "space": {
                    "learningRate": {"min": 1e-3, "max": 1e-2, "log": True},
                    "batchSize": {"values": [16]},
                    "epochs": {"values": [1]},
                },
                **search,
            },
        },
    }


def one_trial_study(name: str, namespace: str | None = None, **search: Any) -> dict[str, Any]:
    """One trial of 48 steps (192 rows in steps of 8, two epochs; early: the first 24), promoted to its final: long
    enough for a test to stop a stage while it trains."""
    manifest = small_study(
        name,
        namespace,
        **{
            "maxTrials": 1,
            "earlyEvaluation": {"atFraction": 0.5, "promoteTopK": 1, "signal": "loss"},
            "space": {"learningRate": {"values": [3e-3]}, "batchSize": {"values": [8]}, "epochs": {"values": [2]}},
        }
        | search,
    )
    manifest["spec"]["dataset"]["samples"] = 192
    return manifest
