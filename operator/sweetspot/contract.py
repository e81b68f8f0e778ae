"""The contract between the operator and the trainer: one trial config in, one stage result out.

Both sides import this module and nothing else of each other: the operator (or the local runtime) writes a
`TrialConfig` as JSON (a ConfigMap, an env var or a file); the trainer writes a `StageResult` as JSON to the
pod's termination message (under 4 KiB) and to its result file. It depends on pydantic only, so the trainer
image carries no operator code and the operator no torch.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CONTRACT_VERSION = 2
TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a container's termination message."""

Stage = Literal["early", "final", "full"]
"""`early`: train to the early fraction, evaluate, checkpoint, exit. `final`: resume (or retrain) and train
to the end, evaluate, save the adapter. `full`: both evaluations in one run (local runs, benchmarks)."""

Status = Literal["ok", "oom", "bad_input", "failed"]

# How a trainer is run and answers, besides the config and the result: each side reads these names from here.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_OOM = 0, 1, 2, 3
"""The trainer's exit codes: bad input and out of memory will not get better on a retry (a Job fails at once)."""
EXIT_INTERRUPTED = 75
"""SIGTERM or SIGINT stopped the stage after the step it was in, with a checkpoint written (sysexits'
EX_TEMPFAIL): a disruption, not the trial's fault; the rerun resumes there. No result is written."""
DEFAULT_GRACE_SECONDS = 30
"""A stop's grace before SIGKILL when nothing has been measured yet (Kubernetes' default)."""
CONFIG_ENV = "SWEETSPOT_TRIAL_CONFIG"
"""The trial config's JSON, when no `--config FILE` is given (a pod gets it from its ConfigMap)."""
TERMINATION_LOG_ENV = "SWEETSPOT_TERMINATION_LOG"
"""Where to write the termination message outside a pod (Kubernetes' own is `/dev/termination-log`)."""
CACHE_ENV = "SWEETSPOT_CACHE"
"""Where converted built-in models are cached (a pod: its cache volume)."""
CPU_THREADS_ENV = "SWEETSPOT_CPU_THREADS"
"""Torch threads per stage on CPUs (local mode gives each running stage its share of the cores)."""
TERMINATION_LOG = "/dev/termination-log"
ADAPTER_DIR = "adapter"
"""The folder under `output_dir` that a final stage saves the trained adapter into."""
PRODUCT_FILE = "sweetspot.json"
"""Beside the adapter: what it extracts and how to load it (task, base model, attributes, labels, scores)."""


# `check-data`: the trainer implements it (it reads rows as a stage does); `sweetspot check-data` runs it and shows
# the same help.
CHECK_DATA_HELP = "validate dataset files (JSONL or saved dataset dirs) and say what they hold"
CHECK_DATA_DESCRIPTION = (
    "Check dataset files without training: every bad row is one `file:line: problem` line on stderr (exit 2). For a "
    "good file, print what it holds: rows, categories, the attributes of each category, how often each applies and "
    "has a value, how often that value occurs verbatim in the row's text, the rare attributes and the always-null "
    "baseline (exit 0)."
)
CHECK_DATA_TABLE = """\
per attribute:
  applies      rows where the attribute is a key of `output` (it is scored there)
  value        of those, rows with a gold value (not null)
  value share  value / the category's rows; the lowest are flagged rare
  in text      of the rows with a value, those whose input holds it verbatim (any acceptable value, case-sensitive):
               an extractive model can only tag those; a generative one may still normalise its way to the rest"""
CHECK_DATA_SCHEMA_HELP = "JSON {category: [attributes]} the rows must keep to"
CHECK_DATA_BAD_ROWS_HELP = (
    "what to do with a malformed row, as spec.dataset.badRows does: fail (the default) lists it and exits 2; skip "
    "drops it, says so on stderr and checks the rest"
)


def result_file_name(stage: str) -> str:
    """The result file a stage writes in its output directory."""
    return f"result-{stage}.json"


class _Contract(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )


class Hyperparameters(_Contract):
    """What one trial trains with. Searched parameters override these defaults; unknown names are errors."""

    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0)
    lora_rank: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int = Field(default=32, ge=1, le=4096)
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    batch_size: int = Field(default=16, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    epochs: int = Field(default=2, ge=1, le=1000)
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    max_steps: int | None = Field(default=None, ge=1)
    """Overrides `epochs` when set (the data-efficiency sweep holds steps fixed this way)."""
    head_learning_rate: float = Field(default=5e-3, gt=0.0, le=1.0)
    """Fixed rate of a newly initialised task head: at the searched LoRA rate it can stick at the label prior."""
    max_grad_norm: float = Field(default=1.0, gt=0.0)


class ModelRef(_Contract):
    """The base model, resolved for the pod: exactly one of builtin, hugging_face, path."""

    builtin: Literal["tiny", "tiny-causal", "smollm2-135m"] | None = None
    hugging_face: str | None = None
    revision: str | None = None
    token_file: str | None = None
    """File holding a Hugging Face token (a mounted Secret); `HF_TOKEN` in the environment also works."""
    path: str | None = None
    task: Literal["auto", "generative", "extractive"] = "auto"
    target_modules: list[str] | None = None
    max_sequence_length: int = Field(default=512, ge=16)
    packing: bool = False
    """Generative task: a step's rows packed into one padding-free sequence (`spec.model.packing`)."""


class DataRef(_Contract):
    """Rows for training or validation: exactly one of builtin, path."""

    builtin: Literal["product-pages"] | None = None
    rows: int | None = Field(default=None, ge=1)
    path: str | None = None


class AttributeSchema(_Contract):
    """Which attributes each category is asked for: a JSON file `{category: [attributes]}` or the map itself.
    Exactly one of path, categories."""

    path: str | None = None
    categories: dict[str, list[str]] | None = None


class TrialConfig(_Contract):
    """Everything one trial stage needs; nothing secret."""

    contract: int = CONTRACT_VERSION
    study: str
    trial: int = Field(ge=0)
    stage: Stage
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    model: ModelRef
    train: DataRef
    validation: DataRef | None = None
    validation_fraction: float = Field(default=0.1, gt=0.0, le=0.5)
    samples: int | None = Field(default=None, ge=1)
    """Training rows to sample (stratified, nested across sizes); all when unset."""
    stratify: bool = True
    bad_rows: Literal["fail", "skip"] = "fail"
    """A malformed data row fails the stage (`fail`), or is dropped and counted (`skip`)."""
    attributes: list[str] | None = None
    """Only these attributes are asked for and scored; all applicable ones when unset."""
    schema_: AttributeSchema | None = Field(default=None, alias="schema")
    """The attributes of each category; from the training rows (the union of keys per category) when unset."""
    seed: int = Field(default=0, ge=0)
    early_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    evaluate_at: list[float] = Field(default_factory=list)
    """Extra fractions of the planned steps at which a `full` stage also evaluates (learning curves), and an
    `early` stage at those below `early_fraction` (its own curve, for final-score prediction)."""
    checkpoint_dir: str | None = None
    """Where a stage saves resumable checkpoints: every `checkpoint_every_*` and where `early` stops (what `final`
    resumes from); a rerun of a disrupted stage resumes from the newest of its own."""
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    """A checkpoint after every this many optimizer steps of a stage."""
    checkpoint_every_seconds: float | None = Field(default=None, gt=0.0)
    """A checkpoint after the first step that ends this long after the previous checkpoint (or the stage's start).
    Neither set: only the early checkpoint and the one a SIGTERM writes."""
    output_dir: str | None = None
    """Where the result JSON and the final adapter go."""
    max_eval_rows: int | None = Field(default=None, ge=1)
    """Score on at most this many validation rows (a seeded subset); all when unset."""
    early_decode_rows: int = Field(default=200, ge=1)
    """Generative task: evaluations before the end of training decode at most this many validation rows (a fixed
    seeded subsample; the loss still covers every row), so that judging a trial early stays cheap."""
    zero_shot: bool = False
    """Also score the model before any training (step 0): the baseline a fine-tune must beat."""

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class Evaluation(_Contract):
    """Scores on the validation rows at one point of training, over applicable (row, attribute) pairs only (the
    keys of each row's gold output): the field's NN/NV/VN/VC/VW cases, micro-averaged."""

    step: int
    fraction: float
    f1: float
    """Micro-F1 over applicable pairs: the headline score (always answering null scores 0)."""
    precision: float
    """VC / (NV + VC + VW): of the values predicted where the attribute applies, the share that is right."""
    recall: float
    """VC / (VN + VC + VW): of the gold values, the share extracted right."""
    macro_f1: float
    """Mean F1 over the (category, attribute) combinations with at least one pair that is not NN."""
    accuracy: float
    """Exact match (after normalisation) over applicable pairs; null for null counts as right."""
    token_f1: float
    """Mean token overlap with an acceptable value over applicable pairs (a finer signal than exact match)."""
    loss: float
    """Mean validation loss."""
    pairs: int = 0
    """Applicable pairs scored."""
    rows: int = 0
    """Validation rows scored."""
    subsampled: bool = False
    """The scores cover a fixed subsample of the validation rows (an early evaluation of a generative model);
    the loss covers them all."""
    attribute_f1: dict[str, float] = Field(default_factory=dict)
    """F1 per attribute over all categories, most gold values first (trimmed from the rarest end to fit)."""
    attribute_support: dict[str, int] = Field(default_factory=dict)
    """Gold values per attribute, in the same order."""
    attribute_accuracy: dict[str, float] = Field(default_factory=dict)
    """Exact match per attribute over its applicable pairs."""
    category_f1: dict[str, float] = Field(default_factory=dict)
    """Micro-F1 per category (only when the data has more than one)."""
    json_valid_rate: float | None = None
    """Generative task only: share of answers that parse as a JSON object."""
    train_seconds: float | None = None
    """Seconds spent training (evaluations excluded) from the stage's start to this point: the compute a
    strategy pays to reach it (the HPO benchmark's tables)."""
    ms_per_row: float | None = None
    """Inference latency: wall milliseconds this evaluation spent per validation row scored (forward passes, and
    decoding for a generative model; the loss pass excluded), at the evaluation's batch size."""


_DETAIL = ("attributeAccuracy", "attributeF1", "attributeSupport", "categoryF1")
"""Per-attribute and per-category detail of an evaluation, which the termination message trims first."""


class StageResult(_Contract):
    """What a trial stage reports back."""

    contract: int = CONTRACT_VERSION
    study: str
    trial: int
    stage: Stage
    status: Status
    message: str = ""
    step: int = 0
    planned_steps: int = 0
    evaluations: list[Evaluation] = Field(default_factory=list)
    train_loss: float | None = None
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    samples: int = 0
    sample_hash: str = ""
    resumed: bool = False
    """The stage continued a checkpoint: `final` from its `early`, or any stage from a disrupted run of itself."""
    resumed_from_step: int | None = None
    """A rerun of a disrupted stage: the step of the checkpoint it continued from (None: not such a rerun)."""
    lost_seconds: float = 0.0
    """Compute the disruptions before this run cost: training done after the newest checkpoint (trained again),
    plus this run's restart (data, model and checkpoint loaded before its first step). GPU-seconds on GPUs (over
    every rank), wall seconds on CPUs, as the study counts compute."""
    step_seconds: float = 0.0
    """The slowest optimizer step: with `checkpoint_seconds`, what a stop's grace period must cover."""
    checkpoint_seconds: float = 0.0
    """The slowest checkpoint write of the stage (0: none written)."""
    checkpoint_bytes: int = 0
    """The size of the stage's last checkpoint."""
    trainable_parameters: int = 0
    """Weights the stage trained (LoRA and the task head): the adapter's size (0 in results from before it was
    reported)."""
    total_parameters: int = 0
    """Every weight of the model as trained (base and adapter)."""
    peak_memory_bytes: int = 0
    """The stage's peak memory: the most GPU memory torch allocated on the busiest device, or on CPUs the
    process's peak resident set size (0: not measured)."""
    train_tokens: int = 0
    """Tokens this run trained on: every row's real tokens (padding excluded) summed over the steps it took."""
    tokens_per_second: float | None = None
    """`train_tokens` over this run's training seconds (the steps alone; None: it trained no step)."""
    mfu: float | None = None
    """Model FLOPs utilisation on CUDA: 6 x the model's parameters x tokens per second, over the dense bf16 peak of
    its GPUs (None on CPUs, or on a GPU whose peak the trainer does not know)."""
    null_baseline: float | None = None
    """Accuracy of always answering null (its F1 is 0): exact match must beat it to mean anything."""
    early_fraction: float | None = None
    """An `early` stage's `TrialConfig.early_fraction`, echoed: the fraction it was judged at (its step is that
    fraction of the planned steps rounded, which cannot tell 0.2 from 0.35 on a few steps)."""

    @property
    def last(self) -> Evaluation | None:
        return self.evaluations[-1] if self.evaluations else None

    def evaluation_at(self, fraction: float) -> Evaluation | None:
        """The evaluation made closest to `fraction` of the planned steps."""
        return min(self.evaluations, key=lambda e: abs(e.fraction - fraction), default=None)

    def termination_message(self) -> str:
        """The result in at most 4 KiB. Dropped first: per-attribute detail of earlier evaluations, middle
        evaluations, the last one's per-attribute accuracy; then its per-attribute F1 from the rarest end."""
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        data = json.loads(text)
        data["message"] = data.get("message", "")[:512]
        evaluations = data.get("evaluations", [])
        for evaluation in evaluations[:-1]:
            for key in _DETAIL:
                evaluation.pop(key, None)

        def size() -> int:
            return len(json.dumps(data, separators=(",", ":")).encode())

        while size() > TERMINATION_MESSAGE_LIMIT and len(evaluations) > 2:
            evaluations.pop(1)  # keep the first (early) and the last (final)
        if evaluations and size() > TERMINATION_MESSAGE_LIMIT:
            last = evaluations[-1]
            last.pop("attributeAccuracy", None)
            f1, support = last.get("attributeF1", {}), last.get("attributeSupport", {})
            while size() > TERMINATION_MESSAGE_LIMIT and (f1 or "categoryF1" in last):
                if f1:  # the dicts are ordered by support: the rarest attribute goes first
                    rarest = next(reversed(f1))
                    del f1[rarest]
                    support.pop(rarest, None)
                else:
                    del last["categoryF1"]
        return json.dumps(data, separators=(",", ":"))
