"""Prometheus text expositions read back as data: every sample by metric name, with its labels and value."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sweetspot.observe.metrics import Metrics

Series = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Series:
    """Sample name → (labels, value) of each of its samples, in exposition order."""
    found: Series = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((dict(sample.labels), sample.value))
    return found


def series(metrics: Metrics) -> Series:
    """What a scrape of `metrics` would read, without a server."""
    return parse(generate_latest(metrics.registry).decode())
