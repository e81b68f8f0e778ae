"""The rows a stage trains and is validated on, and what each category is asked for, as the trial config describes.

Built-in rows or a file; a validation set given or split off the training data; the training sample drawn (seeded,
optionally stratified); the schema, when there is one, checked against every row. Bad input raises `DataError`, which
the entrypoint reports as such (exit code 2).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sweetspot.contract import DataRef, TrialConfig
from sweetspot_trainer import data as datamod
from sweetspot_trainer.data import DataError, Row
from sweetspot_trainer.demo import DEFAULT_TRAIN_ROWS, DEFAULT_VALIDATION_ROWS, TRAIN_STREAM, VALIDATION_STREAM


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
