"""Decoding speed: the trainer's JSON decoder against a bare `model.generate` on the same rows and settings.

SmolLM2-135M-Instruct (`builtin:smollm2-135m`) first learns the answer format with a short LoRA fine-tune on the
training titles (`--train-steps`, the generative task's prompts and answer-only loss), so that both loops decode
answers like an evaluation's. Then both decode every test row, greedily, in batches of `--batch-size` rows sorted
by prompt length, with the trainer's prompts:

- `bare`: `model.generate` with left padding, the KV cache, the end-of-turn token as EOS and the trainer's bound on
  new tokens (`max_new_tokens`, from the longest training answer);
- `sweetspot`: `decoding.JsonDecoder` (shared prefix cached once, rows stopped when their JSON object closes, cannot
  start, or reaches the budget their attributes need, finished rows leaving the batch).

Reported per loop: seconds, rows/s, new tokens/s, valid-JSON rate and micro-F1 against the gold values; and
`agreement`, the share of rows whose tokens from the fast loop are the bare loop's first tokens (greedy decoding of
the same model: they differ only by float rounding). `ratio` is the bare loop's seconds over the fast loop's. On CUDA
(bf16, SDPA) it also prints MFU: 2 x parameters x tokens processed (prompt and new) per second, over the GPU's dense
bf16 peak.

    python -m benchmarks decode [--data examples/ae-110k] [--rows N] [--batch-size 32] [--train-steps 24]
                                [--peak-tflops N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.trainer_throughput import peak_tflops
from sweetspot_trainer.data import Row, category_attributes, load_path, load_schema
from sweetspot_trainer.decoding import JsonDecoder, TokenText
from sweetspot_trainer.evaluate import score
from sweetspot_trainer.generative import Encoded, GenerativeTask, parse_answer
from sweetspot_trainer.model import smollm2_dir
from sweetspot_trainer.train import available_cores

MAX_LENGTH = 192
"""The realdata benchmark's sequence length for the LLM (titles are short)."""


@dataclass(frozen=True)
class Loop:
    loop: str
    seconds: float
    rows: int
    new_tokens: int
    prompt_tokens: int
    valid_json: float
    f1: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def _setup(data: Path, train_steps: int, batch_size: int, device: torch.device) -> tuple[Any, GenerativeTask, Any]:
    folder = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cuda = device.type == "cuda"
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa"
    )
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32)).to(device)
    train = load_path(data / "train.jsonl")
    schema = load_schema(data / "schema.json") if (data / "schema.json").exists() else category_attributes(train)
    task = GenerativeTask(tokenizer, schema, MAX_LENGTH)
    encoded = [task.encode(row) for row in train]
    task.fit_decoding(encoded)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    for step in range(train_steps):
        batch = task.collate(encoded[step * 8 % len(encoded) :][:8])
        loss = task.loss(model, {k: v.to(device) for k, v in batch.items()})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"fine-tune step {step + 1}/{train_steps}: loss {float(loss):.3f}", flush=True)
    model.eval()
    return model, task, tokenizer


def _bare(model: Any, task: GenerativeTask, prompts: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    device = next(model.parameters()).device
    pad = task.tokenizer.pad_token_id
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, p in enumerate(chunk):
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        with torch.no_grad():
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=task.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=task.eos,
            )
        for row in generated[:, width:].tolist():
            end = row.index(task.eos) if task.eos in row else len(row)
            out.append(row[:end])
    return out


def _loop(
    name: str, seconds: float, answers: list[list[int]], encoded: Sequence[Encoded], rows: Sequence[Row], task: Any
) -> Loop:
    parsed = [
        parse_answer(task.tokenizer.decode(a, skip_special_tokens=True), e.attributes)
        for a, e in zip(answers, encoded, strict=True)
    ]
    scores = score([p or {} for p in parsed], [r.output for r in rows], [r.category for r in rows])
    return Loop(
        name,
        seconds,
        len(rows),
        sum(len(a) for a in answers),
        sum(len(e.prompt_ids) for e in encoded),
        sum(p is not None for p in parsed) / len(parsed),
        scores.f1,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks decode", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("examples/ae-110k"), help="train.jsonl, test.jsonl, schema")
    parser.add_argument("--rows", type=int, help="decode the first N test rows (default: all)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="rows decoded together (default: 32, as in evaluation)"
    )
    parser.add_argument("--train-steps", type=int, default=24, help="LoRA steps (8 titles each) before decoding")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for MFU (default: by name)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(available_cores())
    model, task, _ = _setup(args.data, args.train_steps, args.batch_size, device)
    rows = load_path(args.data / "test.jsonl")[: args.rows]
    order = sorted(range(len(rows)), key=lambda i: len(task.encode(rows[i]).prompt_ids))
    rows = [rows[i] for i in order]
    encoded = [task.encode(row) for row in rows]
    prompts = [e.prompt_ids for e in encoded]
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{available_cores()} CPU threads"
    print(f"decoding {len(rows)} rows of {args.data} in batches of {args.batch_size} on {where}", flush=True)

    _synchronize(device)
    began = time.perf_counter()
    fast = JsonDecoder(model, device, TokenText(task.tokenizer.decode), task.eos, task.tokenizer.pad_token_id)
    ours = fast.decode(prompts, [task.token_budget(e) for e in encoded], args.batch_size)
    _synchronize(device)
    sweetspot = _loop("sweetspot", time.perf_counter() - began, ours, encoded, rows, task)
    print(f"sweetspot: {sweetspot.seconds:.1f} s", flush=True)
    began = time.perf_counter()
    theirs = _bare(model, task, prompts, args.batch_size)
    _synchronize(device)
    bare = _loop("bare generate", time.perf_counter() - began, theirs, encoded, rows, task)
    agreement = sum(b[: len(o)] == o for o, b in zip(ours, theirs, strict=True)) / len(rows)

    peak = peak_tflops(args.peak_tflops) if device.type == "cuda" else None
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{'loop':<16}{'seconds':>9}{'rows/s':>9}{'new tok/s':>11}{'valid JSON':>12}{'F1':>8}"
        + ("  MFU" if peak else "")
    )
    result: dict[str, Any] = {
        "model": "builtin:smollm2-135m",
        "device": where,
        "rows": len(rows),
        "batchSize": args.batch_size,
        "trainSteps": args.train_steps,
        "maxNewTokens": task.max_new_tokens,
        "loops": [],
    }
    for loop in (bare, sweetspot):
        mfu = 2 * parameters * (loop.new_tokens + loop.prompt_tokens) / loop.seconds / (peak * 1e12) if peak else None
        print(
            f"{loop.loop:<16}{loop.seconds:>9.1f}{loop.rows_per_second:>9.2f}{loop.new_tokens / loop.seconds:>11.1f}"
            f"{loop.valid_json:>12.1%}{loop.f1:>8.3f}" + (f"{mfu:>7.2%}" if mfu is not None else "")
        )
        result["loops"].append(
            asdict(loop)
            | {"rowsPerSecond": loop.rows_per_second, "newTokensPerSecond": loop.new_tokens / loop.seconds}
            | ({"mfu": mfu} if mfu is not None else {})
        )
    result["ratio"] = bare.seconds / sweetspot.seconds
    result["agreement"] = agreement
    print(f"ratio (bare seconds / sweetspot seconds): {result['ratio']:.2f}; rows whose tokens agree: {agreement:.1%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
