"""RouterChatModel with in-process fakes behind the real LiteLLM Router: ledger, budgets, cache, structured output,
consensus, judge separation and streaming. (The HTTP wire formats and faults are in test_router_http.py.)"""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel

from mikey.errors import BudgetExceeded, ConfigError, InvalidModelOutput
from mikey.router import fake
from mikey.router.chat_model import DoneEvent, RouterChatModel, TokenEvent
from mikey.router.consensus import aggregate, consensus
from mikey.router.groups import model_groups
from mikey.router.ledger import Ledger

FAMILIES = {"gpt-4": "openai", "claude": "anthropic", "gemini": "google", "local": "local"}
MESSAGES = [{"role": "user", "content": "How is SOL doing?"}]


class Signal(BaseModel):
    action: Literal["BUY", "SELL", "HOLD"]
    strength: float
    reasons: list[str]


def chat_model(settings, models: dict[str, fake.ScriptedModel | fake.FunctionModel], *, ledger: Ledger | None = None,
               prefix: str = "t"):
    groups = model_groups(settings)
    for group, model in models.items():
        groups[group] = fake.fake_group(group, f"{prefix}-{group}", model, family=FAMILIES[group])
    return RouterChatModel(settings, groups, ledger=ledger)


def test_ledger_records_role_group_deployment_tokens_and_thread(settings, ledger) -> None:
    cm = chat_model(settings, {"gpt-4": fake.ScriptedModel(["one two three"])}, ledger=ledger)
    done = cm.complete(MESSAGES, role="analyze", thread_id="th-1")
    assert (done.text, done.group, done.family, done.deployment) == ("one two three", "gpt-4", "openai", "gpt-4#fake")
    [row] = ledger.calls()
    assert (row.role, row.model_group, row.deployment, row.outcome, row.thread_id) == (
        "analyze", "gpt-4", "gpt-4#fake", "ok", "th-1")
    assert (row.tokens_in, row.tokens_out) == (4, 3)  # the fake counts words
    assert row.latency_ms > 0


def test_budget_refuses_a_call_before_it_is_sent(settings, ledger) -> None:
    """A thread that has spent its budget gets a clear error, and the model is never called."""
    settings = settings.model_copy(update={"budget_per_thread_usd": 0.01})
    model = fake.ScriptedModel(["never"])
    cm = chat_model(settings, {"gpt-4": model}, ledger=ledger)
    cm.groups["gpt-4"].deployments[0].params.update(input_cost_per_token=1e-4, output_cost_per_token=1e-4)
    with pytest.raises(BudgetExceeded, match=r"thread th-1 budget of \$0\.0100 would be exceeded: spent \$0\.0000"):
        cm.complete(MESSAGES, role="analyze", thread_id="th-1", max_tokens=200, group="gpt-4", only=True)
    assert model.calls == [] and ledger.calls() == []


def test_day_budget_counts_what_was_spent(settings, ledger) -> None:
    from mikey.router.ledger import CallRecord

    settings = settings.model_copy(update={"budget_per_day_usd": 1.0})
    ledger.record(CallRecord(role="analyze", model_group="gpt-4", deployment="gpt-4#0", model="m", outcome="ok",
                             cost_usd=0.999))
    model = fake.ScriptedModel(["x"])
    cm = chat_model(settings, {"gpt-4": model}, ledger=ledger)
    cm.groups["gpt-4"].deployments[0].params.update(input_cost_per_token=1e-5, output_cost_per_token=1e-5)
    with pytest.raises(BudgetExceeded, match=r"day budget of \$1\.0000 would be exceeded: spent \$0\.9990"):
        cm.complete(MESSAGES, role="analyze", group="gpt-4", only=True)
    assert model.calls == []


def test_identical_request_is_answered_from_cache(settings, ledger) -> None:
    settings = settings.model_copy(update={"cache_enabled": True})
    model = fake.ScriptedModel(["cached words"])
    cm = chat_model(settings, {"gpt-4": model}, ledger=ledger, prefix="cache")
    messages = [{"role": "user", "content": "cache me, unique 7f3a"}]
    first = cm.complete(messages, role="analyze", group="gpt-4", only=True)
    second = cm.complete(messages, role="analyze", group="gpt-4", only=True)
    assert (first.text, second.text) == ("cached words", "cached words")
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert len(model.calls) == 1
    assert [r.cache_hit for r in ledger.calls()] == [False, True]


def test_structured_output_is_validated_and_repaired_once(settings) -> None:
    model = fake.ScriptedModel(['{"action": "MOON", "strength": 0.5, "reasons": []}',
                                '```json\n{"action": "BUY", "strength": 0.7, "reasons": ["RSI rising"]}\n```'])
    cm = chat_model(settings, {"gpt-4": model})
    value, done = cm.structured(MESSAGES, Signal, role="analyze")
    assert value == Signal(action="BUY", strength=0.7, reasons=["RSI rising"])
    repair = model.calls[1][-1]["content"]
    assert "does not match the required JSON schema" in repair and "action" in repair


def test_structured_output_moves_to_the_next_group_after_a_failed_repair(settings) -> None:
    bad = fake.ScriptedModel(["not json", "still not json"])
    good = fake.ScriptedModel(['{"action": "HOLD", "strength": 0.1, "reasons": ["flat"]}'])
    cm = chat_model(settings, {"gpt-4": bad, "claude": good})
    value, done = cm.structured(MESSAGES, Signal, role="analyze")
    assert value.action == "HOLD" and done.group == "claude"
    assert len(bad.calls) == 2


def test_structured_output_never_asks_the_offline_writer(settings) -> None:
    cm = chat_model(settings, {"gpt-4": fake.ScriptedModel(["{}", "{}"]), "local": fake.ScriptedModel(["x", "y"])})
    with pytest.raises(InvalidModelOutput, match=r"no model produced a valid Signal: gpt-4: .*local \(repaired\)"):
        cm.structured(MESSAGES, Signal, role="analyze")


def test_consensus_majority_median_and_agreement(settings) -> None:
    replies = {
        "gpt-4": {"action": "BUY", "strength": 0.6, "reasons": ["a"]},
        "claude": {"action": "BUY", "strength": 0.8, "reasons": ["a"]},
        "gemini": {"action": "SELL", "strength": 0.7, "reasons": ["b"]},
    }
    cm = chat_model(settings, {g: fake.ScriptedModel([json.dumps(r)]) for g, r in replies.items()})
    result = consensus(cm, MESSAGES, Signal, groups=["gpt-4", "claude", "gemini"], role="analyze")
    assert result.value == Signal(action="BUY", strength=0.7, reasons=["a"])
    assert str(result.agreement["action"]) == "2 of 3 models agree on action"
    assert result.agreement["strength"].agree == 1  # only 0.7 is within 5% of the median 0.7
    assert result.failures == {}


def test_consensus_reports_failed_groups(settings) -> None:
    cm = chat_model(settings, {
        "gpt-4": fake.ScriptedModel(['{"action": "HOLD", "strength": 0.2, "reasons": []}']),
        "claude": fake.ScriptedModel([ConnectionError("down")]),
    })
    result = consensus(cm, MESSAGES, Signal, groups=["gpt-4", "claude"], role="analyze")
    assert result.unanimous("action") and result.agreement["action"].total == 1
    assert "claude" in result.failures


def test_aggregate_breaks_ties_by_asking_order() -> None:
    a, b = Signal(action="BUY", strength=1, reasons=[]), Signal(action="SELL", strength=3, reasons=[])
    value, agreement = aggregate(Signal, {"gemini": b, "gpt-4": a})
    assert value.action == "SELL" and value.strength == 2
    assert agreement["action"].agree == 1


def test_judge_is_never_the_family_it_judges(settings) -> None:
    judge_claude = fake.ScriptedModel(["fair", "claude's own answer"])
    cm = chat_model(settings, {"gpt-4": fake.ScriptedModel(["answer"]), "claude": judge_claude})
    answer = cm.complete(MESSAGES, role="analyze")
    verdict = cm.judge([{"role": "user", "content": "judge this"}], judged=answer)
    assert (answer.family, verdict.group, verdict.family) == ("openai", "claude", "anthropic")
    claude_answer = cm.complete(MESSAGES, role="analyze", group="claude")
    no_local = settings.model_copy(update={"local_model_path": settings.home / "missing.gguf"})
    with pytest.raises(ConfigError, match="no usable model group for role 'judge'"):
        chat_model(no_local, {"claude": fake.ScriptedModel([])}).judge(MESSAGES, judged=claude_answer)


def test_offline_writer_streams_tokens_then_done(settings) -> None:
    from mikey.domain import Facts
    from mikey.market.replay import ReplayFeed
    from mikey.router.offline import facts_block

    facts = Facts(symbol="SOL", quote=ReplayFeed().quote("SOL"))
    cm = RouterChatModel(settings)
    events = list(cm.stream([{"role": "user", "content": facts_block(facts)}], role="analyze", group="offline"))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3 and isinstance(events[-1], DoneEvent)
    assert "".join(tokens).strip() == events[-1].completion.text
    assert events[-1].completion.text.startswith("SOL last closed at 21.780764 USD")


def test_unusable_or_unknown_group_is_a_config_error(settings) -> None:
    cm = RouterChatModel(settings)
    with pytest.raises(ConfigError, match="model group 'claude' is not usable: ANTHROPIC_API_KEY is not set"):
        cm.complete(MESSAGES, role="analyze", group="claude")
    with pytest.raises(ConfigError, match="unknown model group 'gpt-5'"):
        cm.chain("analyze", "gpt-5")


def test_http_deployments_get_total_and_connect_timeouts(settings) -> None:
    """Connect and total timeouts reach LiteLLM as one httpx.Timeout (first-token timeout as stream_timeout)."""
    import httpx

    from mikey.router.chat_model import _litellm_params

    s = type(settings)(**{**settings.model_dump(), "openai_api_key": "k", "request_timeout": 9, "connect_timeout": 2,
                          "first_token_timeout": 4})
    params = _litellm_params(model_groups(s)["gpt-4"].deployments[0])
    assert params["timeout"] == httpx.Timeout(9.0, connect=2.0)
    assert params["stream_timeout"] == 4.0


def test_ledger_rows_name_the_prompt_the_messages_were_rendered_from(settings, ledger) -> None:
    """Rendered messages carry ``name@version`` into every row of their call: the failed attempt, the answer, a
    stream, both structured attempts (the repair too); messages written by hand record no prompt."""
    import time

    from mikey.router.messages import PromptMessages

    settings = settings.model_copy(update={"num_retries": 0})
    rendered = PromptMessages(MESSAGES, "test.echo@3")
    cm = chat_model(settings, {
        "gpt-4": fake.ScriptedModel([ConnectionError("down")]),
        "claude": fake.ScriptedModel(["answer", "streamed answer", "not json",
                                      '{"action": "HOLD", "strength": 0.1, "reasons": []}', "by hand"]),
    }, ledger=ledger)

    assert cm.complete(rendered, role="analyze").group == "claude"
    assert isinstance(list(cm.stream(rendered, role="analyze", group="claude"))[-1], DoneEvent)
    assert cm.structured(rendered, Signal, role="understand", groups=["claude"])[0].action == "HOLD"
    cm.complete(MESSAGES, role="analyze", group="claude", only=True)

    deadline = time.monotonic() + 5  # the failed attempt arrives through LiteLLM's failure callback
    while len(ledger.calls()) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    rows = sorted((r.role, r.model_group, r.outcome, r.prompt or "-") for r in ledger.calls())
    assert rows == [("analyze", "claude", "ok", "-"), ("analyze", "claude", "ok", "test.echo@3"),
                    ("analyze", "claude", "ok", "test.echo@3"), ("analyze", "gpt-4", "error", "test.echo@3"),
                    ("understand", "claude", "ok", "test.echo@3"), ("understand", "claude", "ok", "test.echo@3")]
