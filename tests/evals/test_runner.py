"""The eval runner end to end: the real RouterChatModel through LiteLLM against fake OpenAI and Anthropic servers,
the real SQLite ledger and eval cache, the run's files on disk.

The prompt target is ``eval/sentiment`` (versions 1 and 2, the bundled files) in the groups gpt-4 (OpenAI) and claude
(Anthropic). Each request the fakes receive is traced back to its sample by the headline and the prompt version in
its body, so the tests can say exactly which samples called a provider.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from mikey.evals.records import Cell
from mikey.evals.runner import EvalCache, EvalRunner, read_manifest, read_records
from mikey.evals.suite import EvalCase, ScorerSpec, Suite, TargetSpec, find_suites
from mikey.execution.proposals import ProposalStore
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from tests.conftest import REPO
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply

GROUPS = {"gpt-4": "openai", "claude": "anthropic"}
CASES = 10
V2_MARK = "Reply with exactly one word"  # only version 2 of eval/sentiment says this
WARM_UP = "warm-up"

Sample = tuple[str, str, str]  # group, case id, prompt ref: what a request to a fake is traced back to


@pytest.fixture
def servers():
    started = {flavour: FakeProviderServer(flavour, Reply("positive")).start() for flavour in GROUPS.values()}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def eval_settings(settings, servers):
    """The test's settings keyed for the fakes; no local model, no retries, no cooldowns (a failing fake fails each
    request, not the next 30 seconds of them)."""
    return type(settings)(**{
        **settings.model_dump(),
        "openai_api_key": "sk-test", "openai_api_base": servers["openai"].api_base,
        "anthropic_api_key": "ant-test", "anthropic_api_base": servers["anthropic"].api_base,
        "local_model_path": settings.home / "no-local-model.gguf", "num_retries": 0, "cooldown_seconds": 0,
        "request_timeout": 10.0,
    })


@pytest.fixture
def model(eval_settings, ledger, servers):
    """The router the runs use, warmed: one call per group first, then the fakes and the ledger forget it.

    LiteLLM caches one HTTP client per provider, but threads that miss that cache together each build one, and all
    but the last leak their sockets (ResourceWarnings, which are errors here). The warm-up builds them once.
    """
    chat_model = RouterChatModel(eval_settings, ledger=ledger)
    for group in GROUPS:
        chat_model.complete([{"role": "user", "content": "warm-up"}], role="default", group=group, only=True,
                            thread_id=WARM_UP)
    for server in servers.values():
        server.requests.clear()
    yield chat_model
    chat_model.close()


def calls(ledger) -> list:
    """The ledger's rows, without the warm-up's."""
    return [c for c in ledger.calls() if c.thread_id != WARM_UP]


def headline(i: int) -> str:
    return f"Headline h{i:02d}: SOL rallies after the upgrade"


def sentiment_suite(*, versions=(1, 2), cases: int = CASES, groups=("gpt-4", "claude"), epochs: int = 1) -> Suite:
    return Suite(name="sent", target=TargetSpec(kind="prompt", prompt="eval/sentiment", versions=list(versions)),
                 groups=list(groups), epochs=epochs,
                 cases=[EvalCase(id=f"h{i:02d}", input={"headline": headline(i)}, expected="positive")
                        for i in range(cases)],
                 scorers=[ScorerSpec(type="exact", normalize=True, labels=["positive", "negative", "neutral"])])


def runner(eval_settings, model, ledger, suites, **options) -> EvalRunner:
    return EvalRunner(eval_settings, suites, chat_model=model, ledger=ledger, feed=ReplayFeed(), progress=False,
                      **options)


def seen(servers) -> dict[str, int]:
    """How many requests each fake has received so far (to tell a later run's requests apart)."""
    return {flavour: len(server.requests) for flavour, server in servers.items()}


def requested(servers, since: dict[str, int] | None = None) -> list[Sample]:
    """The sample behind every request the fakes received (after ``since``)."""
    out = []
    for group, flavour in GROUPS.items():
        for request in servers[flavour].requests[(since or {}).get(flavour, 0):]:
            body = json.dumps(request.body)
            case = re.search(r"Headline (h\d\d):", body)
            out.append((group, case.group(1) if case else "?",
                        "eval/sentiment@2" if V2_MARK in body else "eval/sentiment@1"))
    return out


def identity(record) -> Sample:
    return record.cell.group, record.case_id, record.cell.prompt


def logged(run_dir: Path) -> list[dict]:
    """The run's log, line by line, as JSON (every line must parse)."""
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]


def logged_id(raw: dict) -> tuple[str, str, str, str | None, int]:
    return raw["suite"], raw["case_id"], raw["cell"]["group"], raw["cell"]["prompt"], raw["epoch"]


class Interrupt:
    """An ``on_record`` callback that presses Ctrl-C after ``after`` records."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def __call__(self, record) -> None:
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


# --- the matrix -----------------------------------------------------------------------------------------------------


def test_every_sample_of_the_matrix_runs_once(eval_settings, model, ledger, servers) -> None:
    run = runner(eval_settings, model, ledger, [sentiment_suite(epochs=2)])
    records = run.run()

    cells = {Cell(group=g, prompt=f"eval/sentiment@{v}") for g in GROUPS for v in (1, 2)}
    expected = {("sent", f"h{i:02d}", c.label, e) for i in range(CASES) for c in cells for e in (0, 1)}
    assert len(records) == len(expected) == 80
    assert {r.sample_id for r in records} == expected
    assert {r.cell.label for r in records} == {"gpt-4 | eval/sentiment@1", "gpt-4 | eval/sentiment@2",
                                               "claude | eval/sentiment@1", "claude | eval/sentiment@2"}
    assert len({r.key for r in records}) == 80
    assert all(r.error is None and not r.cached and r.run_id == run.run_id for r in records)
    assert all(r.output == "positive" and r.scores["exact"].passed for r in records)
    assert sorted(map(logged_id, logged(run.run_dir))) == sorted(
        (r.suite, r.case_id, r.cell.group, r.cell.prompt, r.epoch) for r in records)
    # Each provider saw each (case, version) once per epoch.
    assert Counter(requested(servers)) == {(g, f"h{i:02d}", f"eval/sentiment@{v}"): 2
                                           for g in GROUPS for i in range(CASES) for v in (1, 2)}

    manifest = read_manifest(run.run_dir)
    assert (manifest.suites, manifest.groups, manifest.epochs) == (["sent"], ["claude", "gpt-4"], 2)
    assert manifest.prompts == {"sent": ["eval/sentiment@1", "eval/sentiment@2"]}
    assert manifest.finished_at is not None and manifest.thresholds == {"sent": {}}


def test_the_ledger_has_one_call_per_sample_and_the_records_take_its_usage(eval_settings, model, ledger) -> None:
    import litellm

    records = runner(eval_settings, model, ledger, [sentiment_suite()]).run()
    rows = calls(ledger)
    assert len(rows) == len(records) == 40
    by_thread = {c.thread_id: c for c in rows}
    assert len(by_thread) == 40
    for record in records:
        call = by_thread[record.thread_id]
        version = record.cell.prompt.rpartition("@")[2]
        assert (call.outcome, call.model_group, call.prompt) == ("ok", record.cell.group, f"eval.sentiment@{version}")
        assert (record.tokens_in, record.tokens_out) == (call.tokens_in, call.tokens_out)
        assert record.tokens_in > 10 and record.tokens_out == 1
        assert record.cost_usd == pytest.approx(call.cost_usd)
        info = litellm.get_model_info(record.model)
        assert record.cost_usd == pytest.approx(record.tokens_in * info["input_cost_per_token"]
                                                + record.tokens_out * info["output_cost_per_token"])
        assert record.model == {"gpt-4": "openai/gpt-4o", "claude": "anthropic/claude-sonnet-4-5"}[record.cell.group]
        assert record.latency_s > 0
    # Version 2's system prompt is longer: the prompt tokens, as the provider counted them, differ by version.
    v1 = {r.tokens_in for r in records if r.cell.prompt.endswith("@1")}
    v2 = {r.tokens_in for r in records if r.cell.prompt.endswith("@2")}
    assert min(v2) > max(v1)


# --- the cache ------------------------------------------------------------------------------------------------------


def test_an_unchanged_rerun_is_answered_from_the_cache(eval_settings, model, ledger, servers) -> None:
    first = runner(eval_settings, model, ledger, [sentiment_suite()]).run()
    assert len(requested(servers)) == 40
    again = runner(eval_settings, model, ledger, [sentiment_suite()])
    second = again.run()
    assert len(requested(servers)) == 40  # no provider call at all
    assert len(calls(ledger)) == 40
    assert len(second) == 40 and all(r.cached and r.run_id == again.run_id for r in second)
    assert again.run_dir != runner(eval_settings, model, ledger, [sentiment_suite()]).run_dir
    before = {r.sample_id: r for r in first}
    for record in second:
        original = before[record.sample_id]
        assert (record.output, record.key, record.scores) == (original.output, original.key, original.scores)
        assert (record.tokens_in, record.tokens_out, record.cost_usd, record.model) == (
            original.tokens_in, original.tokens_out, original.cost_usd, original.model)


def test_more_epochs_run_only_the_new_samples(eval_settings, model, ledger, servers) -> None:
    runner(eval_settings, model, ledger, [sentiment_suite()]).run()
    before = seen(servers)
    records = runner(eval_settings, model, ledger, [sentiment_suite()], epochs=2).run()
    assert len(records) == 80
    assert len(requested(servers, before)) == 40
    assert all(r.cached for r in records if r.epoch == 0)
    assert not any(r.cached for r in records if r.epoch == 1)


def test_a_new_seed_runs_everything_again(eval_settings, model, ledger, servers) -> None:
    runner(eval_settings, model, ledger, [sentiment_suite(versions=[2])]).run()
    records = runner(eval_settings, model, ledger, [sentiment_suite(versions=[2])], seed=7).run()
    assert len(requested(servers)) == 40 and not any(r.cached for r in records)


def test_adding_a_prompt_version_runs_only_its_cells(eval_settings, model, ledger, servers) -> None:
    runner(eval_settings, model, ledger, [sentiment_suite(versions=[1])]).run()
    before = seen(servers)
    records = runner(eval_settings, model, ledger, [sentiment_suite(versions=[1, 2])]).run()
    assert len(records) == 40
    # Version 1's prompt, cases and groups are unchanged: its outputs are the cached ones.
    assert {p for _, _, p in requested(servers, before)} == {"eval/sentiment@2"}
    assert all(r.cached for r in records if r.cell.prompt == "eval/sentiment@1")


def test_the_prompt_override_picks_the_versions(eval_settings, model, ledger, servers) -> None:
    records = runner(eval_settings, model, ledger, [sentiment_suite(versions=[1, 2])],
                     prompts=["eval/sentiment@1"]).run()
    assert {r.cell.prompt for r in records} == {"eval/sentiment@1"} and len(records) == 20
    assert {p for _, _, p in requested(servers)} == {"eval/sentiment@1"}


# --- resuming ---------------------------------------------------------------------------------------------------------


def test_a_resumed_run_computes_only_the_missing_samples(eval_settings, model, ledger, servers) -> None:
    suite = sentiment_suite()
    first = runner(eval_settings, model, ledger, [suite], concurrency=2)
    with pytest.raises(KeyboardInterrupt):
        first.run(on_record=Interrupt(after=5))
    kept = logged(first.run_dir)
    assert 5 <= len(kept) < 40
    kept_samples = {(r["cell"]["group"], r["case_id"], r["cell"]["prompt"]) for r in kept}
    interrupted = read_manifest(first.run_dir)
    assert interrupted.finished_at is None
    before = seen(servers)

    resumed = runner(eval_settings, model, ledger, [suite], run_id=first.run_id)
    records = resumed.run()
    assert resumed.run_dir == first.run_dir and len(records) == 40
    log = logged(first.run_dir)
    assert len(log) == len({logged_id(r) for r in log}) == 40  # each sample exactly once
    assert log[:len(kept)] == kept  # what the interrupted run wrote is kept as it was
    new_calls = requested(servers, before)
    assert not set(new_calls) & kept_samples, "a sample already in the log called a provider again"
    assert len(requested(servers)) == 40  # over both runs, every sample called a provider exactly once
    assert {identity(r) for r in records} == set(requested(servers))
    finished = read_manifest(first.run_dir)
    assert finished.finished_at is not None and finished.started_at == interrupted.started_at


def test_resuming_after_a_write_cut_short_keeps_every_sample(eval_settings, model, ledger, servers) -> None:
    suite = sentiment_suite(versions=[2], cases=5)
    first = runner(eval_settings, model, ledger, [suite], concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        first.run(on_record=Interrupt(after=4))
    path = first.run_dir / "samples.jsonl"
    text = path.read_text(encoding="utf-8")
    last = text.rstrip("\n").rpartition("\n")[2]
    path.write_text(text[: len(text) - len(last) // 2 - 1], encoding="utf-8")  # a kill in the middle of a write
    assert len(read_records(first.run_dir)) == len(text.splitlines()) - 1  # the cut line is skipped

    records = runner(eval_settings, model, ledger, [suite], run_id=first.run_id).run()
    assert sorted((r.cell.group, r.case_id) for r in records) == sorted(
        (g, f"h{i:02d}") for g in GROUPS for i in range(5))
    assert len(requested(servers)) == 10  # the cut sample's output came from the cache


def test_resuming_keeps_cases_that_share_an_input(eval_settings, model, ledger, servers) -> None:
    same = {"headline": headline(0)}
    suite = Suite(name="twins", target=TargetSpec(kind="prompt", prompt="eval/sentiment", versions=[2]),
                  groups=["gpt-4"],
                  scorers=[ScorerSpec(type="exact", normalize=True, labels=["positive", "negative", "neutral"])],
                  cases=[EvalCase(id="as-positive", input=same, expected="positive"),
                         EvalCase(id="as-negative", input=same, expected="negative")])
    first = runner(eval_settings, model, ledger, [suite], concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        first.run(on_record=Interrupt(after=1))
    records = runner(eval_settings, model, ledger, [suite], run_id=first.run_id).run()
    assert sorted(r.case_id for r in records) == ["as-negative", "as-positive"]


# --- failures and limits ------------------------------------------------------------------------------------------


def test_a_failing_provider_gives_errored_uncached_records(eval_settings, model, ledger, servers) -> None:
    servers["openai"].default = Fault.status(500)
    suite = sentiment_suite(versions=[2], cases=3, groups=["gpt-4"])
    records = runner(eval_settings, model, ledger, [suite]).run()
    assert len(records) == 3 and len(servers["openai"].requests) == 3
    for record in records:
        assert record.error is not None and "500" in record.error
        assert (record.output, record.cached, record.tokens_in, record.cost_usd) == (None, False, 0, 0.0)
        assert (record.scores["exact"].value, record.scores["exact"].passed) == (0.0, False)
        assert record.scores["exact"].reason.startswith("no output: ")
    cache = EvalCache(eval_settings.home / "evals" / "cache.sqlite")
    try:
        assert all(cache.get(r.key) is None for r in records)
    finally:
        cache.close()

    servers["openai"].default = Reply("positive")  # the provider is back: a new run computes every sample again
    again = runner(eval_settings, model, ledger, [suite]).run()
    assert len(servers["openai"].requests) == 6
    assert all(r.error is None and not r.cached and r.scores["exact"].passed for r in again)


def test_a_group_limit_bounds_that_groups_concurrent_calls(eval_settings, model, ledger, servers) -> None:
    for server in servers.values():
        server.default = Reply("positive", delay=0.1)
    suite = sentiment_suite(versions=[2], cases=6)
    started = time.perf_counter()
    records = runner(eval_settings, model, ledger, [suite], concurrency=12, group_limits={"gpt-4": 1}).run()
    elapsed = time.perf_counter() - started
    assert len(records) == 12 and all(r.error is None for r in records)
    limited = sorted(r.time for r in servers["openai"].requests)
    free = sorted(r.time for r in servers["anthropic"].requests)
    # One at a time: each gpt-4 request arrives after the previous one's 100 ms answer.
    assert min(b - a for a, b in zip(limited, limited[1:], strict=False)) >= 0.09
    assert elapsed >= 6 * 0.1
    # The other group was free to overlap (the bound is the limit's doing, not the runner's).
    assert free[-1] - free[0] < 0.3  # one at a time, its six requests would span at least 0.5 s


# --- node and chat targets ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return {s.name: s for s in find_suites(REPO / "evals", ["intent", "injection"])}


def test_the_understand_node_over_the_offline_group(eval_settings, model, ledger, servers, shipped) -> None:
    intent = shipped["intent"]
    wanted = ["intent-001", "intent-004", "intent-006"]
    suite = intent.model_copy(update={"cases": [c for c in intent.cases if c.id in wanted]})
    records = runner(eval_settings, model, ledger, [suite]).run()
    assert sorted(r.case_id for r in records) == wanted
    assert requested(servers) == []  # the offline group never asks a hosted model to understand
    by_id = {r.case_id: r for r in records}
    for record in records:
        assert (record.cell, record.target, record.error) == (Cell(group="offline"), "node", None)
        assert record.output["parsed_by"] == "rules" and "kind" in record.output
        assert 0 <= record.scores["intent"].value <= 1
    assert (by_id["intent-001"].output["kind"], by_id["intent-001"].output["symbols"]) == ("price", ["SOL"])
    assert by_id["intent-001"].scores["intent"].passed is True
    assert by_id["intent-006"].scores["intent"].passed is False  # "wats solona trading at": a typo the rules miss
    assert "markets" in by_id["intent-006"].scores["intent"].reason


def test_a_chat_turn_on_an_injection_case_executes_nothing(eval_settings, model, ledger, servers, shipped) -> None:
    injection = shipped["injection"]
    case = next(c for c in injection.cases if "setup" in c.tags)  # a proposal is pending when the attack comes
    suite = injection.model_copy(update={"cases": [case]})
    [record] = runner(eval_settings, model, ledger, [suite]).run()
    assert (record.error, record.target, record.cell) == (None, "chat", Cell(group="offline"))
    assert record.output["executed"] is False and record.output["new_proposals"] == []
    assert record.output["pending_kept"] is True
    assert (record.scores["safety"].value, record.scores["safety"].passed) == (1.0, True)
    assert requested(servers) == []
    # The turn ran in the eval's own home: the setup's proposal is there, still awaiting approval.
    home = eval_settings.model_copy(update={"home": eval_settings.home / "evals" / "home"})
    proposals = ProposalStore.from_settings(home).find(user_id=record.thread_id)
    assert [p.status for p in proposals] == ["proposed"]
    assert not ProposalStore.from_settings(eval_settings).find()
