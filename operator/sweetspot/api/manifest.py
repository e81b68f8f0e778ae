"""Read FineTuneStudy manifests and explain what is wrong with them, field by field.

Every problem becomes one `FieldError` with the field path as a user writes it
(`spec.search.space.learningRate.min`), the line in the file where it can be found, and a message that
says what was expected and what was given. Nothing here raises a traceback at a user.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sweetspot.api.fields import PATTERN_HINTS
from sweetspot.api.names import API_VERSION, KIND
from sweetspot.api.resource import FineTuneStudy
from sweetspot.api.rules import BrokenRulesError

Location = tuple[str | int, ...]

MAX_MANIFEST_BYTES = 1 << 20  # the API server's own request limit is about 3 MiB; a study is a few KiB


@dataclass(frozen=True)
class FieldError:
    """One problem in one manifest."""

    source: str
    """File name (or `<stdin>`), with the document number when the file holds several."""
    path: str
    """Field path such as `spec.search.maxTrials`; empty for the document as a whole."""
    message: str
    line: int | None = None
    """1-based line of the field in the file, when known."""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ManifestError(Exception):
    """A manifest that is not a valid FineTuneStudy; `errors` lists every problem found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(map(str, self.errors)))


def format_path(loc: Location) -> str:
    """`('spec', 'trial', 'tolerations', 0, 'key')` -> `spec.trial.tolerations[0].key`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum() and not part[:1].isdigit():
            out += f".{part}" if out else part
        else:  # map keys such as `nvidia.com/gpu`
            out += f'["{part}"]'
    return out


# --- YAML with line numbers ----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, dict | list):  # `{{}: x}` or `{[a]: x}`: YAML allows it, no field is named so
            kind = "a mapping" if isinstance(key, dict) else "a list"
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain value, not {kind}", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(node: yaml.Node | None, loc: Location) -> int | None:
    """The line of the deepest node along `loc` (the parent's line when the field itself is missing)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            key = next((k for k, _ in node.value if k.value == part), None)
            if match is None:
                return line
            # Scalars are found at their value; a nested block at its key, where the reader looks.
            node = match
            line = (match if isinstance(match, yaml.ScalarNode) else key or match).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@dataclass(frozen=True)
class _Document:
    source: str
    data: Any
    node: yaml.Node | None


def _documents(text: str, source: str) -> Iterator[_Document]:
    nodes: list[yaml.Node | None] = list(yaml.compose_all(text, Loader=_StrictLoader))
    for index, node in enumerate(nodes):
        if node is None:
            continue
        name = f"{source}[{index}]" if len(nodes) > 1 else source
        yield _Document(name, _construct(node), node)


def _construct(node: yaml.Node) -> Any:
    loader = _StrictLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


# --- messages ---------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: Location) -> type[BaseModel] | None:
    """The model class a location points into, to suggest the field name a typo meant."""
    model: Any = FineTuneStudy
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or not isinstance(part, str):
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _did_you_mean(given: Any, ctx: dict[str, Any]) -> str:
    """` (did you mean 'tpe'?)` for the allowed value closest to a mistyped one (`tpee`, `TPE`, `f2`), else ''.

    pydantic names the allowed values of a Literal only as text (`'tpe', 'gp' or 'random'`): they are read back from
    it. Compared without case, with a lower cutoff than difflib's 0.6, as the values are short (`f2` -> `f1`)."""
    allowed = re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))
    if not isinstance(given, str) or not given or not allowed:
        return ""
    folded = {value.lower(): value for value in allowed}
    close = difflib.get_close_matches(given.lower(), list(folded), n=1, cutoff=0.5)
    return f" (did you mean {folded[close[0]]!r}?)" if close and folded[close[0]] != given else ""


def _message(error: ErrorDetails) -> str:
    kind, given = error["type"], error.get("input")
    ctx = error.get("ctx", {})
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        parent = _model_at(error["loc"][:-1])
        known = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_describe(given)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(given)}"
    if kind in ("int_type", "int_from_float"):
        return f"expected an integer, got {_describe(given)} {_show(given)}"
    if kind == "float_type":
        return f"expected a number, got {_describe(given)} {_show(given)}"
    if kind in ("string_type", "bool_type"):
        return f"expected {'a string' if kind == 'string_type' else 'a boolean'}, got {_describe(given)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}, got {_show(given)}{_did_you_mean(given, ctx)}"
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")), f"does not match the pattern {ctx.get('pattern')}")
        return f"{_show(given)} {hint}"
    if kind == "finite_number":
        return f"expected a finite number, got {_show(given)}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{message[:1].lower()}{message[1:]} (got {_show(given)})" if "input" in error else message


def _field_errors(exc: ValidationError, doc: _Document) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        violations = error.get("ctx", {}).get("error")
        if isinstance(violations, BrokenRulesError):
            for v in violations.violations:
                full = loc + tuple(v.field.split(".")) if v.field else loc
                errors.append(FieldError(doc.source, format_path(full), v.message, _line_of(doc.node, full)))
            continue
        errors.append(FieldError(doc.source, format_path(loc), _message(error), _line_of(doc.node, loc)))
    return errors


# --- entry points -----------------------------------------------------------------------------------------


def _check_identity(data: Any, doc: _Document) -> list[FieldError]:
    """Wrong kind or apiVersion: say so once instead of listing every field that does not fit."""
    if not isinstance(data, dict):
        return [
            FieldError(
                doc.source,
                "",
                f"expected a FineTuneStudy mapping, got {_describe(data)}",
                _line_of(doc.node, ()),
            )
        ]
    errors = []
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if data.get(key) != expected:
            got = "it is missing" if key not in data else f"got {_show(data[key])}"
            errors.append(FieldError(doc.source, key, f"expected {expected!r}, {got}", _line_of(doc.node, (key,))))
    return errors


def _other_kubernetes_object(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    api_version, kind = data.get("apiVersion"), data.get("kind")
    return (
        isinstance(api_version, str)
        and isinstance(kind, str)
        and bool(kind)
        and not api_version.startswith(f"{API_VERSION.split('/')[0]}/")
        and kind != KIND
    )


@dataclass(frozen=True)
class LocatedStudy:
    """A study and where it was written, for problems found after it validated (its local data files)."""

    study: FineTuneStudy
    source: str
    """File name (or `<stdin>`), with the document number when the file holds several."""
    node: yaml.Node | None

    def error(self, loc: Location, message: str) -> FieldError:
        """A problem at a field of this study, with the field's line."""
        return FieldError(self.source, format_path(loc), message, _line_of(self.node, loc))


def parse_documents(text: str, source: str) -> list[FineTuneStudy]:
    """Every FineTuneStudy in a YAML (or JSON) text; raises `ManifestError` listing all problems."""
    return [located.study for located in parse_located(text, source)]


def parse_located(text: str, source: str) -> list[LocatedStudy]:
    """`parse_documents`, each study with where it was written."""
    try:
        documents = list(_documents(text, source))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ManifestError([FieldError(source, "", f"invalid YAML: {problem}", line)]) from None
    if not documents:
        raise ManifestError([FieldError(source, "", "no FineTuneStudy found (the file is empty)")])
    studies: list[LocatedStudy] = []
    errors: list[FieldError] = []
    # Other Kubernetes objects beside the studies (a PersistentVolumeClaim the study mounts) are kubectl's to apply:
    # skipped here. Anything of Sweetspot's API group, or with no apiVersion, is held to being a FineTuneStudy.
    documents = [d for d in documents if not _other_kubernetes_object(d.data)] or documents
    for doc in documents:
        if identity := _check_identity(doc.data, doc):
            errors.extend(identity)
            continue
        try:
            studies.append(LocatedStudy(FineTuneStudy.model_validate(doc.data), doc.source, doc.node))
        except ValidationError as exc:
            errors.extend(_field_errors(exc, doc))
    if errors:
        raise ManifestError(errors)
    return studies


def load_manifest(path: Path | str) -> list[FineTuneStudy]:
    """Every FineTuneStudy in a file (`-` reads standard input); raises `ManifestError`."""
    return [located.study for located in load_located(path)]


def load_located(path: Path | str) -> list[LocatedStudy]:
    """`load_manifest`, each study with where it was written."""
    source = str(path)
    try:
        if source == "-":
            text, source = sys.stdin.read(MAX_MANIFEST_BYTES + 1), "<stdin>"
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read(MAX_MANIFEST_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ManifestError([FieldError(source, "", f"cannot read the file: {reason}")]) from None
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError([FieldError(source, "", f"file is larger than {MAX_MANIFEST_BYTES} bytes")])
    return parse_located(text, source)
