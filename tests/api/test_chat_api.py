"""``POST /v1/chat``, ``POST /v1/chat/stream`` and ``GET /v1/chat/{thread_id}`` through FastAPI's TestClient.

The app runs its real lifespan; ``get_chat_service`` is overridden with a ``ChatService`` whose models are the
scripted fakes of ``tests/fakes/conversation.py`` behind the real RouterChatModel (and LiteLLM Router), over
the replay of the bundled history and a real SQLite checkpointer. One test runs the lazily built real service.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mikey.agents.chat import build_chat_graph, open_checkpointer
from mikey.agents.grounding import UNVERIFIED
from mikey.api.app import create_app
from mikey.api.chat import MAX_MESSAGE_CHARS, ChatService, LazyChatService, ThreadLocks, get_chat_service
from mikey.domain import Answer
from mikey.errors import ConfigError, ProviderUnavailable
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from mikey.router.ledger import Ledger
from tests.fakes.conversation import SOL_PRICE, Scripted, context_for, copy_facts, llm_calls, prompt_facts

CHAT, STREAM = "/v1/chat", "/v1/chat/stream"
TRADE = "open a 5x long on SOL with 300 USDC"


@pytest.fixture
def service_for(settings, ledger) -> Iterator[Any]:
    """Build a ``ChatService`` over a scripted model (fake 'local' group, real router, real checkpointer)."""
    with open_checkpointer(settings) as checkpointer:
        graph = build_chat_graph(checkpointer)

        def build(model: Scripted) -> ChatService:
            context = context_for(settings, model, ledger)
            return ChatService(context.settings, context.feed, context.chat_model, graph)

        yield build


@pytest.fixture
def model() -> Scripted:
    return Scripted({"hi": {"kind": "smalltalk"}, TRADE: {"kind": "trade", "markets": ["SOL"], "side": "long",
                                                          "leverage": 5, "collateral": 300}})


@pytest.fixture
def app(settings, service_for, model):
    app = create_app(settings)
    service = service_for(model)
    app.dependency_overrides[get_chat_service] = lambda: service
    return app


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def stream(client: TestClient, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with client.stream("POST", STREAM, json=body) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return sse(resp.read().decode())


# /v1/chat ----------------------------------------------------------------------------------------------------------

def test_chat_answers_with_facts_and_a_new_thread(client, ledger) -> None:
    resp = client.post(CHAT, json={"message": "How is SOL doing?"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    answer = Answer.model_validate(body["answer"])
    assert body["answer"] == answer.model_dump(mode="json")
    assert answer.facts.symbol == "SOL" and answer.facts.quote is not None
    assert SOL_PRICE in {str(f.value) for f in answer.facts.numbers()}
    assert SOL_PRICE in answer.text and answer.grounding.removed == []
    assert answer.group == "local"
    thread = body["thread_id"]
    assert len(thread) == 32
    assert llm_calls(ledger, thread) == [("understand", "local"), ("analyze", "local")]


def test_follow_up_on_the_thread_and_its_history(client) -> None:
    first = client.post(CHAT, json={"message": "How is SOL doing?", "thread_id": "mine"}).json()
    assert first["thread_id"] == "mine"
    follow = client.post(CHAT, json={"message": "and ETH?", "thread_id": "mine"})
    assert follow.status_code == 200, follow.text
    answer = Answer.model_validate(follow.json()["answer"])
    assert answer.facts.symbol == "ETH" and "ETH trades at" in answer.text

    history = client.get("/v1/chat/mine")
    assert history.status_code == 200, history.text
    turns = history.json()["turns"]
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", "How is SOL doing?"), ("assistant", first["answer"]["text"]),
        ("user", "and ETH?"), ("assistant", answer.text)]
    assert [t["symbols"] for t in turns] == [["SOL"], ["SOL"], ["ETH"], ["ETH"]]
    assert turns[1]["group"] == "local"


def test_unknown_thread_is_404(client) -> None:
    resp = client.get("/v1/chat/nobody-here")
    assert resp.status_code == 404
    assert resp.json()["error"] == "DataUnavailable"
    assert "nobody-here" in resp.json()["detail"][0]["reason"]


def test_greeting_costs_no_analyze_call(client, model) -> None:
    answer = client.post(CHAT, json={"message": "  hi  "}).json()["answer"]
    assert answer["group"] == "rules" and answer["text"].startswith("Hi, I'm MIKEY")
    assert model.analyzed == []


def test_trade_is_only_proposed(client, model, ledger) -> None:
    """A trade message gets a proposal awaiting approval; no model is offered a tool and no other call is made."""
    resp = client.post(CHAT, json={"message": TRADE, "thread_id": "trade"})
    assert resp.status_code == 200, resp.text
    answer = Answer.model_validate(resp.json()["answer"])
    proposal = answer.proposal
    assert proposal is not None and proposal.status == "awaiting_approval"
    assert (proposal.side, proposal.leverage, proposal.collateral) == ("long", 5.0, 300.0)
    assert proposal.entry_price == pytest.approx(float(SOL_PRICE))
    assert "nothing executes until you approve it" in proposal.note.lower()
    assert "Nothing executes until you approve the proposal" in answer.notice
    assert all(tools is None for tools in model.tools_seen)
    assert llm_calls(ledger, "trade") == [("understand", "local"), ("analyze", "local")]
    assert len(client.get("/v1/chat/trade").json()["turns"]) == 2


def test_user_id_reaches_the_context(settings, ledger) -> None:
    """The request's user_id is the turn's user; others keep the configured one."""
    with open_checkpointer(settings) as checkpointer:
        context = context_for(settings, Scripted(), ledger)
        service = ChatService(context.settings, context.feed, context.chat_model, build_chat_graph(checkpointer))
        from mikey.api.chat import ChatRequest

        assert service.context(ChatRequest(message="hi", user_id=" alice ")).user == "alice"
        assert service.context(ChatRequest(message="hi")).user == settings.user_id
        assert service.context(ChatRequest(message="hi", model="offline")).group == "offline"


# /v1/chat/stream ---------------------------------------------------------------------------------------------------

def test_stream_sends_grounded_pieces_then_the_answer(app) -> None:
    writer = Scripted(write=lambda m: f"SOL trades at {prompt_facts(m)['price']}. It may hit 99.5 soon. RSI(14) is "
                                      f"{prompt_facts(m)['rsi_14']}.")
    with TestClient(app) as client:
        app.dependency_overrides[get_chat_service] = _replace_model(app, writer)
        events = stream(client, {"message": "How is SOL doing?", "thread_id": "s"})
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"text"} and len(names) >= 3
    texts = [data["text"] for name, data in events if name == "text"]
    reply = events[-1][1]
    assert reply["thread_id"] == "s"
    answer = Answer.model_validate(reply["answer"])
    assert "".join(texts).strip() == answer.text
    assert all("99.5" not in t for t in texts)
    assert answer.text == f"SOL trades at {SOL_PRICE}. It may hit {UNVERIFIED} soon. RSI(14) is 47.86."
    assert answer.grounding.removed == ["99.5"]


def test_stream_answer_event_matches_the_chat_body(client) -> None:
    events = stream(client, {"message": "How is SOL doing?", "thread_id": "a"})
    plain = client.post(CHAT, json={"message": "How is SOL doing?", "thread_id": "b"}).json()
    reply = events[-1][1]
    assert set(reply) == set(plain) == {"thread_id", "answer"}
    assert reply["answer"]["text"] == plain["answer"]["text"]
    assert reply["answer"]["facts"]["quote"] == plain["answer"]["facts"]["quote"]


def test_stream_of_a_greeting_is_one_rules_piece(client) -> None:
    events = stream(client, {"message": "hi"})
    assert [name for name, _ in events] == ["text", "answer"]
    answer = events[1][1]["answer"]
    assert events[0][1]["text"] == answer["text"] and answer["group"] == "rules"


def test_error_after_the_stream_started_is_an_error_event(app, ledger) -> None:
    """Every group failing is a ProviderError raised once the turn runs: the stream, already 200, ends with an
    error event naming the kind of error, and the thread keeps no half turn."""
    base: ChatService = app.dependency_overrides[get_chat_service]()
    broken = _BrokenStream(base.settings, base.chat_model.groups, ledger)
    service = ChatService(base.settings, base.feed, broken, base.graph)
    app.dependency_overrides[get_chat_service] = lambda: service
    with TestClient(app) as client:
        events = stream(client, {"message": "How is SOL doing?", "thread_id": "cut"})
        assert client.get("/v1/chat/cut").status_code == 404
    assert events == [("error", {"error": "ProviderUnavailable", "detail": "every model group failed: local"})]


# Invalid requests --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [CHAT, STREAM])
@pytest.mark.parametrize(("body", "field", "words"), [
    ({"message": ""}, "message", "at least 1 character"),
    ({"message": "   \n "}, "message", "at least 1 character"),
    ({}, "message", "required"),
    ({"message": "x" * (MAX_MESSAGE_CHARS + 1)}, "message", f"at most {MAX_MESSAGE_CHARS} characters"),
    ({"message": "hi", "colour": "red"}, "colour", "not permitted"),
    ({"message": "hi", "thread_id": "../../etc"}, "thread_id", "should match pattern"),
    ({"message": "hi", "user_id": ""}, "user_id", "at least 1 character"),
    ({"message": 3}, "message", "valid string"),
    ({"message": "hi", "model": "gpt-5"}, "model", "unknown model group 'gpt-5'"),
    ({"message": "hi", "model": "gpt-4"}, "model", "model group 'gpt-4' is not usable"),
])
def test_invalid_bodies_are_422_naming_the_field(client, model, url, body, field, words) -> None:
    resp = client.post(url, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/json"
    payload = resp.json()
    assert payload["error"] == "ValidationError"
    assert [d["field"] for d in payload["detail"]] == [field], payload
    assert words in payload["detail"][0]["reason"]
    assert model.understood == model.analyzed == []


def test_invalid_json_is_422(client) -> None:
    resp = client.post(CHAT, content='{"message": ', headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "json_invalid"


def test_message_at_the_limit_is_accepted(client) -> None:
    resp = client.post(CHAT, json={"message": "hi " + "x" * (MAX_MESSAGE_CHARS - 3)})
    assert resp.status_code == 200, resp.text


# Concurrency -------------------------------------------------------------------------------------------------------

class Overlap:
    """A writer that takes a while and counts how many calls run at once."""

    def __init__(self) -> None:
        self.active = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.3)
        with self.lock:
            self.active -= 1
        return copy_facts(messages)


def test_turns_on_one_thread_are_serialised(app) -> None:
    """Two turns at once on one thread run one after the other, and both stay in the thread; on two threads they
    run side by side (which shows the test can see an overlap)."""
    writer = Overlap()
    with TestClient(app) as client:
        app.dependency_overrides[get_chat_service] = _replace_model(app, Scripted(write=writer))
        with ThreadPoolExecutor(2) as pool:
            same = list(pool.map(lambda m: client.post(CHAT, json={"message": m, "thread_id": "one"}),
                                 ["How is SOL doing?", "How is BTC doing?"]))
        assert [r.status_code for r in same] == [200, 200]
        assert writer.most == 1
        turns = client.get("/v1/chat/one").json()["turns"]
        assert len(turns) == 4
        assert sorted(t["content"] for t in turns if t["role"] == "user") == ["How is BTC doing?", "How is SOL doing?"]
        for question, reply in zip(turns[::2], turns[1::2], strict=True):
            assert (question["role"], reply["role"]) == ("user", "assistant")
            assert question["symbols"] == reply["symbols"] and question["symbols"][0] in reply["content"]

        with ThreadPoolExecutor(2) as pool:
            apart = list(pool.map(lambda t: client.post(CHAT, json={"message": "How is SOL doing?", "thread_id": t}),
                                  ["two", "three"]))
        assert [r.status_code for r in apart] == [200, 200]
        assert writer.most == 2


def test_a_consumer_that_leaves_mid_stream_frees_the_thread(service_for) -> None:
    """A client gone after the first piece: the graph's run is closed, the thread's lock released, and the next
    turn on the thread runs normally (the cut turn never reached its answer, so the thread does not keep it)."""
    import asyncio

    from mikey.api.chat import ChatRequest

    service = service_for(Scripted(write=lambda m: f"SOL trades at {prompt_facts(m)['price']}. RSI(14) is "
                                                   f"{prompt_facts(m)['rsi_14']}. Volume is steady."))
    context = service.context(ChatRequest(message="How is SOL doing?"))

    async def main() -> tuple[str | Answer, int, Answer]:
        pieces = service.stream(context, "How is SOL doing?", "left")
        first = await anext(pieces)
        await pieces.aclose()
        held = len(service.locks)
        return first, held, await service.answer(context, "and ETH?", "left")

    first, held, answer = asyncio.run(main())
    assert first.strip() == f"SOL trades at {SOL_PRICE}."
    assert held == 0
    assert answer.facts.symbol == "ETH"
    turns = asyncio.run(service.history("left"))
    assert [t["content"] for t in turns if t["role"] == "user"] == ["and ETH?"]


def test_thread_locks_are_dropped_when_free() -> None:
    import asyncio

    locks = ThreadLocks()
    order: list[str] = []

    async def turn(name: str, thread: str) -> None:
        async with locks.hold(thread):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    async def main() -> int:
        task = asyncio.gather(turn("a", "t"), turn("b", "t"))
        await asyncio.sleep(0)
        held = len(locks)
        await task
        return held

    assert asyncio.run(main()) == 1
    assert order == ["a+", "a-", "b+", "b-"]
    assert len(locks) == 0


# The real service and the rest of the app ----------------------------------------------------------------------

def test_risk_endpoint_still_works_in_the_same_app(client) -> None:
    assert client.post(CHAT, json={"message": "hi"}).status_code == 200
    resp = client.post("/v1/risk/assess", json={"market": "SOL", "side": "long", "size": 10, "collateral": 100})
    assert resp.status_code == 200, resp.text
    assert resp.json()["risk_level"] in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert client.get("/healthz").json()["status"] == "ok"


def test_openapi_documents_the_chat(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    body = paths[CHAT]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/ChatRequest")
    assert "text/event-stream" in paths[STREAM]["post"]["responses"]["200"]["content"]
    assert "get" in paths["/v1/chat/{thread_id}"]


def test_lazy_real_service_on_the_embedded_defaults(settings) -> None:
    """No override: the first chat request builds the real service (offline writer, rules understand, no model
    download); start-up and the risk endpoint do not build it; shutdown closes it."""
    settings = settings.model_copy(update={"default_model": "offline", "memory_enabled": False})

    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/risk/assess", json={"market": "SOL", "side": "long", "size": 1,
                                                    "collateral": 100}).status_code == 200
        assert not settings.state_db.exists() and not settings.ledger_db.exists()

        resp = client.post(CHAT, json={"message": "How is SOL doing?", "thread_id": "real"})
        assert resp.status_code == 200, resp.text
        answer = Answer.model_validate(resp.json()["answer"])
        assert (answer.group, answer.intent.parsed_by) == ("offline", "rules")
        assert answer.facts.symbol == "SOL" and SOL_PRICE in answer.text
        assert answer.grounding.removed == []
        events = stream(client, {"message": "and ETH?", "thread_id": "real"})
        assert events[-1][0] == "answer" and events[-1][1]["answer"]["facts"]["symbol"] == "ETH"
        assert len(client.get("/v1/chat/real").json()["turns"]) == 4
        assert settings.state_db.exists()

    ledger = Ledger(settings.ledger_db)
    try:
        assert [(c.role, c.model_group, c.thread_id) for c in ledger.calls()] == [
            ("analyze", "offline", "real"), ("analyze", "offline", "real")]
    finally:
        ledger.close()


def test_lazy_service_is_built_once_and_closed(settings) -> None:
    made: list[ChatService] = []
    closed: list[bool] = []

    class Probe(ChatService):
        def close(self) -> None:
            closed.append(True)

    def factory(s, feed):  # noqa: ANN001, ANN202
        time.sleep(0.05)
        made.append(Probe(s, feed, None, None))  # type: ignore[arg-type]
        return made[-1]

    import asyncio

    lazy = LazyChatService(settings, ReplayFeed(), factory)
    assert not lazy.built

    async def main() -> list[ChatService]:
        return list(await asyncio.gather(*(lazy.get() for _ in range(4))))

    services = asyncio.run(main())
    assert len(made) == 1 and all(s is made[0] for s in services)
    lazy.close()
    assert closed == [True] and not lazy.built
    with pytest.raises(ConfigError, match="shutting down"):
        asyncio.run(lazy.get())


# Helpers -----------------------------------------------------------------------------------------------------------

def _replace_model(app, model: Scripted):  # noqa: ANN001, ANN202
    """An override serving the app's current service with another scripted model."""
    base: ChatService = app.dependency_overrides[get_chat_service]()
    context = context_for(base.settings, model, base.chat_model.ledger)
    service = ChatService(base.settings, base.feed, context.chat_model, base.graph)
    return lambda: service


class _BrokenStream(RouterChatModel):
    """A chat model whose analyze stream fails before its first token, as when every group in the chain fails, the
    offline writer (which a failed stream falls back to) included."""

    def stream(self, messages, **kwargs):  # noqa: ANN001, ANN003, ANN201
        raise ProviderUnavailable("every model group failed: local")
        yield  # a generator, like the real one

    def complete(self, messages, **kwargs):  # noqa: ANN001, ANN003, ANN201
        raise ProviderUnavailable("every model group failed: local")
