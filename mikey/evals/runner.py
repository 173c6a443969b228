"""The eval runner: suites x cells (model groups x prompt versions) x epochs, on pydantic-evals.

Every sample is one pydantic-evals ``Case`` of one ``Dataset``; ``Dataset.evaluate_sync`` runs them concurrently
(``max_concurrency``, plus a semaphore per model group so that one slow provider cannot take every slot) with its
progress bar, and its report is what ``mikey eval run`` summarises next to MIKEY's own statistics.

A sample's output is cached under a key that hashes everything it depends on: the target, the case's input, the
cell's group and the deployments behind it, the prompt's text for a prompt target (MIKEY's source for node and chat
targets), the epoch, the seed and the output-shaping settings. An unchanged re-run is answered from the cache and
makes no model call; a changed prompt changes only its own cells' keys. Records are appended to the run's
``samples.jsonl`` as samples finish, so an interrupted run keeps what it did, and re-running it (or ``--resume``)
computes only what is missing.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from mikey.errors import InvalidInput
from mikey.evals.records import Cell, RunManifest, SampleRecord, Score
from mikey.evals.scorers import ScoreContext, score
from mikey.evals.suite import EvalCase, Suite
from mikey.evals.targets import Targets, load_versioned_prompt, prompt_ref
from mikey.settings import Settings


@dataclass(frozen=True)
class Sample:
    suite: Suite
    case: EvalCase
    cell: Cell
    epoch: int
    key: str
    """The cache key: what the output depends on (two cases with the same input share it)."""

    @property
    def sample_id(self) -> tuple[str, str, str, int]:
        """Which sample of the run it is (``SampleRecord.sample_id``): suite, case, cell and epoch."""
        return self.suite.name, self.case.id, self.cell.label, self.epoch


@cache
def source_fingerprint() -> str:
    """SHA-256 over MIKEY's Python source and prompts: what node and chat targets' outputs depend on besides data."""
    digest = hashlib.sha256()
    root = files("mikey")
    for path in sorted(Path(str(root)).rglob("*"), key=str):
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(Path(str(root)))).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


SERIAL_GROUPS = {"local": 1}
"""Default per-group limits: groups served by one in-process worker."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class EvalCache:
    """Sample outputs by key, in SQLite (``MIKEY_HOME/evals/cache.sqlite``), shared by every run and process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last entries to a power cut is fine
        self._conn.execute("CREATE TABLE IF NOT EXISTS samples (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM samples WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO samples (key, record) VALUES (?, ?)", (key, _canonical(record)))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def runs_dir(settings: Settings) -> Path:
    return settings.home / "evals" / "runs"


def read_records(run_dir: Path) -> list[SampleRecord]:
    """The records of a run (a missing or cut-short last line, from an interrupted write, is skipped)."""
    path = run_dir / "samples.jsonl"
    if not path.exists():
        raise InvalidInput(f"no eval run at {run_dir} (no samples.jsonl)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(SampleRecord.model_validate_json(line))
        except ValueError:
            continue
    return records


def _cut_partial_line(path: Path) -> None:
    """Drop a last line an interrupted write left without its newline, so the next record starts a line of its own."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_manifest(run_dir: Path) -> RunManifest:
    path = run_dir / "run.json"
    if not path.exists():
        raise InvalidInput(f"no eval run at {run_dir} (no run.json)")
    return RunManifest.model_validate_json(path.read_text(encoding="utf-8"))


def resolve_run(settings: Settings, ref: str) -> Path:
    """A run by id (under ``MIKEY_HOME/evals/runs``) or by path; ``latest`` is the newest."""
    if ref == "latest":
        found = sorted(runs_dir(settings).glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise InvalidInput("no eval runs yet: run `mikey eval run` first")
        return found[-1].parent
    path = Path(ref)
    if (path / "run.json").exists():
        return path
    candidate = runs_dir(settings) / ref
    if (candidate / "run.json").exists():
        return candidate
    raise InvalidInput(f"no eval run {ref!r} (runs are in {runs_dir(settings)})")


class EvalRunner:
    """One run of suites over a matrix of cells; built with the router model and ledger of a runtime."""

    def __init__(self, settings: Settings, suites: list[Suite], *, chat_model: Any, ledger: Any, feed: Any,
                 groups: list[str] | None = None, prompts: list[str] | None = None, epochs: int | None = None,
                 seed: int = 0, concurrency: int = 8, group_limits: dict[str, int] | None = None,
                 run_id: str | None = None, progress: bool = True, workers: int = 1) -> None:
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be at least 1, not {concurrency}")
        if workers < 1:
            raise InvalidInput(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.settings = settings
        self.suites = suites
        self.chat_model = chat_model
        self.groups = groups
        self.prompt_overrides = prompts or []
        self.epochs = epochs
        self.seed = seed
        self.concurrency = concurrency
        # The embedded local model answers one request at a time (one worker process): queued requests would pass
        # its deadlines and fail, so its cells run one sample at a time unless the caller says otherwise.
        self.group_limits_total = {**SERIAL_GROUPS, **(group_limits or {})}
        # Limits are for the whole run: each of ``workers`` processes takes its share.
        self.process_concurrency = -(-concurrency // workers)
        self.group_limits = {g: max(1, -(-n // workers)) for g, n in self.group_limits_total.items()}
        self.progress = progress
        self.run_id = run_id or f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.run_dir = runs_dir(settings) / self.run_id
        self.cache = EvalCache(settings.home / "evals" / "cache.sqlite")
        self.targets = Targets(settings, chat_model=chat_model, ledger=ledger, feed=feed,
                               home=settings.home / "evals" / "home")
        self._write_lock = threading.Lock()
        self._semaphores: dict[str, threading.Semaphore] = {}

    # -- the matrix --------------------------------------------------------------------------------------------------
    def cells(self, suite: Suite) -> list[Cell]:
        groups = self.groups or suite.groups
        for group in groups:
            self.chat_model.check_group(group) if hasattr(self.chat_model, "check_group") else None
        if suite.target.kind != "prompt":
            return [Cell(group=g) for g in groups]
        name = suite.target.prompt or ""
        chosen = [p for p in self.prompt_overrides if p.partition("@")[0] == name]
        versions = chosen or [prompt_ref(name, v) for v in suite.target.versions] or [name]
        refs = []
        for ref in versions:
            prompt = load_versioned_prompt(ref)  # fails now, naming the versions that exist
            refs.append(f"{name}@{prompt.version}")
        return [Cell(group=g, prompt=r) for g in groups for r in refs]

    def _output_settings(self) -> dict[str, Any]:
        return {"seed": self.seed, "temperature": {"local": 0.0, "hosted": "provider default"},
                "understand_with_model": self.settings.understand_with_model,
                "min_grounding": self.settings.min_grounding}

    def key(self, suite: Suite, case: EvalCase, cell: Cell, epoch: int) -> str:
        group = self.chat_model.groups.get(cell.group) if hasattr(self.chat_model, "groups") else None
        deployments = [d.model for d in group.deployments] if group is not None else [cell.group]
        if suite.target.kind == "prompt":
            prompt = load_versioned_prompt(cell.prompt or "")
            depends = {"prompt": prompt.model_dump()}
        elif suite.target.kind == "engine":
            depends = {"source": source_fingerprint()}
        else:
            depends = {"source": source_fingerprint()}
        target = suite.target.model_dump(exclude={"versions"}, exclude_none=True)  # the cell names its version
        material = {"target": target, "input": case.input, "cell": cell.model_dump(),
                    "deployments": deployments, "epoch": epoch, "settings": self._output_settings(), **depends}
        return hashlib.sha256(_canonical(material).encode()).hexdigest()

    def samples(self) -> list[Sample]:
        epochs = self.epochs
        out = []
        for suite in self.suites:
            cells = self.cells(suite)
            for case in suite.cases:
                for cell in cells:
                    for epoch in range(epochs or suite.epochs):
                        out.append(Sample(suite, case, cell, epoch, self.key(suite, case, cell, epoch)))
        return out

    def manifest(self) -> RunManifest:
        from mikey import __version__

        return RunManifest(
            run_id=self.run_id, suites=[s.name for s in self.suites],
            groups=sorted({c.group for s in self.suites for c in self.cells(s)}),
            prompts={s.name: sorted({c.prompt for c in self.cells(s) if c.prompt}) for s in self.suites
                     if s.target.kind == "prompt"},
            epochs=self.epochs or max(s.epochs for s in self.suites), seed=self.seed, concurrency=self.concurrency,
            settings=self._output_settings(), thresholds={s.name: dict(s.thresholds) for s in self.suites},
            started_at=datetime.now(UTC), mikey_version=__version__, git_commit=_git_commit())

    # -- one sample ----------------------------------------------------------------------------------------------------
    def _semaphore(self, group: str) -> threading.Semaphore:
        with self._write_lock:
            if group not in self._semaphores:
                self._semaphores[group] = threading.Semaphore(self.group_limits.get(group, self.process_concurrency))
            return self._semaphores[group]

    def run_sample(self, sample: Sample) -> SampleRecord:
        suite, case, cell = sample.suite, sample.case, sample.cell
        cached = self.cache.get(sample.key)
        which = hashlib.sha256(_canonical(sample.sample_id).encode()).hexdigest()[:8]
        thread_id = f"eval-{sample.key[:16]}-{which}"  # a thread per sample: twins with one input never share one
        if cached is not None:
            output, usage, was_cached = cached["output"], cached, True
            error = cached.get("error")
        else:
            with self._semaphore(cell.group):
                result = self.targets.run(suite.target, cell, case.input, thread_id)
            output, error, was_cached = result.output, result.error, False
            usage = {"tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "cost_usd": result.cost_usd,
                     "latency_s": result.latency_s, "model": result.model}
            if error is None:
                self.cache.put(sample.key, {"output": output, **usage})
        scores: dict[str, Score] = {}
        context = ScoreContext(group=cell.group, chat_model=self.chat_model, thread_id=f"{thread_id}-judge")
        for spec in suite.scorers_for(case):
            if error is not None:
                scores[spec.name] = Score(value=0.0, passed=False, reason=f"no output: {error}")
                continue
            scores[spec.name] = score(spec, output, case.expected, context)
        record = SampleRecord(
            run_id=self.run_id, suite=suite.name, case_id=case.id, epoch=sample.epoch, cell=cell,
            target=suite.target.kind, input=case.input, expected=case.expected, output=output, scores=scores,
            tokens_in=int(usage.get("tokens_in") or 0), tokens_out=int(usage.get("tokens_out") or 0),
            cost_usd=float(usage.get("cost_usd") or 0.0), latency_s=float(usage.get("latency_s") or 0.0),
            model=usage.get("model"), cached=was_cached, error=error, key=sample.key, thread_id=thread_id,
            finished_at=datetime.now(UTC))
        with self._write_lock, (self.run_dir / "samples.jsonl").open("a", encoding="utf-8") as log:
            fcntl.flock(log, fcntl.LOCK_EX)  # worker processes append to the same log: whole lines, one at a time
            log.write(record.model_dump_json() + "\n")
            log.flush()
            fcntl.flock(log, fcntl.LOCK_UN)
        return record

    # -- the run ----------------------------------------------------------------------------------------------------
    def evaluate(self, samples: list[Sample], *, on_record: Callable[[SampleRecord], None] | None = None) -> None:
        """Run ``samples`` through pydantic-evals in this process (records appended to the run's log)."""
        import warnings

        # pydantic-ai (under pydantic-evals) defines provider TypedDicts with ReadOnly items; pydantic warns on import.
        warnings.filterwarnings("ignore", message=r"Items? .* on TypedDict class .* using the .ReadOnly. qualifier",
                                category=UserWarning)
        from pydantic_evals import Case, Dataset
        from pydantic_evals.evaluators import EvaluationReason, Evaluator, EvaluatorContext

        if not samples:
            return
        todo = {f"{i}": s for i, s in enumerate(samples)}

        class RecordedScores(Evaluator):
            """The scores MIKEY's scorers gave, as pydantic-evals results (one per scorer)."""

            def evaluate(self, ctx: EvaluatorContext) -> dict[str, EvaluationReason]:
                record: SampleRecord = ctx.output
                return {name: EvaluationReason(value=s.value, reason=s.reason) for name, s in record.scores.items()
                        if not s.skipped}

        def task(index: str) -> SampleRecord:
            record = self.run_sample(todo[index])
            if on_record is not None:
                on_record(record)
            return record

        cases = [Case(name=f"{s.suite.name}/{s.case.id}/{s.cell.label}/{s.epoch}", inputs=i) for i, s in todo.items()]
        dataset = Dataset(name=self.run_id, cases=cases, evaluators=[RecordedScores()])
        def evaluate() -> Any:
            # evaluate_sync makes an event loop for its thread and never closes it; left set, it is dropped by the
            # next asyncio.run() anywhere in the process and warns when collected. Its own thread, closed here.
            try:
                return dataset.evaluate_sync(task, name=self.run_id, max_concurrency=self.process_concurrency,
                                             progress=self.progress)
            finally:
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if not loop.is_running():
                    loop.close()
                asyncio.set_event_loop(None)

        from concurrent.futures import ThreadPoolExecutor

        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mikey-eval") as pool:
                report = pool.submit(evaluate).result()
        finally:
            self.targets.close()
        if report.failures:  # a scorer's configuration or a case's shape: the same for every sample like it
            first = report.failures[0]
            raise InvalidInput(f"{len(report.failures)} sample(s) could not be scored; first, "
                               f"{first.name}: {first.error_message}")

    def run(self, *, on_record: Callable[[SampleRecord], None] | None = None) -> list[SampleRecord]:
        """Run every sample not yet in this run's log (split over ``workers`` processes); every record of the run."""
        samples = self.samples()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = self.run_dir / "run.json"
        if manifest_path.exists():
            started = read_manifest(self.run_dir).started_at
            _cut_partial_line(self.run_dir / "samples.jsonl")
            done = {r.sample_id for r in read_records(self.run_dir) if r.error is None}  # failed samples run again
        else:
            started, done = None, set()
        manifest = self.manifest()
        if started is not None:
            manifest = manifest.model_copy(update={"started_at": started})
        manifest_path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        todo = [s for s in samples if s.sample_id not in done]
        # Cached samples cost no call: they are scored here, one after another (a thread hop and a pydantic-evals
        # case each would cost more than the sample); the others go to pydantic-evals, split over the workers.
        hits = [s for s in todo if self.cache.get(s.key) is not None]
        hit_ids = {id(s) for s in hits}
        misses = [s for s in todo if id(s) not in hit_ids]
        workers = self.workers if len(misses) >= 2 * self.workers else 1
        shards = [misses[i::workers] for i in range(workers)]
        children = [_spawn_shard(self, [s.sample_id for s in shard]) for shard in shards[1:] if shard]
        try:
            for sample in hits:
                record = self.run_sample(sample)
                if on_record is not None:
                    on_record(record)
            self.evaluate(shards[0], on_record=on_record)
        finally:
            failures = [_join_shard(child) for child in children]
            self.cache.close()
        failures = [f for f in failures if f]
        if failures:
            raise InvalidInput(f"a worker process failed: {failures[0]}")
        manifest = manifest.model_copy(update={"finished_at": datetime.now(UTC)})
        manifest_path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        return read_records(self.run_dir)


def _git_commit() -> str | None:
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# -- worker processes ----------------------------------------------------------------------------------------------
# The router's sync path costs ~12 ms of CPU per call in litellm, which the GIL serialises: past a few calls at once a
# process is CPU-bound. ``workers`` splits a run's samples over processes (spawned: each builds its own router and
# ledger over the same files); every worker appends to the run's log and shares the cache.


def _shard_main(settings: Settings, suites: list[Suite], options: dict[str, Any],
                ids: list[tuple[str, str, str, int]], errors: Any) -> None:
    from mikey.market.feeds import open_feed
    from mikey.router.chat_model import RouterChatModel
    from mikey.router.ledger import Ledger

    try:
        ledger = Ledger(settings.ledger_db)
        model = RouterChatModel(settings, ledger=ledger)
        try:
            runner = EvalRunner(settings, suites, chat_model=model, ledger=ledger, feed=open_feed(settings),
                                progress=False, **options)
            wanted = set(ids)
            runner.evaluate([s for s in runner.samples() if s.sample_id in wanted])
            runner.cache.close()
        finally:
            model.close()
            ledger.close()
    except BaseException as exc:  # reported to the parent, which raises it with the worker's message
        errors.put(f"{type(exc).__name__}: {exc}")
        raise


def _spawn_shard(parent: EvalRunner, ids: list[tuple[str, str, str, int]]) -> tuple[Any, Any]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    options = {"groups": parent.groups, "prompts": parent.prompt_overrides, "epochs": parent.epochs,
               "seed": parent.seed, "concurrency": parent.concurrency, "group_limits": parent.group_limits_total,
               "run_id": parent.run_id, "workers": parent.workers}
    process = context.Process(target=_shard_main, args=(parent.settings, parent.suites, options, ids, errors),
                              name="mikey-eval-worker", daemon=True)
    process.start()
    return process, errors


def _join_shard(child: tuple[Any, Any]) -> str | None:
    import queue

    process, errors = child
    process.join()
    try:
        return errors.get_nowait()
    except queue.Empty:
        return None if process.exitcode == 0 else f"exit code {process.exitcode}"
