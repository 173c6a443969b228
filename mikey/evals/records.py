"""What an eval run writes: one ``SampleRecord`` per (case, cell, epoch), and the run's ``RunManifest``.

A run lives in ``MIKEY_HOME/evals/runs/<run_id>/``: ``run.json`` (the manifest), ``samples.jsonl`` (one record per
line, appended as samples finish, so an interrupted run keeps what it did) and ``report.html``. A *cell* is one
point of the matrix: a model group and, for prompt targets, a prompt version (``name@version``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TargetKind = Literal["prompt", "node", "chat", "engine"]


class Cell(BaseModel):
    """One point of the matrix."""

    model_config = ConfigDict(frozen=True)

    group: str
    prompt: str | None = Field(None, description="name@version for prompt targets; None for node and chat targets.")

    @property
    def label(self) -> str:
        return self.group if self.prompt is None else f"{self.group} | {self.prompt}"


class Score(BaseModel):
    """One scorer's verdict on one sample."""

    model_config = ConfigDict(frozen=True)

    value: float = Field(ge=0, le=1, description="1 is best.")
    passed: bool | None = Field(None, description="Pass/fail where the scorer has one (McNemar pairs on it).")
    reason: str = ""
    skipped: bool = Field(False, description="The scorer could not judge (e.g. no judge from another provider).")


class SampleRecord(BaseModel):
    """One sample: a case run in a cell at an epoch, its output, scores, tokens, cost and latency."""

    run_id: str
    suite: str
    case_id: str
    epoch: int = 0
    cell: Cell
    target: TargetKind
    input: Any
    expected: Any = None
    output: Any = None
    scores: dict[str, Score] = Field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    model: str | None = Field(None, description="The model that answered, as the router reports it.")
    cached: bool = Field(False, description="Answered from the eval cache: no model call was made.")
    error: str | None = None
    key: str = Field(description="Cache key: a hash of everything that determines the output.")
    thread_id: str | None = Field(None, description="The thread the sample's model calls were made under (ledger).")
    finished_at: datetime

    @property
    def sample_id(self) -> tuple[str, str, str, int]:
        """What identifies the sample across runs: suite, case, cell and epoch (pairs samples for comparisons)."""
        return self.suite, self.case_id, self.cell.label, self.epoch


class RunManifest(BaseModel):
    """What was asked of a run: suites, cells, epochs, seed and the settings that shape outputs."""

    run_id: str
    suites: list[str]
    groups: list[str]
    prompts: dict[str, list[str]] = Field(default_factory=dict, description="suite -> prompt versions compared.")
    epochs: int = 1
    seed: int = 0
    concurrency: int = 8
    settings: dict[str, Any] = Field(default_factory=dict, description="temperature and other output-shaping values.")
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict, description="suite -> scorer -> minimum.")
    started_at: datetime
    finished_at: datetime | None = None
    mikey_version: str = ""
    git_commit: str | None = None
