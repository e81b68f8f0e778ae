"""Trainer throughput: Sweetspot's stage runner vs a bare transformers + peft loop on the same work.

Both train builtin:tiny (MiniLM-L6 + LoRA r16 on query/value, token-classification head) on the same
synthetic pages with the same batch size and sequence length, on the CPU. The bare loop is the least a
LoRA fine-tune must do: forward, backward, clip, AdamW step. Overhead of the trainer = everything else it
does per step (data order, progress, scheduler). Steps are timed after a warm-up tenth of the run.

    .venv/bin/python benchmarks/trainer_throughput.py [--steps 60] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import resource
import time

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


def bare_rate(steps: int, batch_size: int) -> float:
    torch.set_num_threads(available_cores())
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    labels = label_names(ATTRIBUTES)
    model = AutoModelForTokenClassification.from_pretrained(minilm_dir(), num_labels=len(labels))
    model = get_peft_model(
        model, LoraConfig(task_type=TaskType.TOKEN_CLS, r=16, lora_alpha=32, modules_to_save=["classifier"])
    )
    task = ExtractiveTask(tokenizer, ATTRIBUTES, MAX_LENGTH)
    encoded = [task.encode(row) for row in builtin_rows("product-pages", steps * batch_size, 0)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    warm = max(1, steps // 10)
    start = 0.0
    for step in range(steps):
        if step == warm:
            start = time.perf_counter()
        batch = task.collate(encoded[step * batch_size : (step + 1) * batch_size])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return (steps - warm) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    bare = bare_rate(args.steps, args.batch_size)
    ours = trainer_rate(args.steps, args.batch_size)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"builtin:tiny, batch {args.batch_size}, max length {MAX_LENGTH}, {available_cores()} CPU threads")
    print(f"{'loop':<28}{'steps/s':>10}{'rows/s':>10}")
    print(f"{'bare transformers + peft':<28}{bare:>10.3f}{bare * args.batch_size:>10.1f}")
    print(f"{'sweetspot trainer':<28}{ours:>10.3f}{ours * args.batch_size:>10.1f}")
    print(f"ratio (trainer / bare): {ours / bare:.3f}   peak RSS of this process: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
