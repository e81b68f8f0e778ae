"""Run one trial stage: prepare data and model, train with LoRA, evaluate, checkpoint, report.

Stages share one plan of optimizer steps (`plan_steps`), so `early` stops at exactly the step `final`
resumes from. The data order of epoch e depends only on (seed, e), and the checkpoint holds the trainable
weights, optimizer, scheduler and RNG state, so early + final trains the same steps as one `full` run. Under
torchrun each rank trains on its shard of every batch and rank 0 alone writes (see `distributed`).

Recipe (what made trials train reliably): AdamW, the searched learning rate on the LoRA weights and a fixed
one on a new task head, gradient clipping, warmup then the chosen schedule.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from sweetspot.contract import ADAPTER_DIR, CPU_THREADS_ENV, DataRef, Evaluation, StageResult, TrialConfig
from sweetspot_trainer import data as datamod
from sweetspot_trainer import distributed, evaluate, product
from sweetspot_trainer import model as modelmod
from sweetspot_trainer.data import DataError, Row
from sweetspot_trainer.demo import DEFAULT_TRAIN_ROWS, DEFAULT_VALIDATION_ROWS, TRAIN_STREAM, VALIDATION_STREAM
from sweetspot_trainer.distributed import World

EVAL_BATCH_SIZE = 32
BUCKET_STEPS = 50
"""Length bucketing sorts rows by length within windows of this many steps (generative task)."""
CHECKPOINT_FILE = "state.pt"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total: int
    early: int

    def stop_step(self, stage: str) -> int:
        return self.early if stage == "early" else self.total


def plan_steps(rows: int, config: TrialConfig) -> StepPlan:
    hp = config.hyperparameters
    per_step = hp.batch_size * hp.gradient_accumulation_steps
    steps_per_epoch = max(1, math.ceil(rows / per_step))
    total = hp.max_steps or steps_per_epoch * hp.epochs
    early = min(total, max(1, round(total * config.early_fraction)))
    return StepPlan(steps_per_epoch, total, early)


@dataclass
class TrainingClock:
    """Seconds spent in optimizer steps so far, evaluations excluded: the compute behind each evaluation."""

    training: float = 0.0


THREADS_ENV = CPU_THREADS_ENV


def available_cores() -> int:
    """CPU threads for torch: the cores this process may use, or fewer when the runner shares them out
    (`SWEETSPOT_CPU_THREADS`: local mode running several stages at once on one machine)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    share = os.environ.get(THREADS_ENV, "")
    return max(1, min(cores, int(share))) if share.isdigit() else cores


@dataclass
class Prepared:
    train: list[Row]
    validation: list[Row]
    attributes: list[str]
    """Every attribute any category is asked for (the extractive head's label space), first-seen order."""
    asked: datamod.Schema
    """Category -> the attributes a model is asked for there."""
    note: str = ""


def _rows(ref: DataRef, stream: int, default_rows: int, bad_rows: Literal["fail", "skip"]) -> list[Row]:
    if ref.builtin:
        return datamod.builtin_rows(ref.builtin, ref.rows or default_rows, stream)
    if not ref.path:
        raise DataError(["a data reference names no source (builtin or path)"])
    return datamod.load_path(Path(ref.path), bad_rows)


def _schema(config: TrialConfig) -> datamod.Schema | None:
    schema = config.schema_
    if schema is None:
        return None
    if schema.path:
        return datamod.load_schema(Path(schema.path))
    return datamod.check_schema(schema.categories, "schema")


def prepare_data(config: TrialConfig) -> Prepared:
    """Training sample and validation rows as the config describes, and what each category is asked for;
    raises `DataError` on bad input."""
    source = _rows(config.train, TRAIN_STREAM, DEFAULT_TRAIN_ROWS, config.bad_rows)
    rows, validation = source, []
    if config.validation is not None:
        validation = _rows(config.validation, VALIDATION_STREAM, DEFAULT_VALIDATION_ROWS, config.bad_rows)
    else:
        rows, validation = datamod.split_validation(source, config.validation_fraction, config.seed)
    schema = _schema(config)
    if schema is not None and (problems := datamod.schema_problems([*source, *validation], schema)):
        raise DataError(problems)
    asked = datamod.category_attributes(source, schema)
    note = ""
    if unknown := sorted({r.category for r in validation} - set(asked)):
        everything = list(dict.fromkeys(a for names in asked.values() for a in names))
        asked |= dict.fromkeys(unknown, everything)
        note = f"validation categories {unknown} have no training rows: every attribute is asked for there"
    if config.attributes is not None:
        known = {a for names in asked.values() for a in names}
        if missing := [a for a in config.attributes if a not in known]:
            raise DataError([f"dataset.attributes: {missing} are not attributes of the data or the schema"])
        only = set(config.attributes)
        asked = {c: [a for a in names if a in only] for c, names in asked.items()}
    attributes = list(dict.fromkeys(a for names in asked.values() for a in names))
    if not attributes:
        raise DataError(["the data has no attributes: every output is empty"])
    if not any(a in asked.get(r.category, ()) for r in validation for a in r.output):
        raise DataError(["the validation rows have no applicable attribute to score (every output is empty)"])
    train = datamod.sample(rows, config.samples, config.seed, config.attributes, config.stratify)
    if config.max_eval_rows and len(validation) > config.max_eval_rows:
        validation = random.Random(f"eval:{config.seed}").sample(validation, config.max_eval_rows)
    return Prepared(train, validation, attributes, asked, note)


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """A checkpoint's tensors and plain data, never code: the output volume is written by many trials and studies,
    so a file there that would run code when unpickled is bad input, refused before anything of it runs."""
    import pickle

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            [f"{path}: not a Sweetspot checkpoint (it holds more than tensors and plain data): {reason}"]
        ) from None
    if not isinstance(state, dict):
        raise DataError([f"{path}: not a Sweetspot checkpoint (a {type(state).__name__}, not a mapping)"])
    return state


def _fingerprint(config: TrialConfig, sample_hash: str) -> str:
    """What must match for `final` to resume `early`'s checkpoint."""
    parts = config.model_dump(
        mode="json",
        include={"hyperparameters", "model", "train", "samples", "seed", "early_fraction", "attributes", "schema_"},
    )
    return hashlib.sha256(f"{parts}|{sample_hash}".encode()).hexdigest()[:16]


class _Shard(NamedTuple):
    """What one rank's evaluation of its shard of the validation rows sends the others."""

    predictions: list[Any]
    loss_sum: float
    tokens: int
    valid: int
    """Decoded answers that parsed (generative task)."""
    decoded: int
    checksum: float
    """Of the rank's trainable weights (`distributed.checksum`)."""


class StageRunner:
    def __init__(
        self,
        config: TrialConfig,
        progress: Progress = print,
        gradient_checkpointing: bool = False,
        world: World | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.gradient_checkpointing = gradient_checkpointing
        self.world = world or World()
        """The data-parallel ranks (one process unless under torchrun, whose process group the caller set up)."""
        self.bucket_lengths: list[int] | None = None
        """Per training row, its length in tokens, when the task batches rows of similar length."""
        self._order: tuple[tuple[int, int, int, bool], np.ndarray] | None = None
        """The current epoch's row order, by what it was computed from (see `_epoch_order`)."""
        cuda = torch.cuda.is_available()
        if cuda and self.world.distributed:
            self.device = torch.device("cuda", self.world.local_rank)
        else:
            self.device = torch.device("cuda" if cuda else "cpu")
        if self.device.type == "cpu":  # ranks on one machine share its cores
            torch.set_num_threads(max(1, available_cores() // self.world.local_size))

    def run(self) -> StageResult:
        config, started = self.config, time.monotonic()
        distributed.check_batch_size(config.hyperparameters.batch_size, self.world)
        torch.manual_seed(config.seed)
        prepared = prepare_data(config)
        sample_hash = datamod.sample_hash(prepared.train)
        self.progress(
            f"[{config.study} t{config.trial} {config.stage}] {len(prepared.train)} training rows "
            f"(sample {sample_hash}), {len(prepared.validation)} validation rows, "
            + (
                f"{len(prepared.asked)} categories, {len(prepared.attributes)} attributes"
                if len(prepared.asked) > 1
                else f"attributes {prepared.attributes}"
            )
            + (f"; {prepared.note}" if prepared.note else "")
            + (f"; data-parallel over {self.world.size} processes" if self.world.distributed else "")
        )
        with modelmod.quiet_transformers():
            from sweetspot_trainer.extractive import ExtractiveTask, label_names

            loaded = modelmod.load(config.model, label_names(prepared.attributes), self.device)
            torch.manual_seed(config.seed)  # LoRA and head initialisation do not depend on loading
            model = modelmod.add_lora(loaded, config.model, config.hyperparameters, self.gradient_checkpointing)
        task: Any
        if loaded.task == "extractive":
            task = ExtractiveTask(
                loaded.tokenizer, prepared.attributes, prepared.asked, config.model.max_sequence_length
            )
        else:
            from sweetspot_trainer.generative import GenerativeTask

            task = GenerativeTask(loaded.tokenizer, prepared.asked, config.model.max_sequence_length)
        train_encoded = [task.encode(row) for row in prepared.train]
        val_encoded = [task.encode(row) for row in prepared.validation]
        if hasattr(task, "fit_decoding"):
            task.fit_decoding(train_encoded)
        if getattr(task, "bucket_by_length", False):
            self.bucket_lengths = [task.length(e) for e in train_encoded]
        golds = [row.output for row in prepared.validation]
        categories = [row.category for row in prepared.validation]
        early_subsample = self._early_subsample(task, len(prepared.validation))

        plan = plan_steps(len(prepared.train), config)
        optimizer, scheduler = self._optimizer(model, plan)
        start_step, resumed, note = self._resume(model, optimizer, scheduler, sample_hash)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if self.world.distributed:
            distributed.broadcast_parameters(trainable)
        stop = plan.stop_step(config.stage)
        checkpoints = self._evaluation_steps(plan, stop)
        clock = TrainingClock()

        def evaluate_now(step: int) -> Evaluation:
            # A generative model judged before the end decodes a fixed subsample: decoding is its dear part.
            subsample = early_subsample if step < plan.total and early_subsample is not None else None
            if self.world.distributed:
                predictions, loss, json_rate = self._predict_sharded(
                    task, model, prepared.validation, val_encoded, subsample, trainable, step
                )
            else:
                extra = {} if subsample is None else {"decode": subsample}
                predictions, loss, json_rate = task.predict(
                    model, prepared.validation, val_encoded, self.device, EVAL_BATCH_SIZE, **extra
                )
            scored = range(len(golds)) if subsample is None else subsample
            scores = evaluate.score(
                [predictions[i] for i in scored],
                [golds[i] for i in scored],
                [categories[i] for i in scored],
                config.attributes,
            )
            model.train()
            by_attribute = scores.attribute_counts
            evaluation = Evaluation(
                step=step,
                fraction=round(step / plan.total, 4),
                f1=round(scores.f1, 4),
                precision=round(scores.precision, 4),
                recall=round(scores.recall, 4),
                macro_f1=round(scores.macro_f1, 4),
                accuracy=round(scores.accuracy, 4),
                token_f1=round(scores.token_f1, 4),
                loss=round(loss, 5),
                pairs=scores.counts.pairs,
                rows=len(scored),
                subsampled=subsample is not None,
                attribute_f1={a: round(c.f1, 4) for a, c in by_attribute.items()},
                attribute_support={a: c.values for a, c in by_attribute.items()},
                attribute_accuracy={a: round(c.accuracy, 4) for a, c in by_attribute.items()},
                category_f1=(
                    {k: round(c.f1, 4) for k, c in scores.category_counts.items()}
                    if len(scores.category_counts) > 1
                    else {}
                ),
                json_valid_rate=None if json_rate is None else round(json_rate, 4),
                train_seconds=round(clock.training, 3),
            )
            self.progress(
                f"[{config.study} t{config.trial} {config.stage}] eval at step {step}/{plan.total}: "
                f"F1 {evaluation.f1:.4f} (P {evaluation.precision:.3f} R {evaluation.recall:.3f}) "
                f"accuracy {evaluation.accuracy:.4f} loss {evaluation.loss:.4f}"
                + (f" on {len(scored)} of {len(golds)} rows" if subsample is not None else "")
                + (f" valid-JSON {json_rate:.2f}" if json_rate is not None else "")
            )
            for example in getattr(task, "examples", []):  # what a generative model actually says
                self.progress(f"[{config.study} t{config.trial} {config.stage}]   answer: {example[:300]!r}")
            return evaluation

        evaluations: list[Evaluation] = []
        if 0 in checkpoints and start_step == 0:  # the model as it came, before any training
            evaluations.append(evaluate_now(0))
        train_loss = self._train(
            model,
            task,
            train_encoded,
            optimizer,
            scheduler,
            plan,
            start_step,
            stop,
            checkpoints,
            evaluate_now,
            evaluations,
            clock,
        )
        if self.world.main:  # every rank holds the same weights: rank 0 writes them
            if config.stage == "early":
                self._save_checkpoint(model, optimizer, scheduler, stop, plan, sample_hash)
            elif config.output_dir:
                adapter = Path(config.output_dir) / ADAPTER_DIR
                model.save_pretrained(str(adapter))
                loaded.tokenizer.save_pretrained(str(adapter))
                product.describe(
                    adapter,
                    config,
                    loaded.task,
                    prepared.attributes,
                    prepared.asked,
                    task.labels if loaded.task == "extractive" else None,
                    getattr(task, "max_new_tokens", None),
                    evaluations[-1] if evaluations else None,
                    len(prepared.train),
                )
        seconds = time.monotonic() - started
        return StageResult(
            study=config.study,
            trial=config.trial,
            stage=config.stage,
            status="ok",
            message=note,
            step=stop,
            planned_steps=plan.total,
            evaluations=evaluations,
            train_loss=None if train_loss is None else round(train_loss, 5),
            seconds=round(seconds, 2),
            gpu_seconds=round(seconds * self.world.size, 2) if self.device.type == "cuda" else 0.0,
            samples=len(prepared.train),
            sample_hash=sample_hash,
            resumed=resumed,
            early_fraction=config.early_fraction if config.stage == "early" else None,
            null_baseline=round(evaluate.null_baseline(golds, config.attributes), 4),
        )

    def _predict_sharded(
        self,
        task: Any,
        model: Any,
        rows: Sequence[Row],
        encoded: Sequence[Any],
        subsample: list[int] | None,
        parameters: Sequence[torch.Tensor],
        step: int,
    ) -> tuple[list[Any], float, float | None]:
        """`task.predict` on every row, from each rank predicting its shard: the predictions in row order, the mean
        loss over all loss tokens and the valid-JSON rate over all decoded rows, as one process computes them."""
        world = self.world
        mine = distributed.shard(len(rows), world.rank, world.size)
        chosen = None if subsample is None else set(subsample)
        decode = None if chosen is None else [k for k, i in enumerate(mine) if i in chosen]
        extra = {} if decode is None else {"decode": decode}
        own = [encoded[i] for i in mine]
        predictions, loss, rate = task.predict(
            model, [rows[i] for i in mine], own, self.device, EVAL_BATCH_SIZE, **extra
        )
        tokens = sum(task.loss_tokens(e) for e in own)
        decoded = len(mine) if decode is None else len(decode)
        parts: list[_Shard] = distributed.gather(
            _Shard(
                predictions,
                loss * tokens,
                tokens,
                0 if rate is None else round(rate * decoded),
                decoded,
                distributed.checksum(parameters),
            )
        )
        if not distributed.same_weights([part.checksum for part in parts]):
            raise RuntimeError(
                f"the data-parallel ranks hold different weights at step {step} (checksums "
                f"{[part.checksum for part in parts]}): their gradients were not summed alike"
            )
        every = [prediction for part in parts for prediction in part.predictions]  # contiguous shards, rank order
        mean_loss = sum(part.loss_sum for part in parts) / max(1, sum(part.tokens for part in parts))
        json_rate = None if rate is None else sum(p.valid for p in parts) / max(1, sum(p.decoded for p in parts))
        return every, mean_loss, json_rate

    def _evaluation_steps(self, plan: StepPlan, stop: int) -> list[int]:
        stage = self.config.stage
        zero = [0] if self.config.zero_shot and stage != "final" else []
        if stage == "early":  # and the points of its own curve asked for inside it (final-score prediction)
            inside = {max(1, round(f * plan.total)) for f in self.config.evaluate_at if f < self.config.early_fraction}
            return [*zero, *sorted(inside - {plan.early}), plan.early]
        if stage == "final":
            return [plan.total]
        fractions = {self.config.early_fraction, 1.0, *self.config.evaluate_at}
        return zero + sorted({min(plan.total, max(1, round(f * plan.total))) for f in fractions})

    def _early_subsample(self, task: Any, rows: int) -> list[int] | None:
        """The validation rows a generative model decodes before the end of training: a fixed seeded subset when
        there are more than `early_decode_rows`, else all (None)."""
        limit = self.config.early_decode_rows
        if task.name != "generative" or rows <= limit:
            return None
        return sorted(random.Random(f"early-decode:{self.config.seed}").sample(range(rows), limit))

    def _optimizer(self, model: Any, plan: StepPlan) -> tuple[torch.optim.Optimizer, Any]:
        from transformers import get_scheduler

        hp = self.config.hyperparameters
        heads = modelmod.head_parameter_names(model)
        lora = [p for n, p in model.named_parameters() if p.requires_grad and n not in heads]
        head = [p for n, p in model.named_parameters() if p.requires_grad and n in heads]
        groups = [{"params": lora, "lr": hp.learning_rate}]
        if head:
            groups.append({"params": head, "lr": hp.head_learning_rate})
        optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        scheduler = get_scheduler(
            hp.lr_scheduler,
            optimizer,
            num_warmup_steps=round(hp.warmup_ratio * plan.total),
            num_training_steps=plan.total,
        )
        return optimizer, scheduler

    def _checkpoint_path(self) -> Path | None:
        return Path(self.config.checkpoint_dir) / CHECKPOINT_FILE if self.config.checkpoint_dir else None

    def _resume(self, model: Any, optimizer: Any, scheduler: Any, sample_hash: str) -> tuple[int, bool, str]:
        if self.config.stage != "final":
            return 0, False, ""
        path = self._checkpoint_path()
        if path is None or not path.exists():
            return 0, False, "no early checkpoint: trained from scratch"
        state = load_checkpoint(path, self.device)
        if state.get("fingerprint") != _fingerprint(self.config, sample_hash):
            return 0, False, "the early checkpoint belongs to a different configuration: trained from scratch"
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.progress(f"[{self.config.study} t{self.config.trial} final] resumed from step {state['step']}")
        return int(state["step"]), True, f"resumed from the early checkpoint at step {state['step']}"

    def _save_checkpoint(
        self, model: Any, optimizer: Any, scheduler: Any, step: int, plan: StepPlan, sample_hash: str
    ) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": step,
            "planned_steps": plan.total,
            "fingerprint": _fingerprint(self.config, sample_hash),
            "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(path)  # a pod killed mid-write leaves no half checkpoint behind

    def _batches(self, encoded: Sequence[Any], plan: StepPlan, step: int) -> list[list[Any]]:
        """The micro-batches of optimizer step `step` (0-based), from the seeded order of its epoch."""
        hp = self.config.hyperparameters
        epoch, within = divmod(step, plan.steps_per_epoch)
        per_step = hp.batch_size * hp.gradient_accumulation_steps
        chosen = self._epoch_order(len(encoded), per_step, epoch)[within * per_step : (within + 1) * per_step]
        return [[encoded[i] for i in chosen[k : k + hp.batch_size]] for k in range(0, len(chosen), hp.batch_size)]

    def _epoch_order(self, rows: int, per_step: int, epoch: int) -> np.ndarray:
        """The seeded order of `epoch`'s rows, computed once per epoch rather than once per step: bucketing sorts
        the whole epoch, 48 ms a step in Python at 100,000 rows (a GPU step of a small model takes less)."""
        key = (rows, per_step, epoch, self.bucket_lengths is not None)
        if self._order is None or self._order[0] != key:
            rng = np.random.default_rng([self.config.seed, epoch])
            order = rng.permutation(rows)
            if self.bucket_lengths is not None:
                order = self._bucketed(order, per_step, rng)
            self._order = (key, order)
        return self._order[1]

    def _bucketed(self, order: np.ndarray, per_step: int, rng: np.random.Generator) -> np.ndarray:
        """The epoch's order with rows of similar length in the same step: within each window of `BUCKET_STEPS`
        steps the rows are sorted by length, cut into steps, and the steps shuffled (seeded, so early + final
        still trains the steps of one full run)."""
        assert self.bucket_lengths is not None
        lengths = self.bucket_lengths
        result: list[int] = []
        window = per_step * BUCKET_STEPS
        for start in range(0, len(order), window):
            rows = sorted(order[start : start + window].tolist(), key=lambda i: lengths[i])
            steps = [rows[k : k + per_step] for k in range(0, len(rows), per_step)]
            # Only the epoch's last window can end in a short step: it stays last, where the plan has it.
            short = steps.pop() if len(steps[-1]) < per_step else []
            for index in rng.permutation(len(steps)):
                result.extend(steps[index])
            result.extend(short)
        return np.asarray(result, dtype=np.int64)

    def _train(
        self,
        model: Any,
        task: Any,
        encoded: Sequence[Any],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        plan: StepPlan,
        start: int,
        stop: int,
        checkpoints: list[int],
        evaluate_now: Callable[[int], Evaluation],
        evaluations: list[Evaluation],
        clock: TrainingClock,
    ) -> float | None:
        config, hp = self.config, self.config.hyperparameters
        label = f"[{config.study} t{config.trial} {config.stage}]"
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            else torch.autocast("cpu", enabled=False)
        )
        model.train()
        losses: list[float] = []
        # Each step's loss stays on the device until a report reads them all at once: reading it every step
        # (`.item()`) would make the host wait for the device's queue each step. Summed in float64, as Python
        # sums the floats `.item()` returns, so the numbers are the same.
        pending: list[torch.Tensor] = []
        trainable = [p for p in model.parameters() if p.requires_grad]
        world = self.world
        began, last_report, rows_done = time.monotonic(), time.monotonic(), 0
        report_every = max(1, (stop - start) // 10)
        for step in range(start, stop):
            step_started = time.monotonic()
            optimizer.zero_grad(set_to_none=True)
            if world.distributed:
                # Dropout masks are drawn per rank (a shard's masks are not a slice of one batch's anyway), from a
                # seed of (seed, step, rank): a resumed stage draws what one uninterrupted run would.
                torch.manual_seed(distributed.step_seed(config.seed, step, world.rank))
            micro = [b for b in self._batches(encoded, plan, step) if b]
            step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
            for batch in micro:
                rows_done += len(batch)
                weight = 1.0
                if world.distributed:
                    part = distributed.shard(len(batch), world.rank, world.size)
                    weight = distributed.share([task.loss_tokens(e) for e in batch], part)
                    batch = [batch[i] for i in part]
                    if not weight:
                        continue  # nothing of this micro-batch here (a short last batch): the others add it
                tensors = {k: v.to(self.device) for k, v in task.collate(batch).items()}
                with autocast:
                    loss = task.loss(model, tensors) / len(micro)
                    if world.distributed:
                        loss = loss * weight
                loss.backward()
                step_loss += loss.detach()
            if world.distributed:
                step_loss = distributed.sum_gradients(trainable, step_loss)
            torch.nn.utils.clip_grad_norm_(trainable, hp.max_grad_norm)
            optimizer.step()
            scheduler.step()
            pending.append(step_loss)
            done = step + 1
            report = done == stop or (done - start) % report_every == 0 or time.monotonic() - last_report > 30
            if report or done in checkpoints:
                losses += torch.stack(pending).tolist()  # waits for the device: the compute is counted as training
                pending.clear()
            now = time.monotonic()
            clock.training += now - step_started
            if report:
                rate = rows_done / max(now - began, 1e-9)
                eta = (stop - done) * (now - began) / max(done - start, 1)
                recent = losses[-report_every:]
                self.progress(
                    f"{label} step {done}/{stop} loss {sum(recent) / len(recent):.4f} "
                    f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} rows/s eta {eta:.0f}s"
                )
                last_report = now
            if done in checkpoints:
                evaluations.append(evaluate_now(done))
        if not evaluations and stop in checkpoints:  # nothing left to train: resumed at the last step
            evaluations.append(evaluate_now(stop))
        tail = losses[-max(1, len(losses) // 5) :]
        return sum(tail) / len(tail) if tail else None
