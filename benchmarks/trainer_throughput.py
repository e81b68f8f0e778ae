"""Trainer throughput: Sweetspot's stage runner vs a bare transformers + peft loop on the same work.

Both loops do the same model work: the same model with the same LoRA adapter (rank 16, alpha 32, dropout 0.05:
the trainer's defaults), the same rows in the same micro-batches, in the same order and padded alike (the bare
loop takes the trainer's own prepared sample and `BatchOrder`, and collates each step inside the timed loop as the
trainer does), on the CPU, or on the GPU when there is one (bf16 autocast, as the trainer uses):
- `--model tiny` (default): builtin:tiny, MiniLM-L6 + LoRA on query/value with a token-classification head; both
  loops compute the model's own loss (one category: no label masking), so the work is identical;
- `--model smollm2-135m`: SmolLM2-135M-Instruct + LoRA (peft's default projections), the generative task's chat
  prompts in length-bucketed batches. The one difference: the bare loop is Hugging Face's own recipe
  (`model(**batch).loss`, prompt tokens labelled -100), which projects every position onto the vocabulary; the
  trainer projects the answer positions only (`generative.answer_loss`), less work by design.
The bare loop is the least a LoRA fine-tune must do: collate, forward, backward, clip, AdamW step. Overhead of the
trainer = everything else it does per step (progress, scheduler, heartbeat, loss bookkeeping).
Steps are timed after a warm-up tenth of the run. On CUDA it also prints tokens/s and an MFU estimate: model
FLOPs per token ≈ 6 * parameters (forward + backward; LoRA's frozen weights still cost their forward and the
backward through activations, so this slightly overstates the work of a LoRA step), against the GPU's dense
bf16 peak (`--peak-tflops`, default from the device name).

`--json FILE` writes one object per loop (`loop`, `stepsPerSecond`, `rowsPerSecond`, `ratio`: its steps/s over the
bare loop's, and on CUDA `tokensPerSecond` and `mfu`), with the setting of the run, to compare runs.

Both loops see the same rows per step, so rows/s compare directly; tokens/s counts the rows' real tokens (padding
excluded) for the causal model.

`--packing` (smollm2-135m) adds a third loop: the trainer with `model.packing`, each step's rows packed into one
padding-free sequence (same rows, same tokens; the bare loop stays padded).

    python -m benchmarks trainer [--model tiny|smollm2-135m] [--steps N] [--batch-size N] [--peak-tflops N]
                                 [--packing] [--json FILE]
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
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from sweetspot.contract import TrialConfig
from sweetspot_trainer import throughput
from sweetspot_trainer.extractive import ExtractiveTask, label_names
from sweetspot_trainer.generative import GenerativeTask
from sweetspot_trainer.model import minilm_dir, smollm2_dir
from sweetspot_trainer.prepare import prepare_data
from sweetspot_trainer.steps import BatchOrder, plan_steps
from sweetspot_trainer.train import StageRunner, available_cores

MAX_LENGTHS = {"tiny": 160, "smollm2-135m": 384}
"""Sequence length per model: the pages fit in 160 MiniLM tokens; the chat prompt, page and answer in 384."""
DEFAULTS = {"tiny": (60, 16), "smollm2-135m": (12, 8)}
"""Steps and batch size per model when not given (a SmolLM2 step is ~50x a MiniLM step on a CPU)."""


def _config(model: str, steps: int, batch_size: int, packing: bool = False) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "study": "bench",
            "trial": 0,
            "stage": "final",
            "model": {"builtin": model, "maxSequenceLength": MAX_LENGTHS[model], "packing": packing},
            "train": {"builtin": "product-pages", "rows": steps * batch_size},
            "validation": {"builtin": "product-pages", "rows": 16},
            "seed": 0,
            "hyperparameters": {"batchSize": batch_size, "epochs": 1, "loraRank": 16, "learningRate": 1e-3},
        }
    )


def trainer_rate(model: str, steps: int, batch_size: int, packing: bool = False) -> float:
    stamps: list[tuple[float, int]] = []

    def progress(line: str) -> None:
        if " step " in line and "/" in line and "eval" not in line:
            step = int(line.split(" step ")[1].split("/")[0])
            stamps.append((time.perf_counter(), step))

    StageRunner(_config(model, steps, batch_size, packing), progress=progress).run()
    (t0, s0), (t1, s1) = stamps[0], stamps[-1]
    return (s1 - s0) / (t1 - t0)


@dataclass(frozen=True)
class Bare:
    steps_per_second: float
    tokens_per_step: float
    """Positions processed per step: padding included (it costs compute too) for the tagger, real tokens only for
    the causal model (its two loops pad differently)."""
    parameters: int


def _lora(model: Any, task_type: TaskType, config: TrialConfig, **extra: Any) -> Any:
    hp = config.hyperparameters
    lora = LoraConfig(task_type=task_type, r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout)
    for key, value in extra.items():
        setattr(lora, key, value)
    return get_peft_model(model, lora)


def _setup(model_name: str, config: TrialConfig, device: torch.device) -> tuple[Any, Any, list[Any], BatchOrder]:
    """The model with its adapter, the task, the encoded training rows and their order: what the trainer builds."""
    prepared = prepare_data(config)
    if model_name == "tiny":
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        labels = label_names(prepared.attributes)
        base = AutoModelForTokenClassification.from_pretrained(minilm_dir(), num_labels=len(labels))
        model = _lora(base, TaskType.TOKEN_CLS, config, modules_to_save=["classifier"])
        task: Any = ExtractiveTask(tokenizer, prepared.attributes, prepared.asked, MAX_LENGTHS["tiny"])
    else:
        tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
        model = _lora(
            AutoModelForCausalLM.from_pretrained(smollm2_dir(), dtype=torch.float32), TaskType.CAUSAL_LM, config
        )
        task = GenerativeTask(tokenizer, prepared.asked, MAX_LENGTHS["smollm2-135m"])
    encoded = [task.encode(row) for row in prepared.train]
    lengths = [task.length(e) for e in encoded] if task.bucket_by_length else None
    return model.to(device), task, encoded, BatchOrder(config.seed, config.hyperparameters, lengths)


def bare_rate(model_name: str, steps: int, batch_size: int) -> Bare:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(available_cores())
    causal = model_name != "tiny"
    config = _config(model_name, steps, batch_size)
    model, task, encoded, order = _setup(model_name, config, device)
    plan = plan_steps(len(encoded), config)
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
        (rows,) = order.batches(encoded, plan, step)
        batch = {k: v.to(device) for k, v in task.collate(rows).items()}
        if step >= warm:
            tokens += int(batch["attention_mask"].sum()) if causal else batch["input_ids"].numel()
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
    """`--peak-tflops`, or the peak of this GPU by its name."""
    return given if given is not None else throughput.peak_tflops(torch.cuda.get_device_name())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", choices=sorted(MAX_LENGTHS), default="tiny", help="the built-in model (default: tiny)"
    )
    parser.add_argument("--steps", type=int, help="steps per loop (default: 60 for tiny, 12 for smollm2-135m)")
    parser.add_argument("--batch-size", type=int, help="rows per step (default: 16 for tiny, 8 for smollm2-135m)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU (default: by name)")
    parser.add_argument(
        "--packing",
        action="store_true",
        help="smollm2-135m: also time the trainer with `model.packing` (rows packed into one padding-free sequence)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here (one object per loop)")
    args = parser.parse_args(argv)
    steps, batch_size = DEFAULTS[args.model]
    args.steps, args.batch_size = args.steps or steps, args.batch_size or batch_size
    causal = args.model != "tiny"
    bare = bare_rate(args.model, args.steps, args.batch_size)
    ours = trainer_rate(args.model, args.steps, args.batch_size)
    loops = [("bare transformers + peft", bare.steps_per_second), ("sweetspot trainer", ours)]
    if args.packing and causal:
        loops.append(("sweetspot trainer, packed", trainer_rate(args.model, args.steps, args.batch_size, True)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.cuda.is_available()
    where = torch.cuda.get_device_name() if cuda else f"{available_cores()} CPU threads"
    length = MAX_LENGTHS[args.model]
    print(f"builtin:{args.model}, batch {args.batch_size}, max length {length}, {where}")
    header = f"{'loop':<28}{'steps/s':>10}{'rows/s':>10}"
    print(header + (f"{'tokens/s':>12}" if cuda or causal else "") + (f"{'MFU':>8}" if cuda else ""))
    peak = peak_tflops(args.peak_tflops) if cuda else None
    setting = {"model": f"builtin:{args.model}", "device": where, "batchSize": args.batch_size, "steps": args.steps}
    rows: list[dict[str, Any]] = []
    for label, rate in loops:
        row = setting | {"loop": label, "stepsPerSecond": rate, "rowsPerSecond": rate * args.batch_size}
        row |= {"ratio": rate / bare.steps_per_second, "maxLength": length, "peakRssMiB": rss}
        line = f"{label:<28}{rate:>10.3f}{rate * args.batch_size:>10.1f}"
        tokens = rate * bare.tokens_per_step
        if causal and not cuda:
            line += f"{tokens:>12.0f}"
            row |= {"tokensPerSecond": tokens}
        if cuda:
            mfu = throughput.mfu(bare.parameters, tokens, peak)
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
