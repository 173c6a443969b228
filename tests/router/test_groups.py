"""Model groups: which can be asked, why not, and the role chains that always end in an answer."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mikey.router.groups import LOCAL_MODEL, OFFLINE_MODEL, model_groups, role_chain
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
    assert "api_key" not in status.deployments[0].params


def test_offline_is_always_usable(tmp_path: Path) -> None:
    status = model_groups(Settings(home=tmp_path))["offline"]

    assert status.usable is True
    assert [d.params for d in status.deployments] == [{"model": OFFLINE_MODEL}]
    assert status.family == "offline"


def test_openai_key_makes_gpt4_usable(tmp_path: Path) -> None:
    """The key is handed to the deployment in clear (LiteLLM needs it), with the configured model and timeout."""
    groups = model_groups(Settings(home=tmp_path, openai_api_key="sk-test-123", request_timeout=12))

    gpt4 = groups["gpt-4"]
    assert gpt4.usable is True
    assert gpt4.deployments[0].params == {"model": "openai/gpt-4o", "timeout": 12.0, "stream_timeout": 20.0,
                                          "weight": 1, "api_key": "sk-test-123"}
    assert (gpt4.deployments[0].id, gpt4.family) == ("gpt-4#0", "openai")
    assert groups["claude"].usable is False


def test_api_base_is_passed_to_the_deployment(tmp_path: Path) -> None:
    groups = model_groups(Settings(home=tmp_path, anthropic_api_key="k", anthropic_api_base="http://127.0.0.1:9/"))

    assert groups["claude"].deployments[0].params["api_base"] == "http://127.0.0.1:9/"
    assert groups["claude"].family == "anthropic"


def test_local_server_makes_local_usable(tmp_path: Path) -> None:
    """An OpenAI-compatible server replaces the in-process model, whatever is installed."""
    url = "http://127.0.0.1:11434/v1"
    local = model_groups(Settings(home=tmp_path, local_api_base=url, local_server_model="qwen"))["local"]

    assert local.usable is True
    assert local.deployments[0].params["api_base"] == url
    assert local.deployments[0].params["model"] == "openai/qwen"
    assert local.family == "local"  # an OpenAI-compatible server in the local group is not the OpenAI family
    assert url in local.reason


def test_missing_weights_file_makes_local_unusable(tmp_path: Path) -> None:
    """A configured GGUF path that does not exist is reported, not discovered at the first chat."""
    missing = tmp_path / "nope.gguf"
    local = model_groups(Settings(home=tmp_path, local_model_path=missing))["local"]

    assert local.usable is False
    assert str(missing) in local.reason or "llama-cpp-python is not installed" in local.reason
    assert [d.params for d in local.deployments] == [{"model": LOCAL_MODEL, "timeout": 60.0}]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_existing_weights_file_makes_local_usable(tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF")

    local = model_groups(Settings(home=tmp_path, local_model_path=weights))["local"]

    assert local.usable is True
    assert local.reason == "weights at model.gguf"


def test_default_chain_skips_unusable_groups(tmp_path: Path) -> None:
    """Without keys every role starts at the local model and ends at the offline writer."""
    settings = Settings(home=tmp_path, local_api_base="http://127.0.0.1:8080/v1")
    groups = model_groups(settings)

    assert role_chain(settings, groups, "analyze") == ["local", "offline"]
    assert role_chain(settings, groups, "analyze", first="offline") == ["offline"]


def test_hosted_groups_lead_the_chain_when_keys_are_set(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, openai_api_key="a", gemini_api_key="g", local_api_base="http://127.0.0.1:1/v1")
    groups = model_groups(settings)

    assert role_chain(settings, groups, "chat") == ["gpt-4", "gemini", "local", "offline"]
    assert role_chain(settings, groups, "chat", first="gemini") == ["gemini", "gpt-4", "local", "offline"]
    assert role_chain(settings, groups, "chat", offline=False) == ["gpt-4", "gemini", "local"]


def test_offline_is_last_even_when_asked_first(tmp_path: Path) -> None:
    """The deterministic writer is the last fallback of every chain: nothing, least of all a model, may follow it.

    Otherwise a failure of the offline writer (e.g. a prompt without a facts block) would hand the turn to the local
    model, whose words the user explicitly did not ask for.
    """
    settings = Settings(home=tmp_path, local_api_base="http://127.0.0.1:8080/v1")
    groups = model_groups(settings)

    assert role_chain(settings, groups, "analyze", first="offline") == ["offline"]


def test_unusable_local_is_left_out(tmp_path: Path) -> None:
    """An unusable local model is left out, so the chain still ends in an answer."""
    settings = Settings(home=tmp_path, local_model_path=tmp_path / "missing.gguf", anthropic_api_key="k")
    groups = model_groups(settings)

    assert role_chain(settings, groups, "analyze", first="claude") == ["claude", "offline"]


def test_judge_chain_excludes_the_judged_family(tmp_path: Path) -> None:
    """A judge must never come from the provider family that wrote the answer it judges."""
    settings = Settings(home=tmp_path, openai_api_key="a", anthropic_api_key="b", gemini_api_key="c")
    groups = model_groups(settings)

    assert role_chain(settings, groups, "judge", exclude_families=frozenset({"anthropic"}), offline=False)[:2] == [
        "gemini", "gpt-4"]
    assert "claude" not in role_chain(settings, groups, "judge", exclude_families=frozenset({"anthropic"}))


def test_extra_deployments_join_their_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments from settings: a second OpenAI key by env var, and an Ollama server by URL."""
    monkeypatch.setenv("OPENAI_KEY_2", "sk-two")
    settings = Settings(home=tmp_path, openai_api_key="sk-one", deployments=[
        {"group": "gpt-4", "model": "openai/gpt-4o-mini", "api_key_env": "OPENAI_KEY_2", "rpm": 60, "weight": 3,
         "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        {"group": "gpt-4", "model": "openai/gpt-4o", "api_key_env": "OPENAI_KEY_3"},
        {"group": "local", "model": "openai/llama3", "api_base": "http://127.0.0.1:11434/v1", "timeout": 7},
    ])
    groups = model_groups(settings)

    first, second, third = groups["gpt-4"].deployments
    assert second.id == "gpt-4#1" and second.usable
    assert second.params == {"model": "openai/gpt-4o-mini", "timeout": 60.0, "stream_timeout": 20.0, "weight": 3,
                             "rpm": 60, "api_key": "sk-two", "input_cost_per_token": 1e-6,
                             "output_cost_per_token": 2e-6}
    assert (third.usable, third.reason) == (False, "OPENAI_KEY_3 is not set")
    ollama = groups["local"].deployments[1]
    assert ollama.usable and ollama.params["api_base"] == "http://127.0.0.1:11434/v1" and ollama.params["timeout"] == 7
    assert ollama.family == "local"


def test_unknown_group_in_a_deployment_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown model group 'gpt-5'"):
        Settings(home=tmp_path, deployments=[{"group": "gpt-5", "model": "openai/x"}])
