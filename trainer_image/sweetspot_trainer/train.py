"""Run one trial stage: prepare data and model, train with LoRA, evaluate, checkpoint, report.

The parts, each in its own module: the rows (`prepare`), the task head (`task`: extractive or generative), the plan of
optimizer steps and the rows of each (`steps`), the checkpoints a stage resumes from (`checkpoints`), the stop a
SIGTERM asks for (`stopping`) and the evaluations on the validation rows (`validation`). `StageRunner` puts them
together and runs the steps. Under torchrun each rank trains on its shard of every batch and rank 0 alone writes (see
`distributed`).

Recipe (what made trials train reliably): AdamW, the searched learning rate on the LoRA weights and a fixed
one on a new task head, gradient clipping, warmup then the chosen schedule.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweetspot.contract import ADAPTER_DIR, CPU_THREADS_ENV, Evaluation, StageResult, TrialConfig
from sweetspot_trainer import checkpoints, distributed, evaluate, product, throughput
from sweetspot_trainer import data as datamod
from sweetspot_trainer import model as modelmod
from sweetspot_trainer.distributed import World
from sweetspot_trainer.prepare import Prepared, prepare_data
from sweetspot_trainer.steps import BatchOrder, StepPlan, evaluation_steps, plan_steps
from sweetspot_trainer.stopping import StageStopped, StopRequest
from sweetspot_trainer.task import Task
from sweetspot_trainer.validation import Progress, TrainingClock, Validator, early_subsample

THREADS_ENV = CPU_THREADS_ENV
REPORT_SECONDS = 30
"""A progress line at least this often, besides one every tenth of the stage."""


def available_cores() -> int:
    """CPU threads for torch: the cores this process may use, or fewer when the runner shares them out
    (`SWEETSPOT_CPU_THREADS`: local mode running several stages at once on one machine)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    share = os.environ.get(THREADS_ENV, "")
    return max(1, min(cores, int(share))) if share.isdigit() else cores


def peak_memory_bytes(device: torch.device) -> int:
    """The most memory the stage has used so far: what torch allocated on the GPU, or on CPUs the process's peak
    resident set size (for the process's life: a stage is one process)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@dataclass
class _Training:
    """What the steps of a stage train: built once by `StageRunner.run`."""

    model: Any
    task: Task[Any]
    encoded: list[Any]
    order: BatchOrder
    plan: StepPlan
    optimizer: torch.optim.Optimizer
    scheduler: Any
    trainable: list[torch.Tensor]
    autocast: contextlib.AbstractContextManager[Any]
    checkpoints: checkpoints.Checkpoints


@dataclass
class _Timings:
    """What a stop's grace period must cover, and what checkpoints cost: the longest stretch between two looks at
    the stop request (a step, with any evaluation and checkpoint after it), the slowest checkpoint write and the
    size of the last one."""

    step: float = 0.0
    save: float = 0.0
    size: int = 0
    tokens: int = 0
    """Tokens trained in this run (real tokens of every row of every step, padding excluded)."""
    training: float = 0.0
    """Seconds this run spent in its steps."""

    def saved(self, saved: checkpoints.Saved | None) -> None:
        if saved is not None:
            self.save, self.size = max(self.save, saved.seconds), saved.size


class _LossLog:
    """Each step's loss and the progress lines that report them. A loss stays on the device until a report reads
    them all at once: reading it every step (`.item()`) would make the host wait for the device's queue each step.
    Summed in float64, as Python sums the floats `.item()` returns, so the numbers are the same."""

    def __init__(self, label: str, progress: Progress, start: int, stop: int) -> None:
        self.label, self.progress, self.start, self.stop = label, progress, start, stop
        self.every = max(1, (stop - start) // 10)
        self.losses: list[float] = []
        self.pending: list[torch.Tensor] = []
        self.rows = 0
        self.began = self.last_report = time.monotonic()

    def add(self, loss: torch.Tensor, rows: int) -> None:
        """A step's loss (on the device) and the rows it took."""
        self.pending.append(loss)
        self.rows += rows

    def due(self, done: int) -> bool:
        """Whether a progress line is due after step `done`."""
        since = time.monotonic() - self.last_report
        return done == self.stop or (done - self.start) % self.every == 0 or since > REPORT_SECONDS

    def read(self) -> None:
        """Bring the pending losses to the host (waits for the device: the compute is counted as training)."""
        if not self.pending:
            return
        self.losses += torch.stack(self.pending).tolist()
        self.pending.clear()

    def report(self, done: int, now: float, learning_rate: float) -> None:
        rate = self.rows / max(now - self.began, 1e-9)
        eta = (self.stop - done) * (now - self.began) / max(done - self.start, 1)
        recent = self.losses[-self.every :]
        self.progress(
            f"{self.label} step {done}/{self.stop} loss {sum(recent) / len(recent):.4f} "
            f"lr {learning_rate:.2e} {rate:.1f} rows/s eta {eta:.0f}s"
        )
        self.last_report = now

    def train_loss(self) -> float | None:
        """The mean loss of the last fifth of the steps."""
        tail = self.losses[-max(1, len(self.losses) // 5) :]
        return sum(tail) / len(tail) if tail else None


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
        self.label = f"[{config.study} t{config.trial} {config.stage}]"
        cuda = torch.cuda.is_available()
        if cuda and self.world.distributed:
            self.device = torch.device("cuda", self.world.local_rank)
        else:
            self.device = torch.device("cuda" if cuda else "cpu")
        if self.device.type == "cpu":  # ranks on one machine share its cores
            torch.set_num_threads(max(1, available_cores() // self.world.local_size))

    def run(self) -> StageResult:
        """Train and evaluate the stage; SIGTERM or SIGINT, from the start on, stops it after a step (or before the
        first: the kubelet must not wait out the grace period of a pod that is still loading its model)."""
        with StopRequest() as stop_request:
            return self._run(stop_request)

    def _run(self, stop_request: StopRequest) -> StageResult:
        config, started = self.config, time.monotonic()
        if self.device.type == "cuda":  # the stage's own peak, also when a caller runs several in one process
            torch.cuda.reset_peak_memory_stats(self.device)
        distributed.check_batch_size(config.hyperparameters.batch_size, self.world)
        torch.manual_seed(config.seed)
        prepared = prepare_data(config)
        sample_hash = datamod.sample_hash(prepared.train)
        self.progress(self._data_line(prepared, sample_hash))
        loaded, model = self._model(prepared)
        task = self._task(loaded, prepared)
        train_encoded, val_encoded = self._encode(task, prepared)
        subsample = early_subsample(config, task, len(prepared.validation))
        plan = plan_steps(len(prepared.train), config)
        optimizer, scheduler = self._optimizer(model, plan)
        kept = checkpoints.Checkpoints(config, plan, sample_hash, self.device)
        start = kept.resume(model, optimizer, scheduler)
        if start.resumed_from_step is not None:
            self.progress(
                f"{self.label} resumed from step {start.step} after a disruption "
                f"({start.redone_seconds:.1f}s of training to do again)"
            )
        elif start.resumed:
            self.progress(f"{self.label} resumed from step {start.step}")
        trainable = [p for p in model.parameters() if p.requires_grad]
        if self.world.distributed:
            distributed.broadcast_parameters(trainable)
        stop = plan.stop_step(config.stage)
        clock = TrainingClock(start.trained_seconds)
        validator = Validator(
            config=config,
            task=task,
            model=model,
            rows=prepared.validation,
            encoded=val_encoded,
            plan=plan,
            world=self.world,
            device=self.device,
            clock=clock,
            progress=self.progress,
            subsample=subsample,
        )
        order = BatchOrder(config.seed, config.hyperparameters, self._lengths(task, train_encoded))
        training = _Training(
            model, task, train_encoded, order, plan, optimizer, scheduler, trainable, self._autocast(), kept
        )
        restart = time.monotonic() - started
        timings = _Timings()
        evaluations, log = self._train(training, start, stop, validator, clock, stop_request, timings)
        if self.world.main:  # every rank holds the same weights: rank 0 writes them
            self._write(training, loaded, prepared, stop, evaluations, log, timings, clock)
        result = self._result(prepared, plan, stop, start, sample_hash, evaluations, log.train_loss(), started)
        trainable_parameters, total_parameters = modelmod.parameter_counts(model)  # the same model on every rank
        rate = timings.tokens / timings.training if timings.training > 0 else None
        lost = start.redone_seconds + restart if start.resumed_from_step is not None else 0.0
        lost *= self.world.size if self.device.type == "cuda" else 1  # as `gpu_seconds` counts compute
        return result.model_copy(
            update={
                "resumed_from_step": start.resumed_from_step,
                "lost_seconds": round(lost, 2),
                "step_seconds": round(timings.step, 3),
                "checkpoint_seconds": round(timings.save, 3),
                "checkpoint_bytes": timings.size,
                "trainable_parameters": trainable_parameters,
                "total_parameters": total_parameters,
                "peak_memory_bytes": self._peak_memory(),
                "train_tokens": timings.tokens,
                "tokens_per_second": None if rate is None else round(rate, 1),
                "mfu": self._mfu(total_parameters, rate),
            }
        )

    def _mfu(self, parameters: int, tokens_per_second: float | None) -> float | None:
        """On CUDA, the stage's model FLOPs utilisation over every rank's GPU (None on CPUs)."""
        if self.device.type != "cuda" or tokens_per_second is None:
            return None
        peak = throughput.peak_tflops(torch.cuda.get_device_name(self.device))
        value = throughput.mfu(parameters, tokens_per_second, peak, self.world.size)
        return None if value is None else round(value, 4)

    def _peak_memory(self) -> int:
        """`peak_memory_bytes` of the busiest rank (a collective: every rank calls it)."""
        peak = peak_memory_bytes(self.device)
        return max(distributed.gather(peak)) if self.world.distributed else peak

    def _data_line(self, prepared: Prepared, sample_hash: str) -> str:
        return (
            f"{self.label} {len(prepared.train)} training rows "
            f"(sample {sample_hash}), {len(prepared.validation)} validation rows, "
            + (
                f"{len(prepared.asked)} categories, {len(prepared.attributes)} attributes"
                if len(prepared.asked) > 1
                else f"attributes {prepared.attributes}"
            )
            + (f"; {prepared.note}" if prepared.note else "")
            + (f"; data-parallel over {self.world.size} processes" if self.world.distributed else "")
        )

    def _model(self, prepared: Prepared) -> tuple[modelmod.Loaded, Any]:
        """The base model and tokenizer, and the model wrapped with LoRA."""
        config = self.config
        with modelmod.quiet_transformers():
            from sweetspot_trainer.extractive import label_names

            loaded = modelmod.load(config.model, label_names(prepared.attributes), self.device)
            torch.manual_seed(config.seed)  # LoRA and head initialisation do not depend on loading
            model = modelmod.add_lora(loaded, config.model, config.hyperparameters, self.gradient_checkpointing)
        return loaded, model

    def _task(self, loaded: modelmod.Loaded, prepared: Prepared) -> Task[Any]:
        max_length = self.config.model.max_sequence_length
        if loaded.task == "extractive":
            from sweetspot_trainer.extractive import ExtractiveTask

            if self.config.model.packing:
                raise modelmod.ModelError(
                    "model.packing applies to generative models; this one tags tokens (extractive)"
                )

            return ExtractiveTask(loaded.tokenizer, prepared.attributes, prepared.asked, max_length)
        from sweetspot_trainer.generative import GenerativeTask

        return GenerativeTask(loaded.tokenizer, prepared.asked, max_length, packed=self.config.model.packing)

    @staticmethod
    def _encode(task: Task[Any], prepared: Prepared) -> tuple[list[Any], list[Any]]:
        """The training and validation rows as the task encodes them, its decoding fitted to the training rows."""
        training = [task.encode(row) for row in prepared.train]
        validation = [task.encode(row) for row in prepared.validation]
        task.fit_decoding(training)
        return training, validation

    @staticmethod
    def _lengths(task: Task[Any], encoded: list[Any]) -> list[int] | None:
        """Per training row, its length in tokens, when the task batches rows of similar length."""
        return [task.length(e) for e in encoded] if task.bucket_by_length else None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

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

    def _train(
        self,
        training: _Training,
        start: checkpoints.Start,
        stop: int,
        validator: Validator,
        clock: TrainingClock,
        stop_request: StopRequest,
        timings: _Timings,
    ) -> tuple[list[Evaluation], _LossLog]:
        """Train steps `start.step` to `stop`, evaluating where the config asks and checkpointing on the schedule:
        the evaluations and the losses. A stop request ends it after the step in progress, checkpointed."""
        config = self.config
        scored_at = evaluation_steps(config, training.plan)
        evaluations = list(start.evaluations)
        if start.step in scored_at and all(e.step != start.step for e in evaluations):
            # Before any training (step 0, the model as it came), or where a stop came just before an evaluation.
            evaluations.append(validator.evaluate(start.step))
        training.model.train()
        if start.step < stop and self._stop_requested(stop_request):  # asked while loading: nothing new to keep
            raise StageStopped(start.step, stop_request.signum or signal.SIGTERM, False)
        log = _LossLog(self.label, self.progress, start.step, stop)
        log.losses = list(start.losses)
        schedule = checkpoints.Schedule(config.checkpoint_every_steps, config.checkpoint_every_seconds)
        looked = time.monotonic()
        for step in range(start.step, stop):
            step_started = time.monotonic()
            loss, rows, tokens = self._step(training, step)
            log.add(loss, rows)
            timings.tokens += tokens
            done = step + 1
            stopping = done < stop and self._stop_requested(stop_request)
            saving = done < stop and not stopping and schedule.due(done)
            report = log.due(done)
            if report or done in scored_at or stopping or saving:
                log.read()  # a checkpoint holds the losses so far
            now = time.monotonic()
            clock.training += now - step_started
            timings.training += now - step_started
            if self.world.main:
                training.checkpoints.heartbeat(done, clock.training)
            if stopping:
                self._interrupt(training, done, evaluations, log, clock, stop_request, timings)
            if report:
                log.report(done, now, training.scheduler.get_last_lr()[0])
            if done in scored_at:
                evaluations.append(validator.evaluate(done))
            if saving:
                if self.world.main:
                    timings.saved(self._save(training, done, evaluations, log, clock))
                schedule.saved()
            timings.step = max(timings.step, time.monotonic() - looked)
            looked = time.monotonic()
        log.read()
        return evaluations, log

    def _stop_requested(self, stop_request: StopRequest) -> bool:
        """Whether this rank, or any rank, was asked to stop (every rank must stop at the same step)."""
        if self.world.distributed:
            return distributed.any_rank(stop_request.requested, self.device)
        return stop_request.requested

    def _save(
        self, training: _Training, done: int, evaluations: list[Evaluation], log: _LossLog, clock: TrainingClock
    ) -> checkpoints.Saved | None:
        return training.checkpoints.save(
            training.model,
            training.optimizer,
            training.scheduler,
            done,
            evaluations,
            log.losses,
            clock.training,
        )

    def _interrupt(
        self,
        training: _Training,
        done: int,
        evaluations: list[Evaluation],
        log: _LossLog,
        clock: TrainingClock,
        stop_request: StopRequest,
        timings: _Timings,
    ) -> None:
        """Checkpoint step `done` (rank 0), wait for every rank, and stop."""
        saved = self._save(training, done, evaluations, log, clock) if self.world.main else None
        timings.saved(saved)
        if self.world.distributed:
            distributed.barrier()  # no rank exits (and has torchrun stop the others) before the checkpoint is whole
        signum = stop_request.signum or signal.SIGTERM
        if saved is not None:
            self.progress(
                f"{self.label} stopped after step {done}: checkpoint written in {saved.seconds:.2f}s "
                f"({saved.size / 1e6:.1f} MB)"
            )
        raise StageStopped(done, signum, saved is not None or not self.world.main)

    def _step(self, training: _Training, step: int) -> tuple[torch.Tensor, int, int]:
        """One optimizer step (0-based `step`): its loss, left on the device, and how many rows and real tokens it
        took (over every rank)."""
        config, world = self.config, self.world
        training.optimizer.zero_grad(set_to_none=True)
        if world.distributed:
            # Dropout masks are drawn per rank (a shard's masks are not a slice of one batch's anyway), from a
            # seed of (seed, step, rank): a resumed stage draws what one uninterrupted run would.
            torch.manual_seed(distributed.step_seed(config.seed, step, world.rank))
        micro = [b for b in training.order.batches(training.encoded, training.plan, step) if b]
        step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        rows = tokens = 0
        for batch in micro:
            rows += len(batch)
            tokens += sum(training.task.length(e) for e in batch)
            weight = 1.0
            if world.distributed:
                part = distributed.shard(len(batch), world.rank, world.size)
                weight = distributed.share([training.task.loss_tokens(e) for e in batch], part)
                batch = [batch[i] for i in part]
                if not weight:
                    continue  # nothing of this micro-batch here (a short last batch): the others add it
            tensors = {k: v.to(self.device) for k, v in training.task.collate(batch).items()}
            with training.autocast:
                loss = training.task.loss(training.model, tensors) / len(micro)
                if world.distributed:
                    loss = loss * weight
            loss.backward()
            step_loss += loss.detach()
        if world.distributed:
            step_loss = distributed.sum_gradients(training.trainable, step_loss)
        torch.nn.utils.clip_grad_norm_(training.trainable, config.hyperparameters.max_grad_norm)
        training.optimizer.step()
        training.scheduler.step()
        return step_loss, rows, tokens

    def _write(
        self,
        training: _Training,
        loaded: modelmod.Loaded,
        prepared: Prepared,
        stop: int,
        evaluations: list[Evaluation],
        log: _LossLog,
        timings: _Timings,
        clock: TrainingClock,
    ) -> None:
        """The early stage's checkpoint (what `final` resumes from), or a later stage's adapter and its
        description."""
        config = self.config
        if config.stage == "early":
            timings.saved(
                training.checkpoints.save(
                    training.model,
                    training.optimizer,
                    training.scheduler,
                    stop,
                    evaluations,
                    log.losses,
                    clock.training,
                )
            )
        elif config.output_dir:
            adapter = Path(config.output_dir) / ADAPTER_DIR
            training.model.save_pretrained(str(adapter))
            loaded.tokenizer.save_pretrained(str(adapter))
            product.describe(
                adapter,
                config,
                loaded.task,
                prepared.attributes,
                prepared.asked,
                training.task.labels,
                training.task.max_new_tokens,
                evaluations[-1] if evaluations else None,
                len(prepared.train),
            )

    def _result(
        self,
        prepared: Prepared,
        plan: StepPlan,
        stop: int,
        start: checkpoints.Start,
        sample_hash: str,
        evaluations: list[Evaluation],
        train_loss: float | None,
        started: float,
    ) -> StageResult:
        config, golds = self.config, [row.output for row in prepared.validation]
        seconds = time.monotonic() - started
        return StageResult(
            study=config.study,
            trial=config.trial,
            stage=config.stage,
            status="ok",
            message=start.note,
            step=stop,
            planned_steps=plan.total,
            evaluations=evaluations,
            train_loss=None if train_loss is None else round(train_loss, 5),
            seconds=round(seconds, 2),
            gpu_seconds=round(seconds * self.world.size, 2) if self.device.type == "cuda" else 0.0,
            samples=len(prepared.train),
            sample_hash=sample_hash,
            resumed=start.resumed,
            early_fraction=config.early_fraction if config.stage == "early" else None,
            null_baseline=round(evaluate.null_baseline(golds, config.attributes), 4),
        )
