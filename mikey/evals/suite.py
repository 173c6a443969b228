"""Eval suites as data: a YAML file in ``evals/`` names its target, its cases (inline or from a CSV/JSONL dataset
next to it), the scorers every case gets, and the thresholds CI mode enforces.

::

    name: intent
    description: Intent understanding as traders write.
    target: {kind: node, node: understand}      # prompt (one raw router call), node, chat (the whole graph), engine
    groups: [offline, local]                     # default model groups (``mikey eval run --groups`` overrides)
    epochs: 1
    dataset: intent.jsonl                        # and/or ``cases:`` inline
    scorers: [intent]                            # names, or {type: numeric, path: leverage, tolerance: 0.01}
    thresholds: {intent: 0.8}                    # CI mode: mean score per scorer

A case is ``{id, input, expected, scorers, tags}``; ``scorers`` on a case are added to the suite's. In a CSV
dataset, columns ``input`` and ``expected`` hold text (JSON when they parse as JSON), ``id`` and ``tags``
(comma-separated) are optional. Targets:

- ``prompt``: ``{kind: prompt, prompt: chat/analyze, versions: [1, 2]}``: the prompt rendered with the case's input
  (a mapping of the prompt's variables) and sent as one call through the router.
- ``node``: ``{kind: node, node: understand}``: the chat graph's understand step on the message.
- ``chat``: ``{kind: chat}``: a whole chat turn (input: a message, or ``{message, news, memories, setup}``).
- ``engine``: ``{kind: engine, engine: sentiment}``: a code engine (no model), a baseline for the model cells.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mikey.errors import InvalidInput
from mikey.evals.records import TargetKind


class ScorerSpec(BaseModel):
    """A scorer by name, with its options (``path``, ``tolerance``, ``pattern``, ``schema``, ``rubric``...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def name(self) -> str:
        """How results name it: the type, or ``type:label`` when the spec gives a ``label``."""
        label = self.options.get("label")
        return f"{self.type}:{label}" if label else self.type


def _scorer(value: Any) -> ScorerSpec:
    return ScorerSpec(type=value) if isinstance(value, str) else ScorerSpec.model_validate(value)


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    prompt: str | None = Field(None, description="prompt target: the prompt's name, e.g. chat/analyze.")
    versions: list[int] = Field(default_factory=list, description="prompt versions compared (default: latest).")
    node: Literal["understand"] | None = None
    engine: Literal["sentiment"] | None = None
    role: str = Field("default", description="The router role the calls are made under.")
    max_tokens: int | None = Field(None, ge=1, le=32_000, description="prompt target: the answer's token limit "
                                   "(a one-word label needs a few; the router's default otherwise).")


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    input: Any
    expected: Any = None
    scorers: list[ScorerSpec] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, value: Any) -> list[ScorerSpec]:
        return [_scorer(v) for v in value or []]


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    description: str = ""
    target: TargetSpec
    groups: list[str] = Field(default_factory=lambda: ["offline"])
    epochs: int = Field(1, ge=1, le=100)
    dataset: str | None = None
    cases: list[EvalCase] = Field(default_factory=list)
    scorers: list[ScorerSpec] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    path: Path | None = None

    @field_validator("scorers", mode="before")
    @classmethod
    def _scorers(cls, value: Any) -> list[ScorerSpec]:
        return [_scorer(v) for v in value or []]

    def scorers_for(self, case: EvalCase) -> list[ScorerSpec]:
        return [*self.scorers, *case.scorers]


def _maybe_json(text: str) -> Any:
    text = text.strip()
    if text[:1] in "[{\"" or text in ("true", "false", "null"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def read_dataset(path: Path) -> list[EvalCase]:
    """Cases from a ``.jsonl`` (one JSON object per line) or ``.csv`` file; every bad line is named."""
    if not path.exists():
        raise InvalidInput(f"dataset {path} does not exist")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path.name} line {number}: not JSON ({exc})") from exc
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                rows.append({"id": row.get("id") or "", "input": _maybe_json(row.get("input") or ""),
                             "expected": _maybe_json(row["expected"]) if row.get("expected") else None,
                             "tags": [t.strip() for t in (row.get("tags") or "").split(",") if t.strip()]})
    else:
        raise InvalidInput(f"dataset {path.name}: expected a .jsonl or .csv file")
    cases = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InvalidInput(f"{path.name} case {number}: expected an object with input and expected")
        row = {**row, "id": str(row.get("id") or f"{path.stem}-{number}")}
        try:
            cases.append(EvalCase.model_validate(row))
        except ValidationError as exc:
            raise InvalidInput(f"{path.name} case {number}: {exc.errors()[0]['msg']} at "
                               f"{'.'.join(map(str, exc.errors()[0]['loc']))}") from exc
    return cases


def load_suite(path: Path) -> Suite:
    """The suite at ``path`` with its dataset's cases appended to the inline ones; ids must be unique."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read suite {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"suite {path.name}: expected a mapping at the top")
    try:
        suite = Suite.model_validate({**raw, "path": path})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"suite {path.name}: {first['msg']} at {'.'.join(map(str, first['loc']))}") from exc
    cases = list(suite.cases)
    if suite.dataset:
        cases += read_dataset(path.parent / suite.dataset)
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidInput(f"suite {suite.name}: duplicate case ids {', '.join(duplicates[:5])}")
    if not cases:
        raise InvalidInput(f"suite {suite.name} has no cases")
    if suite.target.kind == "prompt" and not suite.target.prompt:
        raise InvalidInput(f"suite {suite.name}: a prompt target names its prompt")
    return suite.model_copy(update={"cases": cases})


def find_suites(folder: Path, names: list[str] | None = None) -> list[Suite]:
    """The suites in ``folder`` (``*.yaml``), or those named (by name or path)."""
    if names:
        paths = [Path(n) if Path(n).suffix in (".yaml", ".yml") else folder / f"{n}.yaml" for n in names]
    else:
        paths = sorted(folder.glob("*.yaml"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise InvalidInput(f"no suite {', '.join(missing)} (suites in {folder}: {known})")
    return [load_suite(p) for p in paths]
