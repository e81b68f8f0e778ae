"""Training throughput: tokens per second and, on CUDA, model FLOPs utilisation (MFU).

MFU counts 6 FLOPs per parameter per token (forward 2, backward 4), the usual estimate: a LoRA step skips the
frozen weights' gradients (about a third of the backward), so this overstates a LoRA step's work and the MFU
reads high by up to a third against a full fine-tune's. The peak is the GPU's dense bf16 rate (no sparsity), by
device name.
"""

from __future__ import annotations

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
"""Dense bf16 peaks by device-name fragment, most specific first (`L40S` before `L4`)."""


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name (`torch.cuda.get_device_name()`), or None when not known."""
    return next((peak for fragment, peak in PEAK_BF16_TFLOPS.items() if fragment in device_name), None)


def mfu(parameters: int, tokens_per_second: float, peak: float | None, devices: int = 1) -> float | None:
    """Model FLOPs utilisation of `devices` GPUs of `peak` TFLOP/s each (None when the peak is unknown)."""
    if not peak or devices < 1:
        return None
    return 6 * parameters * tokens_per_second / (peak * 1e12 * devices)
