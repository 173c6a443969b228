"""Settings: one object read from MIKEY_* variables (and the providers' usual key names), validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from mikey.settings import Settings

PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment with no MIKEY_* settings and no provider keys."""
    for name in list(os.environ):
        if name.startswith("MIKEY_") or name in PROVIDER_KEYS:
            monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    """Out of the box: no group forced first (each role's chain decides), no keys, bundled replay at its last bar."""
    settings = Settings(home=tmp_path)

    assert settings.default_model is None
    assert settings.roles["default"] == ["gpt-4", "claude", "gemini", "local", "offline"]
    assert settings.ledger_db == tmp_path / "ledger.sqlite"
    assert settings.openai_api_key is None
    assert settings.anthropic_api_key is None
    assert settings.gemini_api_key is None
    assert settings.replay_dir is None
    assert settings.as_of is None
    assert settings.state_db == tmp_path / "state.sqlite"
    assert settings.chroma_dir == tmp_path / "chroma"


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every field reads from MIKEY_<FIELD>."""
    monkeypatch.setenv("MIKEY_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MIKEY_DEFAULT_MODEL", "claude")
    monkeypatch.setenv("MIKEY_AS_OF", "2022-06-01")

    settings = Settings()

    assert settings.home == tmp_path / "h"
    assert settings.default_model == "claude"
    assert str(settings.as_of) == "2022-06-01"


def test_unprefixed_field_names_are_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only MIKEY_DEFAULT_MODEL configures the default; a bare DEFAULT_MODEL belongs to someone else."""
    monkeypatch.setenv("DEFAULT_MODEL", "claude")

    assert Settings(home=tmp_path).default_model is None


def test_provider_key_alias_is_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OPENAI_API_KEY is read as a SecretStr, and neither repr nor str of the settings shows it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abc123")

    settings = Settings(home=tmp_path)

    assert isinstance(settings.openai_api_key, SecretStr)
    assert settings.openai_api_key.get_secret_value() == "sk-live-abc123"
    assert "sk-live-abc123" not in repr(settings)
    assert "sk-live-abc123" not in str(settings)


@pytest.mark.parametrize(("env", "field"), [("ANTHROPIC_API_KEY", "anthropic_api_key"),
                                            ("GEMINI_API_KEY", "gemini_api_key"),
                                            ("MIKEY_OPENAI_API_KEY", "openai_api_key")])
def test_other_key_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, field: str) -> None:
    monkeypatch.setenv(env, "secret-value")

    assert getattr(Settings(home=tmp_path), field).get_secret_value() == "secret-value"


def test_prefixed_key_wins_over_provider_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MIKEY_OPENAI_API_KEY lets MIKEY use a different key than other tools in the same shell."""
    monkeypatch.setenv("OPENAI_API_KEY", "shared")
    monkeypatch.setenv("MIKEY_OPENAI_API_KEY", "mikey-only")

    assert Settings(home=tmp_path).openai_api_key.get_secret_value() == "mikey-only"


def test_unknown_default_model_names_the_groups(tmp_path: Path) -> None:
    """The error lists the valid groups, so the fix is in the message."""
    expected = "unknown model group 'gpt-5'; groups: gpt-4, claude, gemini, local, offline"
    with pytest.raises(ValidationError, match=expected):
        Settings(home=tmp_path, default_model="gpt-5")


def test_unknown_default_model_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A typo in the environment fails at start-up, not at the first chat."""
    monkeypatch.setenv("MIKEY_DEFAULT_MODEL", "GPT-4")

    with pytest.raises(ValidationError, match="unknown model group 'GPT-4'"):
        Settings(home=tmp_path)


@pytest.mark.parametrize(("field", "value"), [("min_grounding", 1.5), ("local_threads", 0), ("request_timeout", 0)])
def test_out_of_range_values_are_rejected(tmp_path: Path, field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(home=tmp_path, **{field: value})
