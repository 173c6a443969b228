"""One way to write a grounded answer: the same rule streamed or not, and a stream shows only what it can vouch for.

Scripted drafts behind the real LiteLLM Router (the fake provider streams a reply word by word) and the real offline
writer, over the real SOL facts of the replay feed.
"""

from __future__ import annotations

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn, stream_turn
from mikey.agents.grounding import UNVERIFIED
from mikey.agents.state import ChatContext
from mikey.agents.writing import Reset, offline_answer, write_grounded
from mikey.analysis import indicators
from mikey.domain import Facts
from mikey.market.replay import ReplayFeed
from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups
from mikey.router.offline import write

LOOPING = ("SOL is bullish at 31.5 USD and the market is bullish. The market is bullish, and the market is bullish. "
           "SOL will reach 45 USD. The market is bullish, and the market is bullish. The market is")
GOOD = "SOL closed at 21.78 USD, up 5.95% on the day. RSI(14) is 47.86, neutral. Momentum is mixed."
ONE_INVENTED = ("SOL closed at 21.78 USD, up 5.95% on the day. It could reach 25 soon. RSI(14) is 47.86, neutral. "
                "ATR is 1.10 USD.")


def chat_model(settings, *replies: str) -> RouterChatModel:
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", "drafter", fake.ScriptedModel(list(replies)), family="local")
    return RouterChatModel(settings, groups)


@pytest.fixture
def facts() -> Facts:
    feed = ReplayFeed()
    return Facts(symbol="SOL", quote=feed.quote("SOL"), indicators=indicators.snapshot(feed.candles("SOL")),
                 parameters=dict(indicators.PARAMETERS))


MESSAGES = [{"role": "user", "content": "How is SOL doing?"}]  # no <facts> block: the offline writer gets them typed


def streamed(settings, facts, reply: str):
    pieces: list[str | Reset] = []
    written = write_grounded(chat_model(settings, reply), MESSAGES, facts, min_grounding=0.5, group="local",
                             show=pieces.append)
    return pieces, written


def test_a_looping_number_inventing_draft_is_replaced_streamed_or_not(settings, facts) -> None:
    whole = write_grounded(chat_model(settings, LOOPING), MESSAGES, facts, min_grounding=0.5, group="local")
    pieces, streamed_answer = streamed(settings, facts, LOOPING)
    offline_text = write(facts)
    assert whole.text == streamed_answer.text == offline_text
    assert whole.group == streamed_answer.group == "offline"
    assert "The local draft stated 2 of 2 numbers that match no fact" in " ".join(streamed_answer.notes)
    shown = "".join(p for p in pieces if isinstance(p, str))
    assert shown == offline_text and not any(isinstance(p, Reset) for p in pieces)  # nothing unvouched was shown
    assert UNVERIFIED not in shown and "31.5" not in shown


def test_a_good_draft_streams_sentence_by_sentence(settings, facts) -> None:
    pieces, written = streamed(settings, facts, GOOD)
    assert written.group == "local" and written.text == GOOD
    assert len(pieces) == 3 and "".join(pieces) == GOOD


def test_what_cannot_be_vouched_for_is_held_until_the_draft_passes(settings, facts) -> None:
    """4 of 5 numbers match: the draft passes, but its second sentence (an invented 25) and all after it wait."""
    pieces, written = streamed(settings, facts, ONE_INVENTED)
    whole = write_grounded(chat_model(settings, ONE_INVENTED), MESSAGES, facts, min_grounding=0.5, group="local")
    assert written.text == whole.text and f"reach {UNVERIFIED} soon" in written.text
    assert written.grounding.removed == ["25"] and written.group == "local"
    assert pieces[0] == "SOL closed at 21.78 USD, up 5.95% on the day."
    assert "".join(pieces) == written.text


def test_a_draft_that_fails_after_words_were_shown_is_withdrawn(settings, facts) -> None:
    """Sentences shown while the score held; later inventions sink the draft: a Reset, then the offline writer."""
    draft = "SOL closed at 21.78 USD. It will hit 30, then 40, then 50 and 60 by Friday."
    pieces, written = streamed(settings, facts, draft)
    assert pieces[0] == "SOL closed at 21.78 USD."
    assert isinstance(pieces[1], Reset) and "stated 4 of 5 numbers" in pieces[1].reason
    assert pieces[2:] == [write(facts)] and written.group == "offline"


def test_the_offline_writer_gets_typed_facts_not_a_prompt_to_parse(settings, facts) -> None:
    written = offline_answer(chat_model(settings), MESSAGES, facts)
    assert written.text == write(facts) and written.text.startswith("SOL last closed at 21.780764 USD")
    assert written.grounding.score == 1.0


@pytest.mark.parametrize("stream", [False, True])
def test_the_chat_turn_shows_the_offline_writer_for_a_looping_draft(settings, stream) -> None:
    settings = settings.model_copy(update={"understand_with_model": False})
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=chat_model(settings, LOOPING),
                          group="local")
    with open_checkpointer(settings) as checkpointer:
        graph = build_chat_graph(checkpointer)
        if stream:
            *pieces, answer = stream_turn(graph, context, "How is SOL doing?", "t")
            assert "".join(p for p in pieces if isinstance(p, str)) == answer.text
        else:
            answer = run_turn(graph, context, "How is SOL doing?", "t")
    assert answer.group == "offline" and answer.text == write(answer.facts)
    assert "the offline writer rendered the facts instead" in answer.notice
