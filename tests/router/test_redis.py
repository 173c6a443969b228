"""Scale-out: with MIKEY_REDIS_URL set, the response cache and deployment cooldowns live in a real Redis."""

from __future__ import annotations

import pytest

from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


def test_response_cache_lives_in_redis(settings, redis_url, redis_client) -> None:
    s = settings.model_copy(update={"cache_enabled": True, "redis_url": redis_url})
    model = fake.ScriptedModel(["from the model"])
    groups = model_groups(s)
    groups["gpt-4"] = fake.fake_group("gpt-4", "redis-cache", model, family="openai")
    cm = RouterChatModel(s, groups)
    messages = [{"role": "user", "content": "cache me in redis 91c2"}]
    first = cm.complete(messages, role="analyze", group="gpt-4", only=True)
    assert redis_client.dbsize() >= 1  # the reply was written to Redis, not only to process memory
    second = cm.complete(messages, role="analyze", group="gpt-4", only=True)
    assert (first.cache_hit, second.cache_hit, second.text, len(model.calls)) == (False, True, "from the model", 1)


def test_cooldowns_are_shared_between_routers(settings, redis_url, redis_client) -> None:
    """Two routers (as two replicas would have) see the same cooldown through Redis."""
    with FakeProviderServer("openai") as openai, FakeProviderServer("anthropic") as anthropic:
        openai.default = Fault.status(401)
        anthropic.default = Reply("claude")
        s = type(settings)(**{**settings.model_dump(), "redis_url": redis_url, "openai_api_key": "k",
                              "openai_api_base": openai.api_base, "anthropic_api_key": "k",
                              "anthropic_api_base": anthropic.api_base, "num_retries": 0})
        first, second = RouterChatModel(s), RouterChatModel(s)
        assert first.complete([{"role": "user", "content": "hi"}], role="analyze").group == "claude"
        assert "gpt-4#0" in second.cooldowns()
        assert second.complete([{"role": "user", "content": "hi"}], role="analyze").group == "claude"
        assert len(openai.requests) == 1  # the second router never tried the cooled-down deployment
