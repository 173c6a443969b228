"""The one runtime every entry point opens: one validation of the model group, and a close that releases everything,
the process-wide state included."""

from __future__ import annotations

import pytest

from mikey.agents.chat import run_turn
from mikey.errors import ConfigError
from mikey.router import ledger as ledger_module
from mikey.runtime import open_runtime, running


def test_an_unusable_group_is_one_clear_error_and_leaves_nothing_open(settings) -> None:
    before = dict(ledger_module._LEDGERS)
    with pytest.raises(ConfigError, match="model group 'gpt-4' is not usable: OPENAI_API_KEY is not set"):
        open_runtime(settings, group="gpt-4")
    assert ledger_module._LEDGERS == before


def test_a_turn_on_the_runtime_then_close_releases_the_process_wide_state(settings) -> None:
    from mikey.router.providers import import_litellm

    litellm = import_litellm()  # offline: a bare `import litellm` would fetch its price map
    settings = settings.model_copy(update={"cache_enabled": True})
    previous = litellm.cache
    runtime = open_runtime(settings, group="offline")
    answer = run_turn(runtime.chat_graph(), runtime.chat_context(), "How is SOL doing?", "t")
    assert answer.group == "offline" and answer.text.startswith("SOL last closed at")
    assert litellm.cache is not previous  # the router installed its response cache
    key = runtime.chat_model._ledger_key
    assert key in ledger_module._LEDGERS and [c.role for c in runtime.ledger.calls()] == ["analyze"]
    runtime.close()
    assert litellm.cache is previous and key not in ledger_module._LEDGERS
    runtime.close()  # twice is harmless
    with pytest.raises(ConfigError, match="the runtime is closed"):
        runtime.chat_graph()


def test_threads_survive_the_runtime(settings) -> None:
    with running(settings, group="offline") as runtime:
        run_turn(runtime.chat_graph(), runtime.chat_context(), "How is SOL doing?", "kept")
    with running(settings, group="offline") as runtime:
        history = runtime.chat_graph().get_state({"configurable": {"thread_id": "kept"}}).values["history"]
    assert [t["role"] for t in history] == ["user", "assistant"]


def test_the_runtime_gives_its_parts_to_the_pipeline(settings) -> None:
    from mikey.agents.pipeline import run_watchlist

    with running(settings, group="offline") as runtime:
        result = run_watchlist(runtime.pipeline_context(), ["SOL"])
    assert [i.symbol for i in result.insights] == ["SOL"] and result.insights[0].group == "offline"
