"""Turn a planner's `StartRun` into the trial config a trainer runs (pure).

Runtimes differ only in where things live (a pod's mounts, a laptop's directories), so they pass a
`Paths` and get the same `TrialConfig` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sweetspot.api.inputs import AttributeSchema, DataSource
from sweetspot.api.resource import FineTuneStudy
from sweetspot.contract import AttributeSchema as SchemaRef
from sweetspot.contract import DataRef, Hyperparameters, ModelRef, TrialConfig
from sweetspot.core.records import StartRun


@dataclass(frozen=True)
class Paths:
    checkpoint_dir: str | None
    output_dir: str | None
    resolve: Callable[[str | None, str], str]
    """(pvc or None, path) -> the path the trainer opens."""
    token_file: str | None = None


def _data(source: DataSource, paths: Paths) -> DataRef:
    if source.builtin:
        return DataRef(builtin=source.builtin, rows=source.rows)
    assert source.path is not None
    return DataRef(path=paths.resolve(source.pvc, source.path))


def _schema(schema: AttributeSchema | None, paths: Paths) -> SchemaRef | None:
    if schema is None:
        return None
    if schema.categories is not None:
        return SchemaRef(categories={c: list(a) for c, a in schema.categories.items()})
    assert schema.path is not None
    return SchemaRef(path=paths.resolve(schema.pvc, schema.path))


def trial_config(study: FineTuneStudy, start: StartRun, paths: Paths) -> TrialConfig:
    spec = study.spec
    model = spec.model
    overrides = {"maxSteps": start.max_steps} if start.max_steps else {}
    early_fraction = start.early_fraction or spec.search.early_evaluation.at_fraction
    return TrialConfig(
        study=study.metadata.name,
        trial=start.key.number,
        stage=start.key.stage,
        hyperparameters=Hyperparameters.model_validate({**start.params, **overrides}),
        model=ModelRef(
            builtin=model.builtin,
            hugging_face=model.hugging_face,
            revision=model.revision,
            token_file=paths.token_file if model.token_secret_ref else None,
            path=paths.resolve(model.pvc, model.path) if model.path else None,
            task=model.task,
            target_modules=model.target_modules,
            max_sequence_length=model.max_sequence_length,
            packing=model.packing,
        ),
        train=_data(spec.dataset.train, paths),
        validation=_data(spec.dataset.validation, paths) if spec.dataset.validation else None,
        validation_fraction=spec.dataset.validation_fraction,
        samples=start.samples or spec.dataset.samples,
        stratify=spec.dataset.stratify_by == "attributes",
        bad_rows=spec.dataset.bad_rows,
        attributes=spec.dataset.attributes,
        schema_=_schema(spec.dataset.schema_, paths),
        seed=(spec.search.seed or 0) + start.seed_offset,
        early_fraction=early_fraction,
        evaluate_at=spec.search.early_evaluation.curve_at(early_fraction) if start.key.stage == "early" else [],
        checkpoint_dir=paths.checkpoint_dir,
        checkpoint_every_steps=spec.trial.checkpoint.every_steps,
        checkpoint_every_seconds=spec.trial.checkpoint.every_seconds,
        output_dir=paths.output_dir,
        zero_shot=model.zero_shot
        and start.key.kind == "trial"
        and start.key.number == 0
        and start.key.stage != "final",
    )
