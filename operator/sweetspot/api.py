"""The FineTuneStudy resource (`sweetspot.dev/v1alpha1`): one typed model for the operator, the local mode and the CRD.

Every field's docstring is its `kubectl explain` text: `sweetspot crd` turns these models into the CRD's
OpenAPI schema, so the cluster and `sweetspot validate` read the same source. Cross-field rules are
declared once per model as `Rule`s: a Kubernetes CEL expression (enforced by the API server as
`x-kubernetes-validations`) next to the same check in Python (enforced here, with the field path in the
error). Tests evaluate both on the same manifests so they cannot drift apart.

Manifests are validated strictly, as the API server would: no type coercion, unknown fields are errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sweetspot import __version__
from sweetspot.contract import Hyperparameters

GROUP = "sweetspot.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FineTuneStudy"
PLURAL = "finetunestudies"

DEFAULT_TRAINER_IMAGE = f"sweetspot-trainer:{__version__}"


# --- rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, stated once for the API server (CEL) and once for Python."""

    cel: str
    """Kubernetes CEL expression over `self` (the object the rule is declared on); true means valid."""
    message: str
    field: str
    """Dotted path, relative to the object, of the field the error names ('' for the object itself)."""
    holds: Callable[[Any], bool]
    """The same rule over the validated Python model."""
    transition: bool = False
    """A rule over `oldSelf` (updates only): the API server enforces it; the operator checks it itself."""


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class BrokenRulesError(ValueError):
    """Raised by a model validator; carries every broken rule so each becomes its own error line."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field or '<object>'}: {v.message}" for v in violations))


def _schema_extra(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, **({"fieldPath": "." + r.field} if r.field else {})} for r in rules
        ]


class Model(BaseModel):
    """Base of every API object: camelCase names, strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,  # JSON (and so the API server) cannot carry them
        use_attribute_docstrings=True,
        json_schema_extra=_schema_extra,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = [Violation(r.field, r.message) for r in type(self).rules if not r.transition and not r.holds(self)]
        if broken:
            raise BrokenRulesError(broken)
        return self


# --- shared field types -------------------------------------------------------------------------------

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
# A path inside a volume or image with no `..` segment (no escape from the volume). Written without
# look-ahead because the API server checks it with RE2.
_SEGMENT = r"([^/.\x00][^/\x00]*|\.|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+)"
SAFE_PATH = rf"^/?{_SEGMENT}(/{_SEGMENT})*/?$"
SafePath = Annotated[str, Field(min_length=1, max_length=1024, pattern=SAFE_PATH)]

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


PATTERN_HINTS = {
    DNS_LABEL: "is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)",
    SAFE_PATH: "is not an allowed path (no '..' segments)",
    QUANTITY_PATTERN: "is not a Kubernetes quantity (such as 1, 500m, 16Gi)",
}
"""What a user should read instead of a regular expression."""


def _quantity_to_str(value: object) -> object:
    # Kubernetes accepts `1` and `"1"` alike for a quantity; keep one spelling.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(
        pattern=QUANTITY_PATTERN,
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,  # pydantic leaves it out after a BeforeValidator
        },
    ),
]


def _set(*names: str) -> Callable[[Any], bool]:
    """Python twin of CEL `has(...)` counting: how many of the named attributes are set."""
    return lambda obj: sum(getattr(obj, n) is not None for n in names) == 1


def _has_cel(*names: str) -> str:
    return " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in names) + " == 1"


def _only_with(field: str, required: str) -> Rule:
    return Rule(
        cel=f"!has(self.{field}) || has(self.{required})",
        message=f"{field} is only allowed together with {required}",
        field=field,
        holds=lambda o: getattr(o, _snake(field)) is None or getattr(o, _snake(required)) is not None,
    )


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


class SecretKeyRef(Model):
    """A key in a Secret in the study's namespace."""

    name: DnsLabel
    """Name of the Secret."""
    key: str = Field(default="url", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret (default `url`)."""


class TokenSecretRef(Model):
    """A key in a Secret in the study's namespace that holds an access token."""

    name: DnsLabel
    """Name of the Secret."""
    key: str = Field(default="token", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret (default `token`)."""


class VolumePath(Model):
    """A path on a PersistentVolumeClaim that is mounted into every trial pod."""

    pvc: DnsLabel
    """Name of the PersistentVolumeClaim, in the study's namespace."""
    path: SafePath = "."
    """Path inside the volume, relative to its root."""

    rules = (
        Rule(
            cel="!self.path.startsWith('/')",
            message="path must be relative to the volume root",
            field="path",
            holds=lambda o: not o.path.startswith("/"),
        ),
    )


# --- model ---------------------------------------------------------------------------------------------

BuiltinModel = Literal["tiny", "tiny-causal", "smollm2-135m"]
Task = Literal["auto", "generative", "extractive"]


class ModelSpec(Model):
    """The base model to fine-tune with LoRA. Set exactly one of `builtin`, `huggingFace` or `path`."""

    builtin: BuiltinModel | None = None
    """A model the trainer ships: `tiny` (MiniLM-L6 encoder, extractive head; learns in minutes on a CPU),
    `tiny-causal` (a small random causal LM that exercises the generative path) or `smollm2-135m`
    (SmolLM2-135M-Instruct, a real pretrained chat LM, generative; converted once into the trial cache)."""
    hugging_face: str | None = Field(
        default=None, max_length=256, pattern=r"^[A-Za-z0-9][-._A-Za-z0-9]*(/[A-Za-z0-9][-._A-Za-z0-9]*)?$"
    )
    """A Hugging Face model id such as `meta-llama/Llama-3.1-8B`, downloaded by the trainer pod."""
    revision: str | None = Field(default=None, min_length=1, max_length=256)
    """Revision (branch, tag or commit) of the Hugging Face model; only with `huggingFace`."""
    token_secret_ref: TokenSecretRef | None = None
    """Secret key holding a Hugging Face access token, for gated models; only with `huggingFace`. The trial pods
    get it as a read-only file, never as an environment variable."""
    pvc: DnsLabel | None = None
    """PersistentVolumeClaim holding the model files; `path` is then relative to its root."""
    path: SafePath | None = None
    """Directory of a saved model (config, weights, tokenizer): on `pvc` when given, else in the trainer image
    (or, in local mode, relative to the manifest)."""
    task: Task = "auto"
    """How the model answers: `generative` (prompt to JSON answer; causal LMs), `extractive` (token tagging of
    attribute spans; encoders), or `auto` (extractive for `builtin: tiny`, generative otherwise)."""
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    """Module names LoRA adapts; the trainer picks sensible ones per architecture when unset."""
    max_sequence_length: int = Field(default=512, ge=16, le=131072)
    """Longest input in tokens; longer pages are truncated."""
    zero_shot: bool = False
    """Also score the base model before any training, once (in trial 0's first stage): the baseline a fine-tune
    must beat, shown beside the trials in `sweetspot report`. Worth it for pretrained generative models."""

    rules = (
        Rule(
            cel=_has_cel("builtin", "huggingFace", "path"),
            message="set exactly one of builtin, huggingFace or path",
            field="",
            holds=_set("builtin", "hugging_face", "path"),
        ),
        _only_with("revision", "huggingFace"),
        _only_with("tokenSecretRef", "huggingFace"),
        _only_with("pvc", "path"),
        Rule(
            cel="!has(self.pvc) || !has(self.path) || !self.path.startsWith('/')",
            message="path must be relative to the volume root when pvc is set",
            field="path",
            holds=lambda o: o.pvc is None or o.path is None or not o.path.startswith("/"),
        ),
        Rule(
            cel="!has(self.builtin) || self.builtin != 'tiny' || self.task != 'generative'",
            message="builtin model tiny is an encoder: task must be extractive or auto",
            field="task",
            holds=lambda o: not (o.builtin == "tiny" and o.task == "generative"),
        ),
        Rule(
            cel="!has(self.builtin) || !(self.builtin in ['tiny-causal', 'smollm2-135m']) || self.task != 'extractive'",
            message="builtin models tiny-causal and smollm2-135m are causal LMs: task must be generative or auto",
            field="task",
            holds=lambda o: not (o.builtin in ("tiny-causal", "smollm2-135m") and o.task == "extractive"),
        ),
    )


# --- dataset -------------------------------------------------------------------------------------------

BuiltinDataset = Literal["product-pages"]


class DataSource(Model):
    """Where rows come from: JSONL records `{"input": "<page text>", "output": {"<attribute>": "<value or
    null>"}}`, a saved Hugging Face dataset directory with the same columns, or a built-in generator.
    Set exactly one of `builtin` or `path`."""

    builtin: BuiltinDataset | None = None
    """A dataset the trainer generates: `product-pages` (synthetic product pages with name, brand, price,
    color, and a rare rating attribute on about 25% of pages)."""
    rows: int | None = Field(default=None, ge=1, le=1_000_000)
    """How many rows the built-in generator makes; only with `builtin` (default 2000 for train, 400 for
    validation)."""
    pvc: DnsLabel | None = None
    """PersistentVolumeClaim holding the file; `path` is then relative to its root."""
    path: SafePath | None = None
    """JSONL file or saved dataset directory: on `pvc` when given, else in the trainer image (or, in local
    mode, relative to the manifest)."""

    rules = (
        Rule(
            cel=_has_cel("builtin", "path"),
            message="set exactly one of builtin or path",
            field="",
            holds=_set("builtin", "path"),
        ),
        _only_with("rows", "builtin"),
        _only_with("pvc", "path"),
        Rule(
            cel="!has(self.pvc) || !has(self.path) || !self.path.startsWith('/')",
            message="path must be relative to the volume root when pvc is set",
            field="path",
            holds=lambda o: o.pvc is None or o.path is None or not o.path.startswith("/"),
        ),
    )


AttributeName = Annotated[str, Field(min_length=1, max_length=128)]


class AttributeSchema(Model):
    """The attributes a model is asked for in each category: a JSON file `{"<category>": ["<attribute>", ...]}`
    (`path`, on `pvc` when given) or the same map inline (`categories`). Set exactly one of `path` or
    `categories`. A row whose category or attributes the schema does not list fails with its `file:line`."""

    categories: dict[str, list[AttributeName]] | None = Field(default=None, min_length=1, max_length=1024)
    """Inline schema: category name to the attributes asked there."""
    pvc: DnsLabel | None = None
    """PersistentVolumeClaim holding the schema file; `path` is then relative to its root."""
    path: SafePath | None = None
    """JSON schema file: on `pvc` when given, else in the trainer image (or, in local mode, relative to the
    manifest)."""

    rules = (
        Rule(
            cel=_has_cel("categories", "path"),
            message="set exactly one of categories or path",
            field="",
            holds=_set("categories", "path"),
        ),
        _only_with("pvc", "path"),
        Rule(
            cel="!has(self.pvc) || !has(self.path) || !self.path.startsWith('/')",
            message="path must be relative to the volume root when pvc is set",
            field="path",
            holds=lambda o: o.pvc is None or o.path is None or not o.path.startswith("/"),
        ),
        Rule(
            cel="!has(self.categories) || self.categories.all(c, size(c) > 0 && size(self.categories[c]) > 0)",
            message="every category needs a name and at least one attribute",
            field="categories",
            holds=lambda o: o.categories is None or all(c and a for c, a in o.categories.items()),
        ),
    )


class DatasetSpec(Model):
    """Training and validation data, and how training rows are sampled. Rows are JSON objects `{"input": "<page
    text>", "output": {"<attribute>": "<value>" | ["<value>", ...] | null}, "category": "<name>"}`: a key of
    `output` is an attribute that applies to the row (null: the text does not state it; a list: acceptable
    values), an absent key does not apply and is never scored; `category` is optional."""

    train: DataSource
    """The rows trials train on."""
    validation: DataSource | None = None
    """The rows every evaluation scores; when unset, `validationFraction` of `train` is held out."""
    validation_fraction: float = Field(default=0.1, gt=0.0, le=0.5)
    """Share of `train` held out for validation when `validation` is unset."""
    samples: int | None = Field(default=None, ge=1, le=10_000_000)
    """Training rows each search trial uses (a seeded, stratified sample); all rows when unset."""
    bad_rows: Literal["fail", "skip"] = "fail"
    """A malformed row (not JSON, no `input`, a non-string value, ...) fails the trial with `file:line` (`fail`),
    or is dropped and counted (`skip`)."""
    stratify_by: Literal["attributes", "none"] = "attributes"
    """`attributes`: sample so that rare attributes are represented at least at their share of the data (late
    gains come from rare attributes); `none`: uniform sampling."""
    attributes: list[AttributeName] | None = Field(default=None, min_length=1, max_length=4096)
    """Only these attributes are asked for and scored; all applicable attributes when unset."""
    schema_: AttributeSchema | None = Field(default=None, alias="schema")
    """The attributes each category is asked for; when unset, the union of the keys of each category's training
    rows."""


# --- objective and search ------------------------------------------------------------------------------

Metric = Literal["f1", "accuracy", "tokenF1", "loss"]


class Objective(Model):
    """What the study optimises, measured on the validation rows over applicable (row, attribute) pairs."""

    metric: Metric = "f1"
    """`f1`: micro-F1 of the extracted values, as the attribute-extraction field scores (always answering null
    scores 0); `accuracy`: exact match over applicable pairs; `tokenF1`: token overlap of the values (a finer
    signal); `loss`: validation loss."""
    direction: Literal["maximize", "minimize"] = "maximize"
    """`maximize` for f1, accuracy and tokenF1, `minimize` for loss."""
    target: float | None = Field(default=None, ge=0.0)
    """Stop searching once a trial reaches this value (for f1, accuracy and tokenF1, a number in [0, 1])."""

    rules = (
        Rule(
            cel="(self.metric == 'loss') == (self.direction == 'minimize')",
            message="direction must be minimize for loss and maximize for f1, accuracy and tokenF1",
            field="direction",
            holds=lambda o: (o.metric == "loss") == (o.direction == "minimize"),
        ),
        Rule(
            cel="!has(self.target) || self.metric == 'loss' || self.target <= 1.0",
            message="target must be in [0, 1] for f1, accuracy and tokenF1",
            field="target",
            holds=lambda o: o.target is None or o.metric == "loss" or o.target <= 1.0,
        ),
    )


def _range_rules(zero: str) -> tuple[Rule, ...]:
    return (
        Rule(
            cel="!has(self.values) || (!has(self.min) && !has(self.max) && !has(self.step) && !self.log)",
            message="values cannot be combined with min, max, step or log",
            field="values",
            holds=lambda o: o.values is None or (o.min is None and o.max is None and o.step is None and not o.log),
        ),
        Rule(
            cel="has(self.values) || has(self.min)",
            message="min is required (or give a list of values)",
            field="min",
            holds=lambda o: o.values is not None or o.min is not None,
        ),
        Rule(
            cel="has(self.values) || has(self.max)",
            message="max is required (or give a list of values)",
            field="max",
            holds=lambda o: o.values is not None or o.max is not None,
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min < self.max",
            message="min must be less than max",
            field="min",
            holds=lambda o: o.min is None or o.max is None or o.min < o.max,
        ),
        Rule(
            cel=f"!self.log || !has(self.min) || self.min > {zero}",
            message="log scale needs min > 0",
            field="min",
            holds=lambda o: not o.log or o.min is None or o.min > 0,
        ),
        Rule(
            cel="!self.log || !has(self.step)",
            message="step cannot be combined with log scale",
            field="step",
            holds=lambda o: not o.log or o.step is None,
        ),
    )


def _unique(values: list[Any] | None) -> list[Any] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("values must be unique")
    return values


class FloatParameter(Model):
    """A real-valued hyperparameter: a range `min`..`max` (optionally log-scaled or stepped), or `values`."""

    min: float | None = None
    """Lower bound (inclusive)."""
    max: float | None = None
    """Upper bound (inclusive)."""
    log: bool = False
    """Sample on a log scale: every factor of ten between min and max is equally likely (needs min > 0)."""
    step: float | None = Field(default=None, gt=0.0)
    """Discretisation step; needed by the grid sampler."""
    values: Annotated[list[float], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """The allowed values (categorical); instead of a range."""

    rules = _range_rules("0.0")


class IntParameter(Model):
    """An integer hyperparameter: a range `min`..`max` (optionally log-scaled or stepped), or `values`."""

    min: int | None = None
    """Lower bound (inclusive)."""
    max: int | None = None
    """Upper bound (inclusive)."""
    log: bool = False
    """Sample on a log scale: every factor of ten between min and max is equally likely (needs min > 0)."""
    step: int | None = Field(default=None, ge=1)
    """Step between candidate values (default 1)."""
    values: Annotated[list[int], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """The allowed values (categorical); instead of a range."""

    rules = _range_rules("0")


Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]


class SchedulerParameter(Model):
    """The learning-rate schedule, chosen among `values`."""

    values: list[Scheduler] = Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Candidate schedules."""


class SearchSpace(Model):
    """The hyperparameters to search. Parameters left out keep the trainer's defaults."""

    learning_rate: FloatParameter | None = None
    """Peak learning rate of the LoRA weights (the new task head keeps a fixed rate)."""
    lora_rank: IntParameter | None = None
    """LoRA rank r."""
    lora_alpha: IntParameter | None = None
    """LoRA scaling alpha."""
    lora_dropout: FloatParameter | None = None
    """Dropout on the LoRA path."""
    batch_size: IntParameter | None = None
    """Rows per optimizer step on one device."""
    gradient_accumulation_steps: IntParameter | None = None
    """Micro-batches accumulated per optimizer step."""
    epochs: IntParameter | None = None
    """Passes over the training sample."""
    warmup_ratio: FloatParameter | None = None
    """Share of steps spent warming the learning rate up."""
    weight_decay: FloatParameter | None = None
    """AdamW weight decay."""
    lr_scheduler: SchedulerParameter | None = None
    """Learning-rate schedule."""

    def parameters(self) -> dict[str, FloatParameter | IntParameter | SchedulerParameter]:
        """The parameters that are searched, by their API (camelCase) name."""
        return {to_camel(name): value for name in _SPACE_FIELDS if (value := getattr(self, name)) is not None}


_SPACE_FIELDS = tuple(SearchSpace.model_fields)
"""Every searchable hyperparameter: a field of `SearchSpace` (the trainer's side is `contract.Hyperparameters`)."""
SearchSpace.rules = (
    Rule(
        cel=" || ".join(f"has(self.{to_camel(n)})" for n in _SPACE_FIELDS),
        message="the search space is empty: give at least one parameter",
        field="",
        holds=lambda o: any(getattr(o, n) is not None for n in _SPACE_FIELDS),
    ),
)


DEFAULT_SEARCH_SPACE = SearchSpace(
    learning_rate=FloatParameter(min=1.0e-5, max=5.0e-4, log=True),
    lora_rank=IntParameter(values=[8, 16, 32, 64]),
    lora_alpha=IntParameter(values=[16, 32, 64]),
    lora_dropout=FloatParameter(min=0.0, max=0.2),
    batch_size=IntParameter(values=[8, 16]),
    epochs=IntParameter(min=1, max=3),
)

Sampler = Literal["tpe", "gp", "random", "cmaes", "qmc", "grid"]
Policy = Literal["proxy", "prune"]


DEFAULT_WIDEN_TO = (0.35, 0.5)


class EarlyEvaluation(Model):
    """How trials are judged before they finish: a score taken early in training stands in for the final one."""

    at_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of a trial's planned steps after which it is evaluated early."""
    policy: Policy = "proxy"
    """`proxy`: search on the early score, then train the best `promoteTopK` to the end; `prune`: every trial
    reports its early score and a pruner stops the poor ones, the rest finish at once."""
    promote_top_k: int = Field(default=3, ge=1, le=1000)
    """With `proxy`, how many of the best early trials are trained to the end (the early winner is often not
    the final one: promote 3 to 5)."""
    signal: Literal["auto", "f1", "accuracy", "tokenF1", "loss"] = "auto"
    """The score trials are judged on early. `auto` is validation loss: early in training many trials still answer
    the label prior and tie on F1 or accuracy, while their losses already differ. Or `f1`, `accuracy`, `tokenF1`,
    `loss`."""
    pruner: Literal["successiveHalving", "median", "percentile"] = "successiveHalving"
    """With `prune`, the Optuna pruner that decides which trials continue."""
    min_agreement: float | None = Field(default=None, ge=-1.0, le=1.0)
    """With `proxy`, widen the early fraction when early and final scores disagree (off when unset; e.g. 0.6).
    Once at least 3 promoted trials
    judged at the current fraction have final scores, the Spearman correlation of their early signal and final
    objective is checked; below this value, one more trial is promoted and trials asked from then on are judged at
    the next fraction of `widenTo` (each widening an Event, a status field and a metric). `proxy` trains finals once
    the search is done, so the wider fraction serves only trials asked after that (a raised `maxTrials` or budget):
    in a study run straight through, the guard's effect is the extra promotion. Off by default: where the early
    signal ranks trials well it only costs compute (docs/performance.md)."""
    promote: Literal["topK", "predicted"] = "topK"
    """With `proxy`, which trials train to the end. `topK`: the best `promoteTopK` by early score. `predicted`: each
    trial's final score is predicted with an 80% interval by a line fitted to the study's own (early, final) pairs,
    on the early score or on the early curve extrapolated to the end (saturating curve families fitted with scipy;
    with `curvePoints` of 3 or more), whichever predicts held-out finals better; the trials whose upper bound reaches
    the best final so far (or the best lower bound) are promoted, and until 3 finals calibrate the line, the best
    `promoteTopK`. `topK` by default: `predicted` did not pay on the benchmark tables (docs/performance.md)."""
    curve_points: int = Field(default=1, ge=1, le=8)
    """Evaluations inside the early stage, evenly spaced up to `atFraction` (the last is the early score): the
    trial's own early curve, for `promote: predicted`."""
    widen_to: list[Annotated[float, Field(gt=0.0, lt=1.0)]] | None = Field(default=None, max_length=8)
    """The wider fractions the guard moves to, in order; each above `atFraction` and the one before. Unset: 0.35
    and 0.5, those above `atFraction`."""

    rules = (
        Rule(
            cel="!has(self.widenTo) || (self.widenTo.all(f, f > self.atFraction) && self.widenTo.isSorted() "
            "&& self.widenTo.all(f, self.widenTo.exists_one(g, g == f)))",
            message="widenTo must be increasing fractions above atFraction",
            field="widenTo",
            holds=lambda o: (
                o.widen_to is None
                or (
                    all(f > o.at_fraction for f in o.widen_to)
                    and all(a < b for a, b in zip(o.widen_to, o.widen_to[1:], strict=False))
                )
            ),
        ),
        Rule(
            cel="self.promote != 'predicted' || self.policy == 'proxy'",
            message="promote: predicted needs policy proxy",
            field="promote",
            holds=lambda o: o.promote != "predicted" or o.policy == "proxy",
        ),
    )

    def curve_at(self, fraction: float) -> list[float]:
        """Where an early stage that stops at `fraction` also evaluates (`curvePoints`, the last being `fraction`)."""
        return [round(fraction * k / self.curve_points, 4) for k in range(1, self.curve_points)]

    def fractions(self) -> list[float]:
        """The fractions trials are judged at: `atFraction`, then each step the guard may widen to."""
        wider = self.widen_to if self.widen_to is not None else [f for f in DEFAULT_WIDEN_TO if f > self.at_fraction]
        return [self.at_fraction, *wider]


def _float_parameters() -> list[str]:
    """The search space's float parameters, by their API names (the grid sampler needs each stepped or listed)."""
    return [
        to_camel(name) for name, info in SearchSpace.model_fields.items() if FloatParameter in get_args(info.annotation)
    ]


class Budget(Model):
    """A cap on the compute a study spends: no stage starts that the rest of the budget cannot pay for, by the
    stage costs observed so far."""

    gpu_hours: float = Field(gt=0.0, le=1_000_000.0)
    """The compute the study may spend, in hours. The unit is what every stage reports: GPU-seconds on GPUs (a stage on
    4 GPUs for one hour spends 4), wall seconds on CPUs (local mode without a GPU: hours of stage run time, stages
    running side by side adding up). What finished stages recorded counts, and a running stage counts as the mean
    of finished stages of its kind; before any stage finished, one stage runs alone to price the rest. Under
    `proxy` the search stops asking trials when what is left only pays for training the best `promoteTopK` to
    the end; the learning curve gets what the search leaves. The study then ends `Succeeded` with reason
    `BudgetExhausted` and its best trial (`Failed`, same reason, when not even one trial could be trained to the
    end). May change at any time: raising it resumes a study that ended on it."""


class WarmStart(Model):
    """Start from what earlier studies of the same task learned. Read once, when this study's Optuna study is
    created (changing it later has no effect)."""

    studies: Annotated[list[DnsLabel], AfterValidator(_unique)] = Field(
        min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Names of earlier FineTuneStudies in this namespace whose trials are in the same Optuna storage (the newest
    study of each name, which may have been deleted with `onDelete: keep`). A name missing from the storage fails
    this study."""
    reuse: Literal["results", "configs"] = "results"
    """`results`: the earlier studies' finished trials are copied into this one with their recorded early and final
    results, so the sampler learns from them and none is trained again; they do not count toward `maxTrials`.
    Only from a study with the same model, dataset, objective, search space and early evaluation (policy,
    atFraction, signal, pruner); any other falls back to `configs`. `configs`: the best configurations of the
    earlier studies by final score (`promoteTopK` of them, at most `maxTrials`) are this study's first trials,
    trained afresh."""


class WarmStartStatus(Model):
    """What this study took from earlier studies (`spec.search.warmStart`)."""

    studies: list[Annotated[str, Field(max_length=512)]] = Field(default_factory=list, max_length=16)
    """The Optuna studies read."""
    reused: int = Field(default=0, ge=0)
    """Trials copied with their results: never trained here, not counted in `maxTrials`."""
    enqueued: int = Field(default=0, ge=0)
    """Configurations of earlier studies queued as this study's first trials (trained here)."""
    message: str = Field(default="", max_length=1024)
    """What was taken from where, and why a study's results could not be reused."""


class Search(Model):
    """The hyperparameter search."""

    sampler: Sampler = "tpe"
    """Optuna sampler: `tpe` (Bayesian, multivariate), `gp` (Gaussian process), `random`, `cmaes`, `qmc`
    (quasi-random), `grid` (every combination; needs stepped or listed float parameters)."""
    max_trials: int = Field(default=20, ge=1, le=10_000)
    """How many hyperparameter configurations to try."""
    parallelism: int = Field(default=1, ge=1, le=1000)
    """How many trial stages run at the same time."""
    max_failed_trials: int = Field(default=3, ge=0, le=10_000)
    """The study fails when more than this many trials have failed (0: the first failure fails it).
    Disruptions such as preemption or eviction do not count."""
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """Seed of the sampler and of data sampling, for repeatable studies."""
    early_evaluation: EarlyEvaluation = Field(default_factory=EarlyEvaluation)
    """How trials are judged early."""
    space: SearchSpace = Field(default_factory=lambda: DEFAULT_SEARCH_SPACE)
    """The hyperparameters searched; by default learning rate, LoRA rank/alpha/dropout, batch size, epochs."""
    budget: Budget | None = None
    """A compute budget (`gpuHours`): the study stops starting stages the rest cannot pay for; none when unset."""
    warm_start: WarmStart | None = None
    """Start from earlier studies' trials (results) or best configurations; none when unset."""

    rules = (
        Rule(
            cel="self.parallelism <= self.maxTrials",
            message="parallelism must not exceed maxTrials",
            field="parallelism",
            holds=lambda o: o.parallelism <= o.max_trials,
        ),
        Rule(
            cel="self.earlyEvaluation.policy != 'proxy' || self.earlyEvaluation.promoteTopK <= self.maxTrials",
            message="promoteTopK must not exceed maxTrials",
            field="earlyEvaluation.promoteTopK",
            holds=lambda o: o.early_evaluation.policy != "proxy" or o.early_evaluation.promote_top_k <= o.max_trials,
        ),
        Rule(
            cel="self.sampler != 'grid' || ("
            + " && ".join(
                f"(!has(self.space.{p}) || has(self.space.{p}.values) || has(self.space.{p}.step))"
                for p in _float_parameters()
            )
            + ")",
            message="the grid sampler needs every float parameter to have step or values",
            field="space",
            holds=lambda o: (
                o.sampler != "grid"
                or all(
                    p.values is not None or p.step is not None
                    for p in o.space.parameters().values()
                    if isinstance(p, FloatParameter)
                )
            ),
        ),
    )


# --- data efficiency, trial pods, storage ----------------------------------------------------------------


class Ladder(Model):
    """Training-set sizes spaced evenly on a log scale, from `from` to `to`."""

    from_: int = Field(alias="from", ge=1, le=10_000_000)
    """The smallest size."""
    to: int = Field(ge=2, le=10_000_000)
    """The largest size."""
    steps: int = Field(default=6, ge=2, le=32)
    """How many sizes, both ends included."""

    rules = (
        Rule(cel="self.from < self.to", message="from must be below to", field="to", holds=lambda o: o.from_ < o.to),
    )

    def sizes(self) -> list[int]:
        ratio = self.to / self.from_
        sizes = [round(self.from_ * ratio ** (i / (self.steps - 1))) for i in range(self.steps)]
        return sorted(set(sizes))


class CurveForecast(Model):
    """Sizes past the measured ones at which the study forecasts micro-F1, each with an 80% band."""

    to: list[Annotated[int, Field(ge=2, le=100_000_000)]] = Field(min_length=1, max_length=16)
    """Training-set sizes to forecast F1 at, strictly increasing and above the largest measured size."""

    rules = (
        Rule(
            cel="self.to.isSorted() && self.to.all(n, self.to.exists_one(m, m == n))",
            message="forecast sizes must be strictly increasing",
            field="to",
            holds=lambda o: all(a < b for a, b in zip(o.to, o.to[1:], strict=False)),
        ),
    )


class CurveTarget(Model):
    """A micro-F1 to reach: the study answers how many training rows reach it, with an 80% band."""

    f1: float = Field(gt=0.0, le=1.0)
    """The micro-F1 to reach, in (0, 1]."""


FixedHyperparameters = Annotated[
    dict[str, float | int | str],
    Field(
        strict=False, min_length=1, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"}
    ),
]


class DataEfficiency(Model):
    """A learning-curve sweep: one configuration trained on nested, stratified samples of growing size, to find
    the size past which more data stops paying (and which attribute the late gains come from)."""

    sample_sizes: list[Annotated[int, Field(ge=1, le=10_000_000)]] | None = Field(
        default=None, min_length=1, max_length=32
    )
    """Training-set sizes, strictly increasing; smaller samples are subsets of larger ones. Or give `ladder`."""
    ladder: Ladder | None = None
    """Sizes on a log scale (`from`, `to`, `steps`) instead of `sampleSizes`."""
    hyperparameters: Literal["best", "fixed"] = "best"
    """`best`: the best configuration of the search (the sweep runs after it); `fixed`: the values in `params`
    (the sweep runs alone, no search)."""
    params: FixedHyperparameters | None = None
    """With `hyperparameters: fixed`: the trainer's hyperparameters, e.g. `{learningRate: 5.0e-4, loraRank: 16}`;
    unset ones take the trainer's defaults."""
    repeats: int = Field(default=1, ge=1, le=10)
    """Runs per size with different seeds (different nested samples): the curve shows their mean and spread."""
    hold: Literal["steps", "epochs"] = "steps"
    """What stays fixed across sizes: `steps` (every size gets the optimizer steps of the largest size, or of the
    best trial; comparable compute) or `epochs` (every size gets the same epochs; small sizes then train less)."""
    tolerance: float = Field(default=0.01, gt=0.0, le=0.5)
    """The sweet spot is the smallest size whose fitted micro-F1 is within this much of the fitted plateau; when
    even the largest size is further away, the curve has not saturated and no sweet spot is claimed."""
    forecast: CurveForecast | None = None
    """Sizes past the measured ones at which to forecast F1 with an 80% band (`to: [sizes]`); none when unset."""
    target: CurveTarget | None = None
    """A micro-F1 to reach (`f1`): the study forecasts how many rows reach it, or says it lies above the plateau."""
    cost_per_label: float | None = Field(default=None, ge=0.0, le=1e6)
    """The price of labelling one row: forecasts and targets then state what the labels past the largest measured
    size cost (in the unit of this price)."""

    rules = (
        Rule(
            cel="has(self.sampleSizes) != has(self.ladder)",
            message="give either sampleSizes or ladder",
            field="sampleSizes",
            holds=lambda o: (o.sample_sizes is None) != (o.ladder is None),
        ),
        Rule(
            cel="!has(self.sampleSizes) || (self.sampleSizes.isSorted() "
            "&& self.sampleSizes.all(n, self.sampleSizes.exists_one(m, m == n)))",
            message="sampleSizes must be strictly increasing",
            field="sampleSizes",
            holds=lambda o: (
                o.sample_sizes is None or all(a < b for a, b in zip(o.sample_sizes, o.sample_sizes[1:], strict=False))
            ),
        ),
        Rule(
            cel="(self.hyperparameters == 'fixed') == has(self.params)",
            message="params are required with hyperparameters: fixed, and only then",
            field="params",
            holds=lambda o: (o.hyperparameters == "fixed") == (o.params is not None),
        ),
        Rule(
            cel="!has(self.forecast) || !has(self.sampleSizes) || size(self.sampleSizes) == 0 "
            "|| self.forecast.to.all(n, n > self.sampleSizes[size(self.sampleSizes) - 1])",
            message="forecast sizes must lie above the largest of sampleSizes",
            field="forecast.to",
            holds=lambda o: o.forecast is None or not o.sample_sizes or min(o.forecast.to) > o.sample_sizes[-1],
        ),
        Rule(
            cel="!has(self.forecast) || !has(self.ladder) || self.forecast.to.all(n, n > self.ladder.to)",
            message="forecast sizes must lie above ladder.to, the largest measured size",
            field="forecast.to",
            holds=lambda o: o.forecast is None or o.ladder is None or min(o.forecast.to) > o.ladder.to,
        ),
    )

    @field_validator("params")
    @classmethod
    def _known_hyperparameters(cls, params: dict[str, Any] | None) -> dict[str, Any] | None:
        if params is not None:
            try:
                Hyperparameters.model_validate(params)
            except ValidationError as exc:
                problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)]
                raise ValueError("; ".join(problems)) from None
        return params

    def sizes(self) -> list[int]:
        """The training-set sizes, increasing."""
        return list(self.sample_sizes) if self.sample_sizes is not None else self.ladder.sizes()  # type: ignore[union-attr]


class Toleration(Model):
    """A core/v1 Toleration for the trial pods."""

    key: str | None = Field(default=None, max_length=317)
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """`Equal` matches the value; `Exists` matches any value."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value to match with `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; all effects when unset."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """With NoExecute, how long the pod stays bound after the taint appears."""


class Resources(Model):
    """Compute resources of the trainer container."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Minimum resources, e.g. `cpu: 4`, `memory: 32Gi`."""
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    """Maximum resources; GPUs go here, e.g. `nvidia.com/gpu: 1`."""


class EnvVar(Model):
    """A plain environment variable of the trainer container (never put secrets here)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name."""
    value: str = Field(default="", max_length=4096)
    """Variable value."""


class TrainingRuntimeRef(Model):
    """A Kubeflow Trainer runtime: the blueprint (torchrun, its environment, the JobSet) a TrainJob runs on."""

    name: DnsLabel = "torch-distributed"
    """The runtime's name; Kubeflow Trainer installs `torch-distributed` as a ClusterTrainingRuntime."""
    kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    """ClusterTrainingRuntime (cluster-wide) or TrainingRuntime (in the study's namespace)."""


class TrialRuntime(Model):
    """Where each trial stage runs: a batch/v1 Job (one pod), or a Kubeflow Trainer v2 TrainJob (`numNodes` pods
    under torchrun: data-parallel training over several GPUs and nodes; Kubeflow Trainer must be installed)."""

    kind: Literal["job", "trainJob"] = "job"
    """`job`: one Job per stage, one pod. `trainJob`: one TrainJob per stage (trainer.kubeflow.org/v1alpha1)."""
    num_nodes: int = Field(default=1, ge=1, le=128)
    """Nodes (pods) per stage, each with `trial.resources`; more than 1 needs `kind: trainJob`."""
    num_proc_per_node: int | None = Field(default=None, ge=1, le=64)
    """Training processes per node (one per GPU); the runtime's default (`auto`: one per GPU) when unset."""
    runtime_ref: TrainingRuntimeRef = Field(default_factory=TrainingRuntimeRef)
    """The Kubeflow Trainer runtime a TrainJob uses."""

    rules = (
        Rule(
            cel="self.kind == 'trainJob' || (self.numNodes == 1 && !has(self.numProcPerNode))",
            message="numNodes above 1 and numProcPerNode need kind: trainJob",
            field="numNodes",
            holds=lambda o: o.kind == "trainJob" or (o.num_nodes == 1 and o.num_proc_per_node is None),
        ),
    )


class TrialTemplate(Model):
    """The pod of every trial stage."""

    runtime: TrialRuntime = Field(default_factory=TrialRuntime)
    """Where each stage runs: a Job (default) or a Kubeflow TrainJob over several nodes. Fixed once the study
    started."""
    image: str = Field(default=DEFAULT_TRAINER_IMAGE, min_length=1, max_length=512)
    """The trainer image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    image_pull_secrets: list[DnsLabel] = Field(default_factory=list, max_length=8)
    """Secrets with registry credentials for the image."""
    resources: Resources = Field(default_factory=lambda: Resources(limits={"nvidia.com/gpu": "1"}))
    """Container resources; one GPU by default."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables, e.g. NCCL or cache settings."""
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict, max_length=32)
    """Node labels the trial pods must match, e.g. a GPU product."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the trial pods tolerate, e.g. a GPU node taint."""
    affinity: dict[str, Any] | None = Field(
        default=None, strict=False, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """A core/v1 Affinity passed to the trial pods as is."""
    priority_class_name: DnsLabel | None = None
    """PriorityClass of the trial pods."""
    queue_name: DnsLabel | None = None
    """Kueue LocalQueue: trial Jobs get the `kueue.x-k8s.io/queue-name` label and are admitted by Kueue."""
    service_account_name: DnsLabel | None = None
    """ServiceAccount of the trial pods (it needs no API permissions)."""
    active_deadline_seconds: int = Field(default=21600, ge=60, le=2_592_000)
    """A trial stage running longer than this is stopped and counted as failed."""
    retries: int = Field(default=1, ge=0, le=10)
    """How often a stage that failed for a reason other than a disruption is retried before its trial fails;
    disruptions (preemption, eviction) are always retried."""
    output: VolumePath | None = None
    """Volume for checkpoints and adapters; with it, a promoted trial resumes from its early checkpoint instead
    of retraining, and `status.best.adapter` says where the best adapter lies. Without it a study on a cluster keeps
    no checkpoint and no adapter (`sweetspot validate` warns); `sweetspot run` keeps both under its workdir."""
    cache: VolumePath | None = None
    """Volume for model caches shared by the study's trials, mounted at /cache: a built-in model converted once
    (`smollm2-135m`: about 0.5 GB, converted by the first trial, loaded in seconds by the others) and Hugging Face
    downloads. ReadWriteMany when trials run in parallel. Without it every pod starts from an empty cache."""


class Storage(Model):
    """Where the Optuna study (the full trial history) is kept."""

    secret_ref: SecretKeyRef | None = None
    """Secret key holding an SQLAlchemy URL such as `postgresql+psycopg://user:pass@host/db`; the operator's
    default storage when unset. Only the operator reads it; trial pods never see it."""


IMMUTABLE: tuple[tuple[str, ...], ...] = (
    ("model",),
    ("dataset",),
    ("objective",),
    ("search", "sampler"),
    ("search", "space"),
    ("search", "early_evaluation"),
    ("search", "seed"),
    ("trial", "runtime"),
)
"""Spec fields (attribute paths) fixed once a study started: the API server refuses a change (CEL transition
rules generated from this list), and the operator runs on as the study started if one slips through (an older CRD).
Only budget, parallelism, suspend and the rest of the trial template may change."""


def api_path(path: tuple[str, ...]) -> str:
    return ".".join(to_camel(part) for part in path)


def _immutable(path: tuple[str, ...], optional: bool) -> Rule:
    field = api_path(path)
    cel = f"self.{field} == oldSelf.{field}"
    if optional:  # no default: absent on one side and present on the other is a change too
        cel = f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || {cel})"
    return Rule(
        cel=cel,
        message=f"{field} cannot change once the study exists (only budget, parallelism and suspend can)",
        field=field,
        holds=lambda _: True,
        transition=True,
    )


def _field_of(path: tuple[str, ...], value: Any) -> Any:
    for part in path:
        value = getattr(value, part)
    return value


def _replaced(model: Any, path: tuple[str, ...], value: Any) -> Any:
    head, *rest = path
    return model.model_copy(update={head: _replaced(getattr(model, head), tuple(rest), value) if rest else value})


def immutable_changes(before: FineTuneStudySpec, spec: FineTuneStudySpec) -> list[str]:
    """The immutable fields (`spec.…`) that differ between the spec a study started with and `spec`."""
    return [f"spec.{api_path(p)}" for p in IMMUTABLE if _field_of(p, before) != _field_of(p, spec)]


def as_started(before: FineTuneStudySpec, spec: FineTuneStudySpec) -> FineTuneStudySpec:
    """`spec` with its immutable fields as the study started: a refused change leaves the study running as it
    was, while budget, parallelism and suspend still take effect."""
    for path in IMMUTABLE:
        spec = _replaced(spec, path, _field_of(path, before))
    return spec


def cluster_warnings(spec: FineTuneStudySpec) -> list[str]:
    """What is valid but loses work on a cluster (`sweetspot run` keeps everything under its workdir): said by
    `sweetspot validate` and, once per study, by the operator's `NoOutputVolume` Warning Event. A CEL rule cannot
    warn, and refusing would refuse the same manifest in local mode, where it is right."""
    if spec.trial.output is None:
        return [
            "spec.trial.output: not set: on a cluster this study keeps nothing (no early checkpoint, so promoted "
            "trials retrain from scratch, and no adapter, so the best model is lost); set it to a PVC "
            "({pvc: NAME, path: DIR}). Local runs (sweetspot run) keep both under their workdir."
        ]
    return []


class FineTuneStudySpec(Model):
    """A fine-tuning study: search LoRA hyperparameters (judged early), train the best to the end, and sweep
    training-set sizes."""

    model: ModelSpec
    """The base model."""
    dataset: DatasetSpec
    """Training and validation data."""
    objective: Objective = Field(default_factory=Objective)
    """What is optimised."""
    search: Search = Field(default_factory=Search)
    """The hyperparameter search."""
    data_efficiency: DataEfficiency | None = None
    """The learning-curve sweep after the search; none when unset."""
    trial: TrialTemplate = Field(default_factory=TrialTemplate)
    """The pod of every trial Job."""
    storage: Storage = Field(default_factory=Storage)
    """Where trials are kept."""
    suspend: bool = False
    """Stop launching trial stages; running ones finish and nothing is deleted."""
    on_delete: Literal["keep", "delete"] = "keep"
    """What happens to the Optuna study when this resource is deleted: `keep` it (a study created again under this
    name starts afresh beside it), or `delete` it. With `delete`, a storage that does not answer holds the deletion
    for up to 5 minutes (the operator's `SWEETSPOT_STORAGE_DELETE_WAIT_SECONDS`); after that the resource goes, its
    Optuna study kept, and an `OptunaStudyKept` Warning Event says so."""

    rules = (
        Rule(
            cel="!has(self.dataEfficiency) || !has(self.dataset.train.rows) "
            "|| ((!has(self.dataEfficiency.sampleSizes) "
            "|| self.dataEfficiency.sampleSizes.all(n, n <= self.dataset.train.rows)) "
            "&& (!has(self.dataEfficiency.ladder) || self.dataEfficiency.ladder.to <= self.dataset.train.rows))",
            message="sample sizes must not exceed dataset.train.rows",
            field="dataEfficiency.sampleSizes",
            holds=lambda o: (
                o.data_efficiency is None
                or o.dataset.train.rows is None
                or max(o.data_efficiency.sizes()) <= o.dataset.train.rows
            ),
        ),
        Rule(
            cel="!has(self.dataset.samples) || !has(self.dataset.train.rows) "
            "|| self.dataset.samples <= self.dataset.train.rows",
            message="samples must not exceed train.rows",
            field="dataset.samples",
            holds=lambda o: (
                o.dataset.samples is None or o.dataset.train.rows is None or o.dataset.samples <= o.dataset.train.rows
            ),
        ),
    )


def _optional(path: tuple[str, ...]) -> bool:
    owner: Any = FineTuneStudySpec
    for part in path[:-1]:
        owner = owner.model_fields[part].annotation
    return owner.model_fields[path[-1]].default is None


FineTuneStudySpec.rules = (*(_immutable(p, _optional(p)) for p in IMMUTABLE), *FineTuneStudySpec.rules)  # type: ignore[assignment]


# --- status ----------------------------------------------------------------------------------------------

Phase = Literal["Pending", "Searching", "Promoting", "Sweeping", "Succeeded", "Failed"]


class Condition(Model):
    """An observation of the study's state, shaped like metav1.Condition."""

    type: str = Field(max_length=316, pattern=r"^[A-Z][A-Za-z0-9]*$")
    """Kind of condition: Ready, Succeeded, StorageReachable, Suspended."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """Machine-readable CamelCase reason for the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation the condition was computed from."""


class TrialCounts(Model):
    """Trials by state, as recorded in the Optuna storage."""

    total: int = Field(default=0, ge=0)
    """All trials asked so far."""
    running: int = Field(default=0, ge=0)
    """Trials with a stage running."""
    waiting: int = Field(default=0, ge=0)
    """Trials waiting for a stage to start (queued or awaiting promotion)."""
    complete: int = Field(default=0, ge=0)
    """Trials that finished their last stage."""
    pruned: int = Field(default=0, ge=0)
    """Trials stopped after their early evaluation."""
    failed: int = Field(default=0, ge=0)
    """Trials that failed (out of memory counts here, as infeasible)."""


Score = Annotated[float, Field(ge=0.0, le=1.0)]
Params = Annotated[
    dict[str, float | int | str],
    Field(strict=False, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"}),
]


MAX_STATUS_ATTRIBUTES = 64
"""Per-attribute scores in the status are bounded: the most supported attributes are listed, the rest counted."""
AttributeScores = Annotated[dict[str, Score], Field(max_length=MAX_STATUS_ATTRIBUTES)]


class BestTrial(Model):
    """The best trial so far (scores over applicable (row, attribute) pairs)."""

    trial: int = Field(ge=0)
    """Optuna trial number."""
    params: Params = Field(default_factory=dict)
    """Its hyperparameters."""
    early_f1: Score | None = None
    """Micro-F1 at the early evaluation."""
    final_f1: Score | None = None
    """Micro-F1 at the end of training: the headline score."""
    final_precision: Score | None = None
    """Precision at the end of training."""
    final_recall: Score | None = None
    """Recall at the end of training."""
    early_accuracy: Score | None = None
    """Exact match at the early evaluation."""
    final_accuracy: Score | None = None
    """Exact match at the end of training."""
    attribute_f1: AttributeScores = Field(default_factory=dict)
    """Final F1 per attribute, the most supported attributes first (at most 64)."""
    attributes_left_out: int = Field(default=0, ge=0)
    """Attributes not listed in `attributeF1` (the rarest); `sweetspot report` shows them all."""
    adapter: str | None = Field(default=None, max_length=1024)
    """Where its trained adapter lies, `pvc/CLAIM:PATH` on `spec.trial.output` (with `sweetspot.json` beside it: run
    it with `sweetspot predict`); unset when the study keeps no output or the trial's final came from a warm start."""


class CurvePoint(Model):
    """One point of the learning curve."""

    samples: int = Field(ge=1)
    """Training-set size."""
    f1: Score
    """Validation micro-F1 after training on `samples` rows (mean over repeats)."""
    accuracy: Score | None = None
    """Validation exact match (mean over repeats)."""
    spread: float = Field(default=0.0, ge=0.0, le=1.0)
    """Standard deviation of F1 over repeats (0 with one repeat)."""
    repeats: int = Field(default=1, ge=1)
    """Runs measured at this size."""
    attribute_f1: AttributeScores = Field(default_factory=dict)
    """F1 per attribute (mean over repeats), the most supported attributes first (at most 64)."""
    gain_per_thousand: float | None = Field(default=None, ge=-1.0, le=1.0)
    """F1 1,000 more samples would add here, by the fitted curve."""
    leading_attribute: str | None = Field(default=None, max_length=128)
    """The attribute that gains most from this size to the largest: where the late gains come from."""


class SweetSpot(Model):
    """The training-set size past which more data stops paying, from a saturating fit of the learning curve."""

    samples: int | None = Field(default=None, ge=1)
    """The smallest measured size within `tolerance` of the fitted plateau; unset when the curve has not
    saturated (or has too few points to fit)."""
    f1: Score | None = None
    """Measured micro-F1 at that size."""
    saturated: bool = False
    """Whether the curve reached its plateau inside the measured sizes."""
    plateau: float | None = Field(default=None, ge=0.0, le=1.0)
    """Micro-F1 the fitted curve approaches."""
    fit: str | None = Field(default=None, max_length=256)
    """The fitted curve, e.g. `power: 0.88 - 3.7 * n^-0.60 (rmse 0.004)`."""
    recommendation: str = Field(default="", max_length=1024)
    """What to do about the training data, in plain words."""


class ForecastPoint(Model):
    """Micro-F1 forecast at one size past the measured ones."""

    samples: int = Field(ge=1)
    """Training-set size."""
    f1: Score
    """The forecast micro-F1 (the weighted median of the ensemble's draws)."""
    low: Score
    """The 80% band's lower end: a sweep measuring this size lands below it one time in ten."""
    high: Score
    """The 80% band's upper end."""
    cost: float | None = Field(default=None, ge=0.0)
    """With `costPerLabel`: what labelling from the largest measured size up to this size costs."""


class RowsToTarget(Model):
    """Training rows needed to reach a target micro-F1, with an 80% band."""

    rows: int | None = Field(default=None, ge=1)
    """The forecast rows (the median); unset when fewer than half of the forecasts reach the target."""
    rows_low: int | None = Field(default=None, ge=1)
    """The band's lower end; unset when the target lies above the plateau's band."""
    rows_high: int | None = Field(default=None, ge=1)
    """The band's upper end; unset when one forecast in ten or more never reaches the target (within 100 times
    the largest measured size)."""
    reach: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of the forecasts that reach the target within 100 times the largest measured size."""
    above_plateau: bool = False
    """Whether the target lies above the plateau's band (fewer than one forecast in ten reaches it)."""
    cost: float | None = Field(default=None, ge=0.0)
    """With `costPerLabel`: what labelling from the largest measured size up to `rows` costs."""


class AttributeForecast(Model):
    """The forecast of one attribute's F1, for an attribute that drives the late gains."""

    attribute: str = Field(max_length=128)
    """The attribute."""
    points: list[ForecastPoint] = Field(default_factory=list, max_length=16)
    """Its F1 forecast at `forecast.to`."""
    target: RowsToTarget | None = None
    """Rows for this attribute to reach the target F1."""


class LearningCurveForecast(Model):
    """The learning curve forecast past the measured sizes (`spec.dataEfficiency.forecast`, `target`)."""

    points: list[ForecastPoint] = Field(default_factory=list, max_length=16)
    """Micro-F1 forecast at each size of `forecast.to`."""
    plateau: Score | None = None
    """The F1 the forecasts approach (at 100 times the largest measured size), the median."""
    plateau_low: Score | None = None
    """The plateau's 80% band, lower end."""
    plateau_high: Score | None = None
    """The plateau's 80% band, upper end."""
    forms: dict[str, float] = Field(default_factory=dict, max_length=8)
    """Each curve form's weight in the ensemble (power, exponential, powerlaw, sigmoid)."""
    noise: float | None = Field(default=None, ge=0.0, le=1.0)
    """The noise of one run the band assumes (standard deviation of F1 between repeats, at least 0.01)."""
    target: RowsToTarget | None = None
    """Rows needed to reach `target.f1`."""
    attributes: list[AttributeForecast] = Field(default_factory=list, max_length=3)
    """The attributes forecast to gain most past the measured sizes (the late-gain drivers), at most 3."""
    message: str = Field(default="", max_length=1024)
    """The forecast in plain words, or why there is none yet."""


class GpuSeconds(Model):
    """Accelerator time of the study."""

    used: float = Field(default=0.0, ge=0.0)
    """GPU-seconds spent by all trial stages."""
    saved: float = Field(default=0.0, ge=0.0)
    """GPU-seconds not spent because trials were judged early (estimated from the stages that ran)."""


class FinalPrediction(Model):
    """`promote: predicted`: how the study predicts final scores, and how well."""

    feature: Literal["last", "curve"] | None = None
    """What the calibration line predicts from: `last`, the early score; `curve`, the early curve extrapolated to
    the end of training (whichever predicted held-out finals better); unset until 3 finals calibrate it."""
    pairs: int = Field(default=0, ge=0)
    """Trials with both an early curve and a final score."""
    coverage: float | None = Field(default=None, ge=0.0, le=1.0)
    """Share of finals inside the 80% interval predicted for them from the other trials alone (leave one out)."""
    checked: int = Field(default=0, ge=0)
    """Finals the coverage was checked on."""


class EarlyJudging(Model):
    """The agreement guard of `proxy` (`spec.search.earlyEvaluation.minAgreement`): where trials are judged now."""

    at_fraction: float = Field(gt=0.0, lt=1.0)
    """The fraction of their planned steps at which new trials are judged."""
    widenings: int = Field(default=0, ge=0)
    """How many times the guard widened it (each also promoted one more trial)."""
    agreement: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Spearman of early signal and final objective over the promoted trials judged at `atFraction` (from 3)."""
    agreement_trials: int = Field(default=0, ge=0)
    """Trials with a final score judged at `atFraction`."""
    message: str = Field(default="", max_length=1024)
    """The last widening, in plain words."""


class OverBudget(Model):
    """Trials asked before `spec.search.maxTrials` was lowered below their number."""

    trials: list[int] = Field(default_factory=list, max_length=64)
    """The trials past the budget (the first 64): each finishes the stages it has; no new trial starts."""
    message: str = Field(default="", max_length=1024)
    """What happens to them, in plain words."""


class BudgetStatus(Model):
    """The compute budget (`spec.search.budget`) and how much of it finished stages spent, in GPU-hours (hours of
    wall time on CPUs)."""

    gpu_hours: float = Field(ge=0.0)
    """The budget."""
    used_gpu_hours: float = Field(default=0.0, ge=0.0)
    """Spent by the stages that finished."""
    remaining_gpu_hours: float = Field(default=0.0, ge=0.0)
    """What is left of the budget (0 once it is spent)."""
    used_ratio: float = Field(default=0.0, ge=0.0)
    """`usedGpuHours / gpuHours` (past 1 when the last stages cost more than estimated)."""
    eta: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the study is expected to end (RFC 3339), by the stages left (bounded by the budget), the mean wall
    time of finished stages of each kind and the parallelism; unset before a stage finished or once it ended."""
    message: str = Field(default="", max_length=1024)
    """How the budget stands, in plain words."""


class FineTuneStudyStatus(Model):
    """The observed state: a bounded summary recomputed every reconcile; the full history is in the Optuna
    storage."""

    phase: Phase = "Pending"
    """Pending, Searching, Promoting, Sweeping, Succeeded or Failed."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Latest observations of the study's state."""
    trials: TrialCounts = Field(default_factory=TrialCounts)
    """Trials by state."""
    best: BestTrial | None = None
    """The best trial so far."""
    early_final_correlation: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Spearman rank correlation of the early signal and the final objective over trials that have both (from 3
    trials: below, ranks agree or disagree by chance)."""
    early_evaluation: EarlyJudging | None = None
    """Under `proxy`: the fraction trials are judged at now, and the agreement guard's evidence."""
    prediction: FinalPrediction | None = None
    """With `promote: predicted`: the final-score predictor and its calibration."""
    learning_curve: list[CurvePoint] = Field(default_factory=list, max_length=32)
    """Micro-F1 by training-set size, from the data-efficiency sweep."""
    sweet_spot: SweetSpot | None = None
    """The size past which more data stops paying."""
    forecast: LearningCurveForecast | None = None
    """The learning curve forecast past the measured sizes, and the rows to reach the target F1."""
    gpu_seconds: GpuSeconds = Field(default_factory=GpuSeconds)
    """Accelerator time used and saved."""
    optuna_study: str | None = Field(default=None, max_length=512)
    """Name of the Optuna study in the storage."""
    over_budget: OverBudget | None = None
    """Set while more trials were asked than `spec.search.maxTrials` now allows (the budget was lowered)."""
    budget: BudgetStatus | None = None
    """The compute budget and what is spent of it; unset without `spec.search.budget`."""
    warm_start: WarmStartStatus | None = None
    """What `spec.search.warmStart` took from earlier studies."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The spec generation this status reflects."""


# --- the resource ----------------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta Sweetspot reads; the rest (uid, resourceVersion, ...) is ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    name: DnsLabel
    """Study name; it prefixes trial Job names and labels, so it is a DNS label (at most 63 characters)."""
    namespace: DnsLabel = "default"
    """Namespace of the study."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


class FineTuneStudy(Model):
    """A FineTuneStudy resource."""

    api_version: Literal["sweetspot.dev/v1alpha1"]
    kind: Literal["FineTuneStudy"]
    metadata: ObjectMeta
    spec: FineTuneStudySpec
    status: FineTuneStudyStatus | None = None

    @property
    def key(self) -> str:
        """`namespace/name`, the study's identity across the operator, storage and metrics."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
