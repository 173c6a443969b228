"""Prompts are data: ``mikey/prompts/<graph>/<name>.yaml`` files loaded into a strict model.

The YAML files are package data (``pyproject.toml``), read with ``importlib.resources``, so an installed wheel
carries them. A prompt declares its variables; loading fails when a template uses an undeclared one or declares one
it never uses, and rendering fails when a variable is missing or unknown. The version travels with every rendered
prompt: ``render`` returns ``PromptMessages`` tagged ``name@version``, which the chat model writes into the ledger.
"""

from __future__ import annotations

import string
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from mikey.errors import ConfigError
from mikey.router.messages import PromptMessages


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Prompt(BaseModel):
    """A versioned prompt: system and user templates over declared variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    description: str = ""
    variables: list[str]
    system: str
    user: str

    @model_validator(mode="after")
    def _variables_match(self) -> Prompt:
        used = _fields(self.system) | _fields(self.user)
        declared = set(self.variables)
        if used != declared:
            raise ValueError(
                f"prompt {self.name}: undeclared {sorted(used - declared)}, unused {sorted(declared - used)}"
            )
        return self

    @property
    def ref(self) -> str:
        """``name@version``, as the ledger records it (e.g. ``chat.analyze@2``)."""
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> PromptMessages:
        """Chat messages with the variables filled in, tagged with ``ref``. Raises ``ConfigError`` on missing or
        unknown variables."""
        given, declared = set(values), set(self.variables)
        if given != declared:
            raise ConfigError(
                f"prompt {self.name} v{self.version}: "
                f"missing {sorted(declared - given)}, unknown {sorted(given - declared)}"
            )
        return PromptMessages([
            {"role": "system", "content": self.system.format(**values).strip()},
            {"role": "user", "content": self.user.format(**values).strip()},
        ], self.ref)


def bundled_prompts() -> Traversable:
    """The prompts folder inside the installed ``mikey`` package."""
    return files("mikey") / "prompts"


@lru_cache(maxsize=32)
def load_prompt(ref: str, prompts_dir: Path | None = None) -> Prompt:
    """Load ``<graph>/<name>`` (e.g. ``chat/analyze``) from the bundled prompts, or from ``prompts_dir``."""
    import yaml

    folder: Traversable = bundled_prompts() if prompts_dir is None else prompts_dir
    path = folder / f"{ref}.yaml"
    if not path.is_file():
        raise ConfigError(f"prompt {ref!r} not found at {path}")
    try:
        return Prompt.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise ConfigError(f"prompt {ref!r} is invalid: {exc}") from exc
