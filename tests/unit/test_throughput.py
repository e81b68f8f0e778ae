"""Model FLOPs utilisation: the peak a GPU is measured against, found by its name."""

from __future__ import annotations

import pytest

from sweetspot_trainer.throughput import mfu, peak_tflops


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-40GB", 312.0),
        ("NVIDIA L40S", 362.0),  # not the L4's peak, though its name holds "L4"
        ("NVIDIA L4", 121.0),
        ("Tesla T4", None),
    ],
)
def test_the_peak_of_a_gpu_by_its_name(name: str, peak: float | None) -> None:
    assert peak_tflops(name) == peak


def test_mfu_counts_six_flops_per_parameter_per_token_over_every_gpu() -> None:
    # 135M parameters at 100,000 tokens/s: 81 TFLOP/s, over one H100 (989) and over two.
    assert mfu(135_000_000, 100_000.0, 989.0) == pytest.approx(81 / 989)
    assert mfu(135_000_000, 100_000.0, 989.0, devices=2) == pytest.approx(81 / 989 / 2)
    assert mfu(135_000_000, 100_000.0, None) is None
