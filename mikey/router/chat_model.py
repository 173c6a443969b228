"""``ChatModel``: how the rest of MIKEY asks for words. ``RouterChatModel`` serves it with one LiteLLM Router.

Each call names a role; settings map roles to ordered chains of model groups (``groups.role_chain``), and the
Router walks the chain with its own retries (per error type: none on auth errors, Retry-After honoured on 429),
cooldowns and timeouts. ``offline`` ends every chain, so words always come back. This module builds the Router,
checks budgets before a call is sent, writes the ledger, and turns LiteLLM's exceptions into MIKEY's.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from mikey.domain import Facts
from mikey.errors import (
    BudgetExceeded,
    ConfigError,
    DeadlineExceeded,
    InvalidModelOutput,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from mikey.router.groups import Deployment, GroupStatus, model_groups, role_chain, smollm2_path
from mikey.router.ledger import CallRecord, Ledger, attach, utc_day
from mikey.router.messages import prompt_of
from mikey.router.providers import describe
from mikey.settings import Settings

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class ToolCall:
    """A tool call in one shape, whatever the provider's wire format (OpenAI, Anthropic, Gemini)."""

    id: str
    name: str
    arguments: dict[str, Any]


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
    deployment: str = ""
    cost_usd: float = 0.0
    cache_hit: bool = False
    family: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    notice: str | None = None
    """Why groups before ``group`` were not asked (a budget), for the answer to say."""
    failures: tuple[str, ...] = ()
    """The groups asked before ``group`` that failed, each as ``group: error class (HTTP status)``."""


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class DoneEvent:
    completion: Completion


@dataclass(frozen=True)
class ErrorEvent:
    """A stream that broke after it had started: never a silent truncation."""

    message: str
    group: str
    chunks: int


StreamEvent = TokenEvent | DoneEvent | ErrorEvent


class ChatModel(Protocol):
    """How the rest of MIKEY asks for words: every call names a role; the model's chain of groups answers it.

    ``deadline`` (a ``time.monotonic()`` value) bounds a call: past it, the call is abandoned with
    ``DeadlineExceeded`` (a stream yields ``ErrorEvent`` if it had started). ``facts`` are the typed facts the words
    are about: the offline writer renders them when it is the group that answers.
    """

    def complete(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None,
        thread_id: str | None = None, only: bool = False, deadline: float | None = None, facts: Facts | None = None,
    ) -> Completion: ...

    def stream(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None,
        thread_id: str | None = None, deadline: float | None = None, facts: Facts | None = None,
    ) -> Iterator[StreamEvent]: ...

    def structured(
        self, messages: list[dict[str, Any]], schema: type[T], *, role: str, group: str | None = None,
        groups: list[str] | None = None, thread_id: str | None = None, max_tokens: int | None = None,
        deadline: float | None = None,
    ) -> tuple[T, Completion]: ...

    def chain(self, role: str, group: str | None = None, *, offline: bool = True) -> list[str]: ...


@dataclass
class _Call:
    """Per-call options shared by complete, stream and structured."""

    role: str
    chain: list[str]
    max_tokens: int
    thread_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    facts: Facts | None = None
    prompt: str | None = None
    """The ``name@version`` of the prompt the messages were rendered from (``PromptMessages``), for the ledger."""


class RouterChatModel:
    """A ``ChatModel`` over one ``litellm.Router``, built on first use from settings (or the groups given)."""

    def __init__(self, settings: Settings, groups: dict[str, GroupStatus] | None = None,
                 ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.groups = groups if groups is not None else model_groups(settings)
        self.ledger = ledger
        self._router: Any = None
        self._ledger_key: str | None = None
        self._build_lock = threading.Lock()
        self._cache: Any = None  # the response cache this model installed as litellm.cache, released by close()
        self._previous_cache: Any = None

    # -- set-up ---------------------------------------------------------------------------------------------------
    def check_group(self, group: str) -> GroupStatus:
        """The group's status; ``ConfigError`` with the reason when it is unknown or not usable."""
        if group not in self.groups:
            raise ConfigError(f"unknown model group {group!r}; groups: {', '.join(self.groups)}")
        status = self.groups[group]
        if not status.usable:
            raise ConfigError(f"model group {group!r} is not usable: {status.reason}")
        return status

    def chain(self, role: str, group: str | None = None, *, exclude_families: frozenset[str] = frozenset(),
              offline: bool = True) -> list[str]:
        """The groups a call for ``role`` tries, in order."""
        if group is not None:
            self.check_group(group)
        chain = role_chain(self.settings, self.groups, role, first=group, exclude_families=exclude_families,
                           offline=offline)
        if not chain:
            raise ConfigError(f"no usable model group for role {role!r}")
        return chain

    @property
    def router(self) -> Any:
        """The LiteLLM Router, built on first use (once, even when two threads ask at the same time)."""
        if self._router is None:
            with self._build_lock:
                if self._router is None:
                    self._router = self._build()
        return self._router

    def _prefill(self, messages: list[dict[str, Any]], chain: list[str]) -> None:
        """On a cold start (the router not built yet: litellm still importing), let the local model's worker read the
        prompt meanwhile, when the local group is the one asked first: the call then finds it read."""
        if self._router is not None or not chain or chain[0] != "local":
            return
        from mikey.router.local import worker

        found = worker(self.settings)
        if found is not None:
            found.prefill(messages)

    def close(self) -> None:
        """Release the process-wide state this model set up: its ledger's registration with LiteLLM's callback and
        the response cache it installed (the one before it comes back). The model can be built again after."""
        from mikey.router.ledger import detach

        with self._build_lock:
            if self._ledger_key is not None:
                detach(self._ledger_key)
                self._ledger_key = None
            if self._cache is not None:
                import litellm

                if litellm.cache is self._cache:
                    litellm.cache = self._previous_cache
                self._cache = self._previous_cache = None
            self._router = None

    def _build(self) -> Any:
        from mikey.router import local, offline
        from mikey.router.providers import import_litellm, register

        litellm = import_litellm()
        from litellm import Router
        from litellm.types.router import AllowedFailsPolicy, RetryPolicy

        s = self.settings
        register("mikey-offline", offline.handler())
        register("mikey-local", local.handler(s, smollm2_path(s)))
        self._ledger_key = attach(self.ledger) if self.ledger is not None else None
        model_list = [
            {"model_name": g.name, "litellm_params": _litellm_params(d), "model_info": {"id": d.id}}
            for g in self.groups.values() for d in g.usable_deployments
        ]
        retries = s.num_retries
        # Auth and bad-request errors are not retried: they fail the same way again. 429s are retried after the
        # wait their Retry-After asks for; the Router reads that header itself.
        retry_policy = RetryPolicy(
            AuthenticationErrorRetries=0, BadRequestErrorRetries=0, ContentPolicyViolationErrorRetries=0,
            NotFoundErrorRetries=0, RateLimitErrorRetries=s.rate_limit_retries, TimeoutErrorRetries=retries,
            InternalServerErrorRetries=retries, ServiceUnavailableErrorRetries=retries, DefaultRetries=retries,
        )
        # Explicit per-error allowances, so a failing deployment cools down even when it is its group's only one.
        fails = s.allowed_fails
        allowed_fails_policy = AllowedFailsPolicy(
            AuthenticationErrorAllowedFails=0, TimeoutErrorAllowedFails=fails, RateLimitErrorAllowedFails=fails,
            InternalServerErrorAllowedFails=fails, BadRequestErrorAllowedFails=1000,
            ContentPolicyViolationErrorAllowedFails=1000,
        )
        extra: dict[str, Any] = {"redis_url": s.redis_url} if s.redis_url else {}  # shared cooldowns
        if s.cache_enabled:
            # LiteLLM's response cache is one per process (litellm.cache); requests opt in with caching=True.
            from litellm.caching.caching import Cache

            self._previous_cache = litellm.cache
            self._cache = litellm.cache = (Cache(type="redis", url=s.redis_url, ttl=s.cache_ttl_seconds)
                                           if s.redis_url else Cache(type="local", ttl=s.cache_ttl_seconds))
        if s.cooldown_seconds == 0:  # LiteLLM reads a zero cooldown time as "use the default"
            extra["disable_cooldowns"] = True
        return Router(model_list=model_list, num_retries=retries, retry_policy=retry_policy,
                      allowed_fails_policy=allowed_fails_policy, cooldown_time=s.cooldown_seconds,
                      timeout=s.request_timeout, stream_timeout=s.first_token_timeout, **extra)

    def cooldowns(self) -> dict[str, float]:
        """Seconds of cooldown left per deployment id (shared between processes only when Redis is configured)."""
        ids = [d.id for g in self.groups.values() for d in g.usable_deployments]
        now = time.time()
        active = self.router.health().cooldowns.get_active_cooldowns(ids, None)
        return {ident: max(0.0, float(v["timestamp"]) + float(v["cooldown_time"]) - now) for ident, v in active}

    # -- calls ----------------------------------------------------------------------------------------------------
    def complete(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None, response_format: Any = None, thread_id: str | None = None,
        exclude_families: frozenset[str] = frozenset(), only: bool = False, offline: bool = True,
        deadline: float | None = None, facts: Facts | None = None,
    ) -> Completion:
        """One answer for ``role``: the chain's first group that answers writes it.

        ``only`` asks ``group`` alone (no fallbacks); ``exclude_families`` keeps providers out (a judge must not share
        the family of the answer it judges). Groups whose worst-case cost would break a budget are not asked (the
        completion's ``notice`` says so); ``BudgetExceeded`` when that leaves none. Past ``deadline`` the call is
        abandoned with ``DeadlineExceeded``.
        """
        chain = [self.check_group(group).name] if only and group else self.chain(
            role, group, exclude_families=exclude_families, offline=offline)
        call = _Call(role, chain, max_tokens or self.settings.max_tokens, thread_id,
                     {k: v for k, v in {"tools": tools, "response_format": response_format}.items() if v is not None},
                     facts)
        call, notice = self._affordable(messages, replace(call, prompt=prompt_of(messages)))
        self._prefill(messages, call.chain)
        router = self.router  # built (litellm imported) before the deadline's clock matters: it is local work
        # The chain is walked here, one group per Router call (the Router retries and cools down deployments within
        # a group), so that the answer can say which group failed and how.
        failures: list[str] = []
        for index, name in enumerate(call.chain):
            attempt = replace(call, chain=[name])
            started = time.perf_counter()
            try:
                response = _before(deadline, lambda a=attempt: router.completion(**self._request(messages, a)), [name])
            except DeadlineExceeded:
                raise
            except Exception as exc:  # this group failed, whatever LiteLLM calls it; the next one is asked
                failures.append(f"{name}: {describe(exc)}")
                if index == len(call.chain) - 1:
                    raise _mapped(exc, call.chain, failures) from exc
                continue
            done = replace(self._completion(response, attempt, time.perf_counter() - started),
                           requested_group=chain[0], fallbacks=index, notice=notice, failures=tuple(failures))
            self._record(done, call)
            return done
        raise AssertionError("unreachable: a chain is never empty")

    def judge(self, messages: list[dict[str, Any]], *, judged: Completion, **kwargs: Any) -> Completion:
        """A ``judge`` call served by a provider family other than the one that wrote ``judged``."""
        return self.complete(messages, role="judge", exclude_families=frozenset({judged.family}), **kwargs)

    def stream(
        self, messages: list[dict[str, Any]], *, role: str, group: str | None = None, max_tokens: int | None = None,
        thread_id: str | None = None, deadline: float | None = None, facts: Facts | None = None,
    ) -> Iterator[StreamEvent]:
        """Tokens as they come, then ``DoneEvent``; a stream that breaks after its first token ends in ``ErrorEvent``.

        Before the first token, any failure moves on down the chain, exactly like ``complete``; so does a stream that
        ends with no text at all (a provider that answers a stream request with a truncated body). Past ``deadline``,
        ``DeadlineExceeded`` before the first token, ``ErrorEvent`` after it.
        """
        requested = self.chain(role, group)
        call, notice = self._affordable(messages, _Call(role, requested, max_tokens or self.settings.max_tokens,
                                                        thread_id, facts=facts))
        call = replace(call, prompt=prompt_of(messages))
        chain = call.chain
        remaining = list(chain)
        self._prefill(messages, chain)
        router = self.router  # built before the deadline's clock matters
        failures: list[str] = []
        while remaining:
            started = time.perf_counter()
            served = remaining[0]
            remaining = remaining[1:]
            attempt = _Call(role, [served], call.max_tokens, thread_id,
                            {"stream": True, "stream_options": {"include_usage": True}}, facts)
            pieces: list[str] = []
            usage: Any = None
            finished = False
            try:
                response = _before(deadline, lambda a=attempt: router.completion(**self._request(messages, a)),
                                   [served])
                for chunk in _until(deadline, response, served):
                    usage = getattr(chunk, "usage", None) or usage
                    choice = chunk.choices[0] if chunk.choices else None
                    text = getattr(choice.delta, "content", None) if choice is not None else None
                    finished = finished or bool(choice is not None and choice.finish_reason)
                    if text:
                        pieces.append(text)
                        yield TokenEvent(text)
            except DeadlineExceeded as exc:
                self._record_failure(call, served, exc)
                if not pieces:
                    raise
                yield ErrorEvent(f"the {served} stream did not finish before the deadline", served, len(pieces))
                return
            except Exception as exc:
                self._record_failure(call, served, exc)
                failures.append(f"{served}: {describe(exc)}")
                if not pieces:  # nothing shown yet: the next group may still answer in full
                    if not remaining:
                        raise _mapped(exc, chain, failures) from exc
                    continue
                yield ErrorEvent(f"the {served} stream broke after {len(pieces)} chunks ({describe(exc)})",
                                 served, len(pieces))
                return
            if not "".join(pieces).strip():  # a stream with no words is a failed call, like a refused connection
                empty = ProviderUnavailable("the stream ended without any text")
                self._record_failure(call, served, empty)
                failures.append(f"{served}: {empty}")
                continue
            if not finished:
                yield ErrorEvent(f"the {served} stream ended after {len(pieces)} chunks without finishing",
                                 served, len(pieces))
                return
            done = Completion(
                text="".join(pieces).strip(), group=served, model=_deployment_model(self.groups, served),
                requested_group=requested[0], fallbacks=chain.index(served),
                prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                latency_s=time.perf_counter() - started, family=self.groups[served].family, notice=notice,
                failures=tuple(failures),
            )
            self._record(done, call)
            yield DoneEvent(done)
            return
        raise ProviderUnavailable(f"no model in the chain {' -> '.join(chain)} answered the stream: "
                                  + "; ".join(failures))

    def structured(
        self, messages: list[dict[str, Any]], schema: type[T], *, role: str, group: str | None = None,
        groups: list[str] | None = None, thread_id: str | None = None, max_tokens: int | None = None,
        deadline: float | None = None,
    ) -> tuple[T, Completion]:
        """A validated ``schema`` instance: each group gets one repair retry with the validation error, then the next
        group is asked. The offline writer is never asked (it writes prose, not data).
        """
        chain = groups or self.chain(role, group, offline=False)
        problems: list[str] = []
        for name in chain:
            attempt = messages  # never changed, only extended: rendered messages keep their prompt tag
            for repair in (False, True):
                try:
                    done = self.complete(attempt, role=role, group=name, only=True, response_format=schema,
                                         thread_id=thread_id, max_tokens=max_tokens, deadline=deadline)
                except DeadlineExceeded:
                    raise
                except (ProviderError, ConfigError, BudgetExceeded) as exc:
                    problems.append(f"{name}: {exc}")
                    break
                try:
                    return schema.model_validate_json(_json_text(done.text)), done
                except ValidationError as exc:
                    problems.append(f"{name}{' (repaired)' if repair else ''}: {_summary(exc)}")
                    attempt = attempt + [
                        {"role": "assistant", "content": done.text},
                        {"role": "user", "content": "That reply does not match the required JSON schema: "
                                                    f"{_summary(exc)}. Reply with the corrected JSON object only."},
                    ]
        raise InvalidModelOutput(f"no model produced a valid {schema.__name__}: " + "; ".join(problems))

    # -- helpers --------------------------------------------------------------------------------------------------
    def _request(self, messages: list[dict[str, Any]], call: _Call) -> dict[str, Any]:
        # LiteLLM's response cache is process-wide; each request says whether it may use it. The typed facts ride in
        # the metadata, which reaches MIKEY's own providers (the offline writer renders them) and no HTTP provider.
        metadata = {"role": call.role, "thread_id": call.thread_id, "ledger": self._ledger_key,
                    "prompt_ref": prompt_of(messages)}
        if call.facts is not None:
            metadata["facts"] = call.facts
        return {"model": call.chain[0], "messages": messages, "fallbacks": call.chain[1:],
                "max_tokens": call.max_tokens, "metadata": metadata, "caching": self.settings.cache_enabled,
                **call.extra}

    def _completion(self, response: Any, call: _Call, latency_s: float) -> Completion:
        hidden = getattr(response, "_hidden_params", {}) or {}
        served = _served_group(response, call.chain[0])
        usage = getattr(response, "usage", None)
        message = response.choices[0].message
        return Completion(
            text=(message.content or "").strip(),
            group=served,
            model=str(hidden.get("litellm_model_name") or response.model),
            requested_group=call.chain[0],
            fallbacks=int(((hidden.get("additional_headers") or {}).get("x-litellm-attempted-fallbacks")) or 0),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency_s,
            deployment=str(hidden.get("model_id") or ""),
            cost_usd=float(hidden.get("response_cost") or 0.0),
            cache_hit=bool(hidden.get("cache_hit")),
            family=self.groups[served].family if served in self.groups else "other",
            tool_calls=_tool_calls(message),
        )

    def _record(self, done: Completion, call: _Call) -> None:
        if self.ledger is not None:
            self.ledger.record(CallRecord(
                role=call.role, model_group=done.group, deployment=done.deployment or done.group, model=done.model,
                outcome="ok", tokens_in=done.prompt_tokens, tokens_out=done.completion_tokens,
                cost_usd=0.0 if done.cache_hit else done.cost_usd, latency_ms=done.latency_s * 1000,
                cache_hit=done.cache_hit, thread_id=call.thread_id, prompt=call.prompt,
            ))

    def _record_failure(self, call: _Call, group: str, exc: BaseException) -> None:
        if self.ledger is not None:
            self.ledger.record(CallRecord(role=call.role, model_group=group, deployment=group,
                                          model=_deployment_model(self.groups, group), outcome="error",
                                          error=describe(exc), thread_id=call.thread_id, prompt=call.prompt))

    def _affordable(self, messages: list[dict[str, Any]], call: _Call) -> tuple[_Call, str | None]:
        """The call without the groups whose worst-case cost would break a budget, and why they were dropped.

        Free groups (the local model, the offline writer) always fit. ``BudgetExceeded`` when no group fits: the
        call is not sent.
        """
        s = self.settings
        if self.ledger is None or (s.budget_per_day_usd is None and (s.budget_per_thread_usd is None
                                                                      or call.thread_id is None)):
            return call, None
        checks = [("day", s.budget_per_day_usd, self.ledger.spent(day=utc_day(time.time())))]
        if call.thread_id is not None:
            checks.append((f"thread {call.thread_id}", s.budget_per_thread_usd,
                           self.ledger.spent(thread_id=call.thread_id)))
        kept: list[str] = []
        refused: list[str] = []
        for group in call.chain:
            estimate = self.estimate_cost(messages, [group], call.max_tokens)
            broken = next(((scope, limit, spent) for scope, limit, spent in checks
                           if limit is not None and spent + estimate > limit), None)
            if broken is None:
                kept.append(group)
                continue
            scope, limit, spent = broken
            refused.append(f"{group} was not asked: the {scope} budget of ${limit:.4f} would be exceeded: spent "
                           f"${spent:.4f}, this {call.role} call may cost up to ${estimate:.4f}")
        if not kept:
            raise BudgetExceeded("; ".join(refused) + "; nothing was sent")
        return replace(call, chain=kept), ("; ".join(refused) + ".") if refused else None

    def estimate_cost(self, messages: list[dict[str, Any]], chain: list[str], max_tokens: int) -> float:
        """Worst-case USD of a call: the dearest deployment in the chain, full ``max_tokens`` of output.

        Input tokens are estimated at one per 3 characters (above any real tokenizer's count for English and JSON),
        so the check needs no tokenizer download.
        """
        tokens_in = math.ceil(sum(len(str(m.get("content") or "")) for m in messages) / 3)
        return max((tokens_in * i + max_tokens * o for g in chain for d in self.groups[g].usable_deployments
                    for i, o in [_prices(d.params)]), default=0.0)


def _litellm_params(deployment: Deployment) -> dict[str, Any]:
    """The deployment's params, with total and connect timeouts as one ``httpx.Timeout`` for HTTP providers."""
    params = dict(deployment.params)
    if deployment.connect_timeout is not None and isinstance(params.get("timeout"), int | float):
        import httpx

        params["timeout"] = httpx.Timeout(float(params["timeout"]), connect=deployment.connect_timeout)
    return params


def _prices(params: dict[str, Any]) -> tuple[float, float]:
    if "input_cost_per_token" in params or "output_cost_per_token" in params:
        return float(params.get("input_cost_per_token") or 0), float(params.get("output_cost_per_token") or 0)
    import litellm

    try:
        info = litellm.get_model_info(str(params["model"]))
    except Exception:  # a model LiteLLM's price map does not know costs nothing we can know
        return 0.0, 0.0
    return float(info.get("input_cost_per_token") or 0), float(info.get("output_cost_per_token") or 0)


def _served_group(response: Any, default: str) -> str:
    hidden = getattr(response, "_hidden_params", {}) or {}
    return str((hidden.get("additional_headers") or {}).get("x-litellm-model-group") or default)


def _deployment_model(groups: dict[str, GroupStatus], group: str) -> str:
    deployments = groups[group].usable_deployments if group in groups else []
    return deployments[0].model if deployments else group


def _tool_calls(message: Any) -> tuple[ToolCall, ...]:
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        raw = call.function.arguments or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except json.JSONDecodeError as exc:
            raise InvalidModelOutput(f"tool call {call.function.name!r} has invalid JSON arguments: {exc}") from exc
        calls.append(ToolCall(id=str(call.id), name=str(call.function.name), arguments=arguments))
    return tuple(calls)


def _json_text(text: str) -> str:
    """The JSON object in a reply, without the Markdown fences some models wrap it in."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'root'}: {e['msg']}" for e in exc.errors()[:5])


def _mapped(exc: BaseException, chain: list[str], failures: list[str] | None = None) -> ProviderError:
    import litellm

    tried = " -> ".join(chain)
    why = "; ".join(failures) if failures else describe(exc)
    if isinstance(exc, litellm.RateLimitError):
        return RateLimited(f"rate limited and no fallback answered (chain {tried}): {why}")
    return ProviderUnavailable(f"no model in the chain {tried} answered: {why}")


def _before(deadline: float | None, call: Any, chain: list[str]) -> Any:
    """``call()``, or ``DeadlineExceeded`` if it has not returned by ``deadline`` (it is then abandoned in a daemon
    thread: a blocking HTTP call cannot be interrupted, but nobody waits for it)."""
    if deadline is None:
        return call()
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"the turn's deadline passed before {' -> '.join(chain)} was asked")
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            box.put((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box.put((False, exc))

    threading.Thread(target=run, daemon=True, name="mikey-model-call").start()
    try:
        ok, value = box.get(timeout=left)
    except queue.Empty:
        raise DeadlineExceeded(f"no model in the chain {' -> '.join(chain)} answered before the turn's deadline") \
            from None
    if ok:
        return value
    raise value


def _until(deadline: float | None, chunks: Any, group: str) -> Iterator[Any]:
    """The stream's chunks, each awaited no later than ``deadline``; past it the stream is abandoned to one daemon
    thread that reads it to its end (a blocking read cannot be interrupted, but nobody waits for it)."""
    if deadline is None:
        yield from chunks
        return
    box: queue.Queue[tuple[Literal["chunk", "end", "error"], Any]] = queue.Queue()

    def pump() -> None:
        try:
            for chunk in chunks:
                box.put(("chunk", chunk))
            box.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            box.put(("error", exc))

    threading.Thread(target=pump, daemon=True, name="mikey-model-stream").start()
    while True:
        try:
            kind, value = box.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise DeadlineExceeded(f"the {group} stream did not finish before the turn's deadline") from None
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value
