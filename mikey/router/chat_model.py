"""``ChatModel``: how the rest of MIKEY asks for words. ``RouterChatModel`` serves it with one LiteLLM Router.

The Router holds every usable group (see ``groups.py``) and the fallback chain of each: the group asked for, then
``local``, then ``offline``. Retries, fallbacks and timeouts are the Router's; this module only builds it, names
the result, and turns LiteLLM's exceptions into MIKEY's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from mikey.errors import ConfigError, ProviderUnavailable, RateLimited
from mikey.router.groups import GroupStatus, fallback_chain, model_groups, smollm2_path
from mikey.settings import Settings


@dataclass(frozen=True)
class Completion:
    """Words from a model, with who wrote them and what it took."""

    text: str
    group: str
    model: str
    requested_group: str
    fallbacks: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class ChatModel(Protocol):
    """Anything that turns chat messages into a ``Completion`` for a role."""

    def complete(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None
    ) -> Completion: ...


class RouterChatModel:
    """A ``ChatModel`` over one ``litellm.Router``, built on first use from settings (or the groups given)."""

    def __init__(self, settings: Settings, groups: dict[str, GroupStatus] | None = None) -> None:
        self.settings = settings
        self.groups = groups if groups is not None else model_groups(settings)
        self._router: Any = None

    def check_group(self, group: str) -> GroupStatus:
        """The group's status; ``ConfigError`` with the reason when it is unknown or not usable."""
        if group not in self.groups:
            raise ConfigError(f"unknown model group {group!r}; groups: {', '.join(self.groups)}")
        status = self.groups[group]
        if not status.usable:
            raise ConfigError(f"model group {group!r} is not usable: {status.reason}")
        return status

    def _build(self) -> Any:
        from mikey.router import local, offline
        from mikey.router.providers import import_litellm, register

        import_litellm()
        from litellm import Router

        s = self.settings
        register("mikey-offline", offline.handler())
        register("mikey-local", local.handler(smollm2_path(s), threads=s.local_threads, context=s.local_context,
                                              max_tokens=s.max_tokens))
        usable = [g for g in self.groups.values() if g.usable]
        model_list = [{"model_name": g.name, "litellm_params": dict(d)} for g in usable for d in g.deployments]
        fallbacks = [{g.name: chain[1:]} for g in usable if len(chain := fallback_chain(g.name, self.groups)) > 1]
        return Router(model_list=model_list, fallbacks=fallbacks, num_retries=s.num_retries,
                      timeout=s.request_timeout)

    def complete(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        group = group or self.settings.default_model
        self.check_group(group)
        if self._router is None:
            self._router = self._build()
        import litellm

        started = time.perf_counter()
        try:
            response = self._router.completion(
                model=group, messages=messages, max_tokens=max_tokens or self.settings.max_tokens,
                metadata={"role": role},
            )
        except litellm.RateLimitError as exc:
            raise RateLimited(f"{group}: rate limited and no fallback answered ({_first_line(exc)})") from exc
        except Exception as exc:  # every other failure of the whole chain, whatever LiteLLM calls it
            raise ProviderUnavailable(f"no model in the chain for {group!r} answered: {_first_line(exc)}") from exc
        hidden = getattr(response, "_hidden_params", {}) or {}
        headers = hidden.get("additional_headers") or {}
        usage = getattr(response, "usage", None)
        return Completion(
            text=(response.choices[0].message.content or "").strip(),
            group=str(headers.get("x-litellm-model-group") or group),
            model=str(hidden.get("litellm_model_name") or response.model),
            requested_group=group,
            fallbacks=int(headers.get("x-litellm-attempted-fallbacks") or 0),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=time.perf_counter() - started,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
