"""Bad manifests: `sweetspot validate` names the field, and a cluster with the generated CRD rejects them too.

Each case starts from the quickstart manifest, breaks one thing, and states the field path the error must
name. The same object then goes through the CRD as an API server would apply it (defaults, OpenAPI schema,
strict field validation, CEL rules); `cluster=False` marks the few checks only `sweetspot validate` can make.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweetspot.api.crd import crd
from sweetspot.api.manifest import ManifestError, parse_documents
from sweetspot.cli import main

from support.kube_schema import CrdValidator

Doc = dict[str, Any]

DELETE = object()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def patch(path: str, value: Any) -> Callable[[Doc], None]:
    """Set (or with DELETE, remove) the value at a dotted path, creating maps on the way."""

    def apply(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return apply


def patches(*steps: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        for step in steps:
            step(doc)

    return apply


@dataclass(frozen=True)
class Case:
    name: str
    change: Callable[[Doc], None]
    path: str
    """The field path the error must name."""
    cluster: bool = True
    """Whether the API server, given the generated CRD, rejects it too (and names the same field)."""
    words: tuple[str, ...] = field(default=())
    """Words the message must contain."""
    cluster_path: str | None = None
    """Where the API server reports it, when that differs (rules on the root object have no field path)."""


CASES = [
    Case("wrong kind", patch("kind", "Deployment"), "kind", cluster=False, words=("FineTuneStudy",)),
    Case("wrong apiVersion", patch("apiVersion", "sweetspot.dev/v1"), "apiVersion", cluster=False),
    Case("missing spec", patch("spec", DELETE), "spec", words=("missing",)),
    Case("spec is a list", patch("spec", [1, 2]), "spec", words=("mapping", "list")),
    Case("missing model", patch("spec.model", DELETE), "spec.model", words=("missing",)),
    Case(
        "two model sources",
        patch("spec.model.huggingFace", "meta-llama/Llama-3.1-8B"),
        "spec.model",
        words=("exactly one",),
    ),
    Case("unknown builtin model", patch("spec.model.builtin", "huge"), "spec.model.builtin", words=("tiny",)),
    Case(
        "revision without huggingFace",
        patch("spec.model.revision", "main"),
        "spec.model.revision",
        words=("huggingFace",),
    ),
    Case(
        "model path escapes the volume",
        patches(
            patch("spec.model.builtin", DELETE),
            patch("spec.model.pvc", "models"),
            patch("spec.model.path", "../etc"),
        ),
        "spec.model.path",
    ),
    Case("tiny model asked to generate", patch("spec.model.task", "generative"), "spec.model.task"),
    Case("packing a tagger", patch("spec.model.packing", True), "spec.model.packing", words=("generative",)),
    Case("dataset.train missing", patch("spec.dataset.train", DELETE), "spec.dataset.train", words=("missing",)),
    Case("dataset.train is a list", patch("spec.dataset.train", ["a.jsonl"]), "spec.dataset.train"),
    Case(
        "rows with a file",
        patch("spec.dataset.train", {"path": "train.jsonl", "rows": 10}),
        "spec.dataset.train.rows",
    ),
    Case(
        "validation fraction too large",
        patch("spec.dataset.validationFraction", 0.9),
        "spec.dataset.validationFraction",
    ),
    Case("more samples than rows", patch("spec.dataset.samples", 5000), "spec.dataset.samples"),
    Case(
        "schema with a file and a map",
        patch("spec.dataset.schema", {"path": "schema.json", "categories": {"Lure": ["Brand Name"]}}),
        "spec.dataset.schema",
        words=("exactly one",),
    ),
    Case(
        "schema category without attributes",
        patch("spec.dataset.schema", {"categories": {"Lure": []}}),
        "spec.dataset.schema.categories",
    ),
    Case(
        "schema category without a name",
        patch("spec.dataset.schema", {"categories": {"": ["Brand Name"]}}),
        "spec.dataset.schema.categories",
    ),
    Case("schema pvc without a file", patch("spec.dataset.schema", {"pvc": "data"}), "spec.dataset.schema"),
    Case("schema as a list", patch("spec.dataset.schema", ["Lure"]), "spec.dataset.schema"),
    Case(
        "f1 minimised", patch("spec.objective", {"metric": "f1", "direction": "minimize"}), "spec.objective.direction"
    ),
    Case("loss maximised", patch("spec.objective.metric", "loss"), "spec.objective.direction"),
    Case("accuracy target above 1", patch("spec.objective.target", 1.5), "spec.objective.target"),
    Case("unknown sampler", patch("spec.search.sampler", "bayes"), "spec.search.sampler", words=("tpe",)),
    Case("negative budget", patch("spec.search.maxTrials", -1), "spec.search.maxTrials"),
    Case("huge budget", patch("spec.search.maxTrials", 10**20), "spec.search.maxTrials"),
    Case("budget as text", patch("spec.search.maxTrials", "ten"), "spec.search.maxTrials", words=("integer",)),
    Case("budget as boolean", patch("spec.search.maxTrials", True), "spec.search.maxTrials"),
    Case("budget as fraction", patch("spec.search.maxTrials", 2.5), "spec.search.maxTrials"),
    Case("infinite budget", patch("spec.search.maxTrials", math.inf), "spec.search.maxTrials", cluster=False),
    Case("parallelism above budget", patch("spec.search.parallelism", 30), "spec.search.parallelism"),
    Case(
        "promote more than the budget",
        patch("spec.search.earlyEvaluation.promoteTopK", 10),
        "spec.search.earlyEvaluation.promoteTopK",
    ),
    Case(
        "early fraction of 1",
        patch("spec.search.earlyEvaluation.atFraction", 1.0),
        "spec.search.earlyEvaluation.atFraction",
    ),
    Case(
        "early fraction of 0",
        patch("spec.search.earlyEvaluation.atFraction", 0),
        "spec.search.earlyEvaluation.atFraction",
    ),
    Case(
        "widening below the early fraction",
        patch("spec.search.earlyEvaluation.widenTo", [0.1, 0.5]),
        "spec.search.earlyEvaluation.widenTo",
    ),
    Case(
        "widening out of order",
        patch("spec.search.earlyEvaluation.widenTo", [0.5, 0.35]),
        "spec.search.earlyEvaluation.widenTo",
    ),
    Case(
        "widening to the same fraction twice",
        patch("spec.search.earlyEvaluation.widenTo", [0.5, 0.5]),
        "spec.search.earlyEvaluation.widenTo",
    ),
    Case(
        "widening to the end of training",
        patch("spec.search.earlyEvaluation.widenTo", [0.5, 1.0]),
        "spec.search.earlyEvaluation.widenTo[1]",
    ),
    Case(
        "predicted promotion without proxy",
        patches(
            patch("spec.search.earlyEvaluation.policy", "prune"),
            patch("spec.search.earlyEvaluation.promote", "predicted"),
        ),
        "spec.search.earlyEvaluation.promote",
    ),
    Case(
        "agreement above 1",
        patch("spec.search.earlyEvaluation.minAgreement", 1.5),
        "spec.search.earlyEvaluation.minAgreement",
    ),
    Case(
        "unknown policy",
        patch("spec.search.earlyEvaluation.policy", "stop"),
        "spec.search.earlyEvaluation.policy",
    ),
    Case("empty search space", patch("spec.search.space", {}), "spec.search.space", words=("empty",)),
    Case(
        "min above max",
        patch("spec.search.space.learningRate", {"min": 0.1, "max": 0.01}),
        "spec.search.space.learningRate.min",
        words=("less than max",),
    ),
    Case(
        "log scale from zero",
        patch("spec.search.space.loraDropout", {"min": 0.0, "max": 0.2, "log": True}),
        "spec.search.space.loraDropout.min",
        words=("log",),
    ),
    Case(
        "values and a range",
        patch("spec.search.space.loraRank", {"values": [8, 16], "min": 4}),
        "spec.search.space.loraRank.values",
    ),
    Case(
        "range without max",
        patch("spec.search.space.loraDropout", {"min": 0.0}),
        "spec.search.space.loraDropout.max",
    ),
    Case(
        "step on a log scale",
        patch("spec.search.space.learningRate", {"min": 1e-4, "max": 1e-2, "log": True, "step": 1e-4}),
        "spec.search.space.learningRate.step",
    ),
    Case(
        "duplicate values",
        patch("spec.search.space.loraRank", {"values": [8, 8]}),
        "spec.search.space.loraRank.values",
    ),
    Case(
        "fractional rank",
        patch("spec.search.space.loraRank", {"values": [8.5]}),
        "spec.search.space.loraRank.values[0]",
    ),
    Case(
        "unknown hyperparameter",
        patch("spec.search.space.temperature", {"min": 0.1, "max": 1.0}),
        "spec.search.space.temperature",
        words=("unknown",),
    ),
    Case(
        "grid over a continuous range",
        patch("spec.search.sampler", "grid"),
        "spec.search.space",
        words=("grid",),
    ),
    Case(
        "sizes decreasing",
        patch("spec.dataEfficiency.sampleSizes", [400, 200]),
        "spec.dataEfficiency.sampleSizes",
        words=("increasing",),
    ),
    Case(
        "sizes repeated",
        patch("spec.dataEfficiency.sampleSizes", [200, 200]),
        "spec.dataEfficiency.sampleSizes",
    ),
    Case(
        "negative size",
        patch("spec.dataEfficiency.sampleSizes", [-5, 100]),
        "spec.dataEfficiency.sampleSizes[0]",
    ),
    Case("no sizes", patch("spec.dataEfficiency.sampleSizes", []), "spec.dataEfficiency.sampleSizes"),
    Case(
        "size beyond the data",
        patch("spec.dataEfficiency.sampleSizes", [100, 5000]),
        "spec.dataEfficiency.sampleSizes",
    ),
    Case(
        "sizes and a ladder",
        patch("spec.dataEfficiency.ladder", {"from": 50, "to": 400}),
        "spec.dataEfficiency.sampleSizes",
        words=("either sampleSizes or ladder",),
    ),
    Case(
        "neither sizes nor a ladder",
        patch("spec.dataEfficiency.sampleSizes", DELETE),
        "spec.dataEfficiency.sampleSizes",
    ),
    Case(
        "forecast inside the measured sizes",
        patch("spec.dataEfficiency.forecast", {"to": [150, 5000]}),
        "spec.dataEfficiency.forecast.to",
        words=("above the largest of sampleSizes",),
    ),
    Case(
        "forecast below the ladder's top",
        patches(
            patch("spec.dataEfficiency.sampleSizes", DELETE),
            patch("spec.dataEfficiency.ladder", {"from": 50, "to": 400}),
            patch("spec.dataEfficiency.forecast", {"to": [400]}),
        ),
        "spec.dataEfficiency.forecast.to",
        words=("ladder.to",),
    ),
    Case(
        "forecast sizes decreasing",
        patch("spec.dataEfficiency.forecast", {"to": [8000, 4000]}),
        "spec.dataEfficiency.forecast.to",
        words=("increasing",),
    ),
    Case("no forecast sizes", patch("spec.dataEfficiency.forecast", {"to": []}), "spec.dataEfficiency.forecast.to"),
    Case("target F1 above 1", patch("spec.dataEfficiency.target", {"f1": 1.5}), "spec.dataEfficiency.target.f1"),
    Case("target F1 of 0", patch("spec.dataEfficiency.target", {"f1": 0}), "spec.dataEfficiency.target.f1"),
    Case(
        "negative label price",
        patch("spec.dataEfficiency.costPerLabel", -0.5),
        "spec.dataEfficiency.costPerLabel",
    ),
    Case(
        "ladder upside down",
        patches(
            patch("spec.dataEfficiency.sampleSizes", DELETE),
            patch("spec.dataEfficiency.ladder", {"from": 400, "to": 50}),
        ),
        "spec.dataEfficiency.ladder.to",
    ),
    Case(
        "ladder beyond the data",
        patches(
            patch("spec.dataEfficiency.sampleSizes", DELETE),
            patch("spec.dataEfficiency.ladder", {"from": 50, "to": 9000}),
        ),
        "spec.dataEfficiency.sampleSizes",
    ),
    Case(
        "fixed hyperparameters without params",
        patch("spec.dataEfficiency.hyperparameters", "fixed"),
        "spec.dataEfficiency.params",
    ),
    Case(
        "params with the best hyperparameters",
        patch("spec.dataEfficiency.params", {"learningRate": 0.001}),
        "spec.dataEfficiency.params",
    ),
    Case(
        "unknown fixed hyperparameter",
        patches(
            patch("spec.dataEfficiency.hyperparameters", "fixed"),
            patch("spec.dataEfficiency.params", {"learningRat": 0.001}),
        ),
        "spec.dataEfficiency.params",
        words=("learningRat",),
        cluster=False,
    ),
    Case("too many repeats", patch("spec.dataEfficiency.repeats", 50), "spec.dataEfficiency.repeats"),
    Case(
        "not a quantity",
        patch("spec.trial.resources.limits", {"nvidia.com/gpu": "lots"}),
        'spec.trial.resources.limits["nvidia.com/gpu"]',
        words=("quantity",),
    ),
    Case(
        "limits as a list",
        patch("spec.trial.resources.limits", ["cpu"]),
        "spec.trial.resources.limits",
        words=("mapping",),
    ),
    Case(
        "bad toleration operator",
        patch("spec.trial.tolerations", [{"key": "gpu", "operator": "Maybe"}]),
        "spec.trial.tolerations[0].operator",
    ),
    Case(
        "deadline too short",
        patch("spec.trial.activeDeadlineSeconds", 10),
        "spec.trial.activeDeadlineSeconds",
    ),
    Case("queue name not a DNS label", patch("spec.trial.queueName", "GPU_Team"), "spec.trial.queueName"),
    Case(
        "output path absolute",
        patch("spec.trial.output", {"pvc": "ckpt", "path": "/abs"}),
        "spec.trial.output.path",
    ),
    Case("bad env name", patch("spec.trial.env", [{"name": "1BAD", "value": "x"}]), "spec.trial.env[0].name"),
    Case("typo in a field", patch("spec.serach", {}), "spec.serach", words=("did you mean 'search'",)),
    Case(
        "secretRef without name",
        patch("spec.storage", {"secretRef": {"key": "url"}}),
        "spec.storage.secretRef.name",
    ),
    Case(
        "objectives without a quality metric",
        patch(
            "spec.objectives",
            [
                {"metric": "computeSeconds", "direction": "minimize"},
                {"metric": "peakMemoryBytes", "direction": "minimize"},
            ],
        ),
        "spec.objectives",
        words=("exactly one quality metric",),
    ),
    Case(
        "objectives' quality metric is not the objective",
        patch(
            "spec.objectives",
            [{"metric": "accuracy", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "minimize"}],
        ),
        "spec.objectives",
        words=("objective.metric",),
    ),
    Case(
        "a cost to maximize",
        patch(
            "spec.objectives",
            [{"metric": "f1", "direction": "maximize"}, {"metric": "computeSeconds", "direction": "maximize"}],
        ),
        "spec.objectives[1].direction",
        words=("minimize for loss and costs",),
    ),
    Case(
        "one objective in objectives",
        patch("spec.objectives", [{"metric": "f1", "direction": "maximize"}]),
        "spec.objectives",
        words=("at least 2",),
    ),
    Case(
        "a single-objective sampler with objectives",
        patches(
            patch(
                "spec.objectives",
                [{"metric": "f1", "direction": "maximize"}, {"metric": "latencyMsPerRow", "direction": "minimize"}],
            ),
            patch("spec.search.sampler", "cmaes"),
        ),
        "spec.search.sampler",
        words=("one objective only",),
    ),
    Case("suspend as text", patch("spec.suspend", "yes"), "spec.suspend", words=("boolean",)),
    Case("name too long", patch("metadata.name", "x" * 64), "metadata.name", cluster_path=""),
    Case("name not a DNS label", patch("metadata.name", "My_Study"), "metadata.name", cluster=False),
]


def _broken(base: Doc, case: Case) -> Doc:
    case.change(base)
    return base


@pytest.fixture(scope="module")
def cluster() -> CrdValidator:
    return CrdValidator(crd())


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_validate_names_the_field(case: Case, quickstart: Doc) -> None:
    doc = _broken(quickstart, case)
    with pytest.raises(ManifestError) as caught:
        parse_documents(yaml.safe_dump(doc), "study.yaml")
    paths = [e.path for e in caught.value.errors]
    assert case.path in paths, f"expected {case.path!r} in {[str(e) for e in caught.value.errors]}"
    message = next(e.message for e in caught.value.errors if e.path == case.path)
    for word in case.words:
        assert word in message, message


@pytest.mark.parametrize("case", [c for c in CASES if c.cluster], ids=lambda c: c.name)
def test_the_cluster_rejects_it_at_the_same_field(case: Case, quickstart: Doc, cluster: CrdValidator) -> None:
    errors = cluster.errors(_broken(quickstart, case))
    path = case.path if case.cluster_path is None else case.cluster_path
    assert any(e.path == path or e.path.startswith(path + "[") for e in errors), (
        f"expected the API server to reject {path!r}; it said {[str(e) for e in errors]}"
    )


def test_valid_manifest_passes_the_cluster_too(quickstart: Doc, cluster: CrdValidator) -> None:
    assert cluster.errors(quickstart) == []


@pytest.mark.parametrize("case", CASES[:12] + CASES[-12:], ids=lambda c: c.name)
def test_cli_exits_1_naming_the_field(
    case: Case, quickstart: Doc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_broken(quickstart, case)))
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines, "no error printed"
    assert all(line.startswith(f"{path}:") for line in lines)
    assert any(f": {case.path}: " in line for line in lines), lines


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("spec: [unclosed", ("invalid YAML",)),
        ("", ("empty",)),
        ("just a string", ("mapping",)),
        ("a: 1\na: 2\n", ("duplicate key",)),
        ("{{}}", ("key must be a plain value, not a mapping",)),
        ("spec: {[model]: tiny}", ("key must be a plain value, not a list",)),
    ],
    ids=["syntax error", "empty file", "scalar document", "duplicate key", "mapping as key", "list as key"],
)
def test_unparseable_files_get_one_clear_line(text: str, words: tuple[str, ...]) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, "study.yaml")
    assert len(caught.value.errors) >= 1
    first = str(caught.value.errors[0])
    assert first.startswith("study.yaml")
    for word in words:
        assert word in first


def test_errors_carry_the_line_of_the_field(quickstart: Doc) -> None:
    text = yaml.safe_dump(quickstart, sort_keys=False).replace("maxTrials: 6", "maxTrials: -6")
    line = text.splitlines().index("    maxTrials: -6") + 1
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, "study.yaml")
    (error,) = caught.value.errors
    assert (error.path, error.line) == ("spec.search.maxTrials", line)
    assert str(error).startswith(f"study.yaml:{line}: spec.search.maxTrials: ")


def test_each_document_of_a_multi_document_file_is_named(quickstart: Doc) -> None:
    good = yaml.safe_dump(quickstart)
    quickstart["spec"]["search"]["maxTrials"] = 0
    bad = yaml.safe_dump(quickstart)
    with pytest.raises(ManifestError) as caught:
        parse_documents(good + "---\n" + bad, "studies.yaml")
    assert [(e.source, e.path) for e in caught.value.errors] == [("studies.yaml[1]", "spec.search.maxTrials")]


def test_unreadable_file_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_other_kubernetes_objects_beside_a_study_are_left_to_kubectl() -> None:
    """A file kubectl applies whole (a PersistentVolumeClaim, then the study that mounts it) validates its study;
    a document of Sweetspot's group that is not a FineTuneStudy is still refused."""
    claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {}\n"
    study = (EXAMPLES / "cluster-quickstart.yaml").read_text().split("---\n", 1)[1]
    (parsed,) = parse_documents(claim + "---\n" + study, "both.yaml")
    assert parsed.metadata.name == "quickstart" and parsed.spec.trial.output is not None
    with pytest.raises(ManifestError) as caught:
        parse_documents(claim + "---\n" + study.replace("kind: FineTuneStudy", "kind: FineTuneStudies"), "typo.yaml")
    assert "kind: expected 'FineTuneStudy'" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "value", "allowed", "meant"),
    [
        ("spec.search.sampler", "tpee", "'tpe', 'gp', 'random', 'cmaes', 'qmc', 'grid' or 'nsga2'", "tpe"),
        ("spec.search.earlyEvaluation.policy", "proxxy", "'proxy' or 'prune'", "proxy"),
        ("spec.objective.metric", "f2", "'f1', 'accuracy', 'tokenF1' or 'loss'", "f1"),
        ("spec.objective.metric", "tokenf1", "'f1', 'accuracy', 'tokenF1' or 'loss'", "tokenF1"),
        ("spec.objective.direction", "maximise", "'maximize' or 'minimize'", "maximize"),
        ("spec.dataset.badRows", "Skip", "'fail' or 'skip'", "skip"),
        ("spec.dataset.train.builtin", "product-page", "'product-pages'", "product-pages"),
        ("spec.trial.imagePullPolicy", "always", "'Always', 'IfNotPresent' or 'Never'", "Always"),
    ],
)
def test_an_enum_typo_gets_the_allowed_values_and_the_closest(
    path: str, value: str, allowed: str, meant: str, quickstart: Doc
) -> None:
    if path == "spec.dataset.train.builtin":
        quickstart["spec"]["dataset"]["train"].pop("rows")
    patch(path, value)(quickstart)
    with pytest.raises(ManifestError) as caught:
        parse_documents(yaml.safe_dump(quickstart), "study.yaml")
    (error,) = caught.value.errors
    assert error.path == path
    assert error.message == f"must be one of {allowed}, got {value!r} (did you mean {meant!r}?)"


def test_an_enum_value_like_none_of_the_allowed_gets_no_guess(quickstart: Doc) -> None:
    patch("spec.search.sampler", "bayesian")(quickstart)
    with pytest.raises(ManifestError) as caught:
        parse_documents(yaml.safe_dump(quickstart), "study.yaml")
    (error,) = caught.value.errors
    assert error.message == "must be one of 'tpe', 'gp', 'random', 'cmaes', 'qmc', 'grid' or 'nsga2', got 'bayesian'"


def test_an_enum_typo_in_a_list_names_the_item(quickstart: Doc) -> None:
    quickstart["spec"]["search"]["space"]["lrScheduler"] = {"values": ["cosine", "cosin"]}
    quickstart["spec"]["trial"]["tolerations"] = [{"key": "gpu", "operator": "exist"}]
    with pytest.raises(ManifestError) as caught:
        parse_documents(yaml.safe_dump(quickstart), "study.yaml")
    said = {e.path: e.message for e in caught.value.errors}
    assert said["spec.search.space.lrScheduler.values[1]"].endswith("got 'cosin' (did you mean 'cosine'?)")
    assert said["spec.trial.tolerations[0].operator"].endswith("got 'exist' (did you mean 'Exists'?)")
