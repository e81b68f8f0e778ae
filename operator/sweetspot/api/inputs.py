"""`spec.model` and `spec.dataset`: what is fine-tuned, on which data."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from sweetspot.api.fields import DnsLabel, SafePath, TokenSecretRef, _has_cel, _only_with, _set
from sweetspot.api.rules import Model, Rule

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
    packing: bool = False
    """Generative models: train on each step's rows packed into one sequence without padding (positions restart
    per row and attention stays inside it; the loss is the same). It pays where attention kernels skip across rows
    (flash attention on GPUs) or rows vary much in length; on CPUs the default length-bucketed batches are as fast
    (see docs/llm.md)."""

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
        Rule(
            cel="!has(self.packing) || !self.packing || (self.task != 'extractive' && "
            "(!has(self.builtin) || self.builtin != 'tiny'))",
            message="packing applies to generative models: not with task extractive or builtin tiny",
            field="packing",
            holds=lambda o: not (o.packing and (o.task == "extractive" or o.builtin == "tiny")),
        ),
    )


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
