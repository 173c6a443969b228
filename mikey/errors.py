"""MIKEY's error tree. Every error the product raises on purpose is one of these.

::

    MikeyError
    ├── ConfigError                 bad or missing settings, unusable model group
    ├── ProviderError               an LLM provider failed
    │   ├── RateLimited
    │   ├── ProviderUnavailable     unreachable, timed out, every fallback failed
    │   ├── DeadlineExceeded        no answer before the turn's deadline
    │   └── InvalidModelOutput      a reply that does not fit the schema asked for, even after repair
    ├── BudgetExceeded              a call would break a spend limit; it is not sent
    ├── DataUnavailable             no data for the request
    │   ├── UnknownSymbol           a market MIKEY does not cover
    │   ├── StalePrice
    │   ├── FeedError               a data source failed: HTTP error, timeout, malformed or incomplete payload
    │   └── InvalidPrice            a price failed validation (see PriceCheck reasons)
    ├── InvalidInput                a request that cannot be served as asked (empty message, ...)
    ├── ToolError                   a tool failed while gathering facts
    ├── RiskLimitExceeded
    └── ApprovalRequired            a trade needs a human's approval first

Entry points map these to one-line messages (CLI) or HTTP codes (API); nothing converts them into default values.
"""

from __future__ import annotations


class MikeyError(Exception):
    """Base of every error MIKEY raises on purpose; its message is meant for the user."""


class ConfigError(MikeyError):
    """Settings are invalid, or a requested model group cannot be used."""


class ProviderError(MikeyError):
    """An LLM provider failed to produce an answer."""


class RateLimited(ProviderError):
    """A provider refused the call for rate limits."""


class ProviderUnavailable(ProviderError):
    """A provider could not be reached, timed out, or every deployment in the chain failed."""


class DeadlineExceeded(ProviderUnavailable):
    """No model answered before the deadline of the turn that asked; the call was abandoned."""


class InvalidModelOutput(ProviderError):
    """Every group asked returned output that does not validate against the requested schema."""


class BudgetExceeded(MikeyError):
    """A model call would exceed a per-thread or per-day budget, so it was not sent."""


class DataUnavailable(MikeyError):
    """The data a request needs does not exist (for the symbol, the time, or at all)."""


class UnknownSymbol(DataUnavailable):
    """A market symbol MIKEY does not cover."""

    def __init__(self, symbol: str, supported: list[str]) -> None:
        self.symbol = symbol
        self.supported = supported
        super().__init__(f"unknown market {symbol!r}; supported markets: {', '.join(supported)}")


class StalePrice(DataUnavailable):
    """The newest price is older than the staleness limit."""


class FeedError(DataUnavailable):
    """A market-data source failed: HTTP error, timeout, malformed JSON, missing fields, unknown feed id."""


class InvalidPrice(DataUnavailable):
    """A price was rejected by validation; the message lists the ``PriceCheck`` reasons."""


class InvalidInput(MikeyError):
    """The request itself is malformed (empty message, bad parameter)."""


class ToolError(MikeyError):
    """A tool failed while gathering facts."""


class RiskLimitExceeded(MikeyError):
    """A proposed trade breaks a configured risk limit."""


class ApprovalRequired(MikeyError):
    """A trade cannot proceed without a human's approval."""


class NotFound(MikeyError):
    """The thing asked for (a proposal, a position, an account) does not exist."""


class OrderRejected(MikeyError):
    """The broker or the on-chain program refused an order; nothing executed. The message is the broker's own."""


class GateFailed(OrderRejected):
    """A pre-submission gate (risk, oracle, slippage, limits, daily loss, halt) refused the order; names the gate."""


class BrokerUnavailable(MikeyError):
    """The broker could not be reached or did not answer in time: whether the order executed is unknown until a
    reconciliation looks it up."""


class WalletError(MikeyError):
    """The signing key could not be imported or unlocked (wrong passphrase, corrupt file, no wallet)."""
