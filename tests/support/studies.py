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
