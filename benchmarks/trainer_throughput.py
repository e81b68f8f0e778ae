"""Trainer throughput: Sweetspot's stage runner vs a bare transformers + peft loop on the same work.

Both train builtin:tiny (MiniLM-L6 + LoRA r16 on query/value, token-classification head) on the same
synthetic pages with the same batch size and sequence length, on the CPU, or on the GPU when there is one
(bf16 autocast, as the trainer uses). The bare loop is the least a LoRA fine-tune must do: forward, backward,
clip, AdamW step. Overhead of the trainer = everything else it does per step (data order, progress, scheduler).
Steps are timed after a warm-up tenth of the run. On CUDA it also prints tokens/s and an MFU estimate: model
FLOPs per token ≈ 6 * parameters (forward + backward; LoRA's frozen weights still cost their forward and the
backward through activations, so this slightly overstates the work of a LoRA step), against the GPU's dense
bf16 peak (`--peak-tflops`, default from the device name).

`--json FILE` writes one object per loop (`loop`, `stepsPerSecond`, `rowsPerSecond`, `ratio`: its steps/s over the
bare loop's, and on CUDA `tokensPerSecond` and `mfu`), with the setting of the run, to compare runs.

    python -m benchmarks trainer [--steps 60] [--batch-size 16] [--peak-tflops N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForTokenClassification, AutoTokenizer

from sweetspot.contract import TrialConfig
from sweetspot_trainer.data import builtin_rows
from sweetspot_trainer.demo import ATTRIBUTES
from sweetspot_trainer.extractive import ExtractiveTask, label_names
from sweetspot_trainer.model import minilm_dir
from sweetspot_trainer.train import StageRunner, available_cores

MAX_LENGTH = 160


def trainer_rate(steps: int, batch_size: int) -> float:
    stamps: list[tuple[float, int]] = []

    def progress(line: str) -> None:
        if " step " in line and "/" in line and "eval" not in line:
            step = int(line.split(" step ")[1].split("/")[0])
            stamps.append((time.perf_counter(), step))

    config = TrialConfig.model_validate(
        {
            "study": "bench",
            "trial": 0,
            "stage": "final",
            "model": {"builtin": "tiny", "maxSequenceLength": MAX_LENGTH},
            "train": {"builtin": "product-pages", "rows": steps * batch_size},
            "validation": {"builtin": "product-pages", "rows": 16},
            "seed": 0,
            "hyperparameters": {"batchSize": batch_size, "epochs": 1, "loraRank": 16, "learningRate": 1e-3},
        }
    )
    StageRunner(config, progress=progress).run()
    (t0, s0), (t1, s1) = stamps[0], stamps[-1]
    return (s1 - s0) / (t1 - t0)


PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
"""Dense bf16 peaks (no sparsity) by device-name fragment, for the MFU estimate."""


@dataclass(frozen=True)
class Bare:
    steps_per_second: float
    tokens_per_step: float
    """Positions processed per step, padding included (padding costs compute too)."""
    parameters: int


def bare_rate(steps: int, batch_size: int) -> Bare:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(available_cores())
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    labels = label_names(ATTRIBUTES)
    model = AutoModelForTokenClassification.from_pretrained(minilm_dir(), num_labels=len(labels))
    model = get_peft_model(
        model, LoraConfig(task_type=TaskType.TOKEN_CLS, r=16, lora_alpha=32, modules_to_save=["classifier"])
    ).to(device)
    task = ExtractiveTask(tokenizer, ATTRIBUTES, {"": ATTRIBUTES}, MAX_LENGTH)
    encoded = [task.encode(row) for row in builtin_rows("product-pages", steps * batch_size, 0)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    model.train()
    warm = max(1, steps // 10)
    start, tokens = 0.0, 0
    for step in range(steps):
        if step == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = {k: v.to(device) for k, v in task.collate(encoded[step * batch_size : (step + 1) * batch_size]).items()}
        tokens += batch["input_ids"].numel() if step >= warm else 0
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    if device.type == "cuda":
        torch.cuda.synchronize()
    measured = steps - warm
    return Bare(measured / (time.perf_counter() - start), tokens / measured, sum(p.numel() for p in model.parameters()))


def peak_tflops(given: float | None) -> float | None:
    if given is not None:
        return given
    name = torch.cuda.get_device_name()
    return next((peak for fragment, peak in PEAK_BF16_TFLOPS.items() if fragment in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU (default: by name)")
    parser.add_argument("--json", type=Path, help="also write the rows here (one object per loop)")
    args = parser.parse_args(argv)
    bare = bare_rate(args.steps, args.batch_size)
    ours = trainer_rate(args.steps, args.batch_size)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.cuda.is_available()
    where = torch.cuda.get_device_name() if cuda else f"{available_cores()} CPU threads"
    print(f"builtin:tiny, batch {args.batch_size}, max length {MAX_LENGTH}, {where}")
    header = f"{'loop':<28}{'steps/s':>10}{'rows/s':>10}"
    print(header + (f"{'tokens/s':>12}{'MFU':>8}" if cuda else ""))
    peak = peak_tflops(args.peak_tflops) if cuda else None
    setting = {"model": "builtin:tiny", "device": where, "batchSize": args.batch_size, "steps": args.steps}
    rows: list[dict[str, Any]] = []
    for label, rate in (("bare transformers + peft", bare.steps_per_second), ("sweetspot trainer", ours)):
        row = setting | {"loop": label, "stepsPerSecond": rate, "rowsPerSecond": rate * args.batch_size}
        row |= {"ratio": rate / bare.steps_per_second, "maxLength": MAX_LENGTH, "peakRssMiB": rss}
        line = f"{label:<28}{rate:>10.3f}{rate * args.batch_size:>10.1f}"
        if cuda:
            tokens = rate * bare.tokens_per_step
            mfu = 6 * bare.parameters * tokens / (peak * 1e12) if peak else None
            line += f"{tokens:>12.0f}" + (f"{mfu:>8.2%}" if mfu is not None else f"{'n/a':>8}")
            row |= {"tokensPerSecond": tokens, "mfu": mfu}
        print(line)
        rows.append(row)
    print(f"ratio (trainer / bare): {ours / bare.steps_per_second:.3f}   peak RSS of this process: {rss:.0f} MiB")
    if cuda and peak is None:
        print("MFU: unknown peak for this GPU; pass --peak-tflops")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
