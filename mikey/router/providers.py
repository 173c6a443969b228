"""Base for MIKEY's in-process LiteLLM providers (local model, offline writer, fakes).

Each provider is a LiteLLM ``CustomLLM`` registered in ``litellm.custom_provider_map``, so the Router treats it like
any hosted model: same fallbacks, retries, timeouts and cost accounting.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from typing import Any

_REGISTERED: dict[str, Any] = {}


def import_litellm() -> Any:
    """Import litellm offline (bundled price map, no telemetry). Every import of litellm in MIKEY goes through here."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    # litellm imports provider types lazily, mid-call; pydantic warns that some of their TypedDicts use ReadOnly.
    warnings.filterwarnings("ignore", message=r"Items? .* on TypedDict class .* using the .ReadOnly. qualifier",
                            category=UserWarning)
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True  # no "Give Feedback" banners on the user's terminal
    _silence(litellm)
    return litellm


def _silence(litellm: Any) -> None:
    """LiteLLM's own loggers print a failed call's provider text and traceback (a 401 body can carry the key that was
    sent). MIKEY records each failure itself, by error class and status only (``chat_model.describe``), so theirs
    say nothing."""
    import logging

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
    for logger in (getattr(litellm, "verbose_logger", None), getattr(litellm, "verbose_router_logger", None)):
        if logger is not None:
            logger.setLevel(logging.CRITICAL + 1)


def text_provider_class() -> type:
    """Build the base class lazily, since it subclasses litellm's ``CustomLLM``."""
    litellm = import_litellm()
    from litellm import CustomLLM

    class TextProvider(CustomLLM):
        """A provider that turns chat messages into one text; subclasses implement ``generate``."""

        def generate(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> tuple[str, int, int]:
            """Return (text, prompt tokens, completion tokens)."""
            raise NotImplementedError

        def completion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose, encoding,
                       api_key, logging_obj, optional_params, acompletion=None, litellm_params=None, logger_fn=None,
                       headers=None, timeout=None, client=None):  # noqa: D102 - LiteLLM's signature
            text, prompt_tokens, completion_tokens = self.generate(model, messages,
                                                                   _params(optional_params, litellm_params))
            model_response.choices[0].message.content = text
            model_response.model = model
            model_response.usage = litellm.Usage(
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
            return model_response

        async def acompletion(self, *args, **kwargs):  # noqa: D102
            return await asyncio.to_thread(self.completion, *args, **kwargs)

        def stream_text(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Iterator[str]:
            """Pieces of the reply as they are produced; by default the whole text, word by word."""
            text, _, _ = self.generate(model, messages, params)
            words = text.split(" ")
            for i, word in enumerate(words):
                yield word if i == len(words) - 1 else word + " "

        def streaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose, encoding,
                      api_key, logging_obj, optional_params, acompletion=None, litellm_params=None, logger_fn=None,
                      headers=None, timeout=None, client=None):  # noqa: D102 - LiteLLM's signature
            produced = 0
            for piece in self.stream_text(model, messages, _params(optional_params, litellm_params)):
                produced += 1
                yield {"text": piece, "is_finished": False, "finish_reason": None, "usage": None, "index": 0,
                       "tool_use": None}
            yield {"text": "", "is_finished": True, "finish_reason": "stop", "index": 0, "tool_use": None,
                   "usage": {"prompt_tokens": word_count(messages), "completion_tokens": produced,
                             "total_tokens": word_count(messages) + produced}}

        async def astreaming(self, *args, **kwargs):  # noqa: D102
            for chunk in await asyncio.to_thread(lambda: list(self.streaming(*args, **kwargs))):
                yield chunk

    return TextProvider


def _params(optional_params: dict[str, Any] | None, litellm_params: dict[str, Any] | None) -> dict[str, Any]:
    """The call's options for ``generate``, with the caller's metadata (typed facts among it) as ``metadata``."""
    return {**(optional_params or {}), "metadata": (litellm_params or {}).get("metadata") or {}}


def register(provider: str, handler: Any) -> None:
    """Register ``handler`` for models named ``provider/...``; registering the same name again replaces it."""
    litellm = import_litellm()
    from litellm.utils import custom_llm_setup

    _REGISTERED[provider] = handler
    litellm.custom_provider_map = [
        item for item in litellm.custom_provider_map if item["provider"] != provider
    ] + [{"provider": provider, "custom_handler": handler}]
    custom_llm_setup()


def registered(provider: str) -> Any | None:
    return _REGISTERED.get(provider)


def word_count(messages: list[dict[str, Any]]) -> int:
    """A rough token count for providers that have no tokenizer of their own."""
    return sum(len(str(m.get("content", "")).split()) for m in messages)


_OWN_PROVIDERS = ("mikey-local", "mikey-offline")


def describe(exc: BaseException) -> str:
    """A provider failure for notices, logs and the ledger: the error class and HTTP status, never the provider's
    text (a 401 body can carry the key that was sent). MIKEY's own providers' messages are kept: they are ours."""
    from mikey.errors import DeadlineExceeded, MikeyError

    if isinstance(exc, MikeyError):  # ours, written from describe()d parts
        return _first_line(exc)
    name = type(exc).__name__
    provider = str(getattr(exc, "llm_provider", "") or "")
    if provider in _OWN_PROVIDERS or isinstance(exc, DeadlineExceeded):
        return f"{name}: {_first_line(exc).removeprefix('litellm.').removeprefix(name + ': ')}"
    status = getattr(exc, "status_code", None)
    return f"{name}, HTTP {status}" if isinstance(status, int) else name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
