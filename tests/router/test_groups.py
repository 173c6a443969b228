"""Model groups: which can be asked, why not, and the fallback chain that always ends in an answer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mikey.router.groups import LOCAL_MODEL, OFFLINE_MODEL, fallback_chain, model_groups
from mikey.settings import MODEL_GROUPS, Settings

HOSTED = [("gpt-4", "OPENAI_API_KEY"), ("claude", "ANTHROPIC_API_KEY"), ("gemini", "GEMINI_API_KEY")]


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell must not decide which groups are usable."""
    for name in list(os.environ):
        if name.startswith("MIKEY_") or name in {key for _, key in HOSTED}:
            monkeypatch.delenv(name, raising=False)


def test_groups_are_listed_in_settings_order(tmp_path: Path) -> None:
    assert tuple(model_groups(Settings(home=tmp_path))) == MODEL_GROUPS


@pytest.mark.parametrize(("group", "key_env"), HOSTED)
def test_hosted_groups_without_keys_are_unusable(tmp_path: Path, group: str, key_env: str) -> None:
    """Without a key a hosted group cannot be asked, and the reason names the variable to set."""
    status = model_groups(Settings(home=tmp_path))[group]

    assert status.usable is False
    assert status.reason == f"{key_env} is not set"
    assert "api_key" not in status.deployments[0]


def test_offline_is_always_usable(tmp_path: Path) -> None:
    status = model_groups(Settings(home=tmp_path))["offline"]

    assert status.usable is True
    assert status.deployments == [{"model": OFFLINE_MODEL}]


def test_openai_key_makes_gpt4_usable(tmp_path: Path) -> None:
    """The key is handed to the deployment in clear (LiteLLM needs it), with the configured model and timeout."""
    groups = model_groups(Settings(home=tmp_path, openai_api_key="sk-test-123", request_timeout=12))

    gpt4 = groups["gpt-4"]
    assert gpt4.usable is True
    assert gpt4.deployments == [{"model": "openai/gpt-4o", "timeout": 12.0, "api_key": "sk-test-123"}]
    assert groups["claude"].usable is False


def test_api_base_is_passed_to_the_deployment(tmp_path: Path) -> None:
    groups = model_groups(Settings(home=tmp_path, anthropic_api_key="k", anthropic_api_base="http://127.0.0.1:9/"))

    assert groups["claude"].deployments[0]["api_base"] == "http://127.0.0.1:9/"


def test_local_server_makes_local_usable(tmp_path: Path) -> None:
    """An OpenAI-compatible server replaces the in-process model, whatever is installed."""
    url = "http://127.0.0.1:11434/v1"
    local = model_groups(Settings(home=tmp_path, local_api_base=url, local_server_model="qwen"))["local"]

    assert local.usable is True
    assert local.deployments[0]["api_base"] == url
    assert local.deployments[0]["model"] == "openai/qwen"
    assert url in local.reason


def test_missing_weights_file_makes_local_unusable(tmp_path: Path) -> None:
    """A configured GGUF path that does not exist is reported, not discovered at the first chat."""
    missing = tmp_path / "nope.gguf"
    local = model_groups(Settings(home=tmp_path, local_model_path=missing))["local"]

    assert local.usable is False
    assert str(missing) in local.reason or "llama-cpp-python is not installed" in local.reason
    assert local.deployments == [{"model": LOCAL_MODEL, "timeout": 60.0}]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_existing_weights_file_makes_local_usable(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")

    local = model_groups(Settings(home=tmp_path, local_model_path=weights))["local"]

    assert local.usable is True
    assert local.reason == "weights at model.gguf"


def test_fallback_chain_with_local(tmp_path: Path) -> None:
    """A hosted group falls back to the local model, then to the offline writer."""
    groups = model_groups(Settings(home=tmp_path, local_api_base="http://127.0.0.1:8080/v1"))

    assert fallback_chain("gpt-4", groups) == ["gpt-4", "local", "offline"]
    assert fallback_chain("local", groups) == ["local", "offline"]


def test_offline_is_last_even_when_asked_first(tmp_path: Path) -> None:
    """The deterministic writer is the last fallback of every chain: nothing, least of all a model, may follow it.

    Otherwise a failure of the offline writer (e.g. a prompt without a facts block) would hand the turn to the local
    model, whose words the user explicitly did not ask for.
    """
    groups = model_groups(Settings(home=tmp_path, local_api_base="http://127.0.0.1:8080/v1"))

    assert fallback_chain("offline", groups) == ["offline"]


def test_fallback_chain_skips_unusable_local(tmp_path: Path) -> None:
    """An unusable local model is left out, so the chain still ends in an answer."""
    groups = model_groups(Settings(home=tmp_path, local_model_path=tmp_path / "missing.gguf"))

    assert fallback_chain("gpt-4", groups) == ["gpt-4", "offline"]
    assert fallback_chain("claude", groups) == ["claude", "offline"]
