"""Prompts are data: ``prompts/<graph>/<name>.yaml`` files loaded into a strict model.

A prompt declares its variables; loading fails when a template uses an undeclared one or declares one it never uses,
and rendering fails when a variable is missing or unknown. The version travels with every rendered prompt.
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from mikey.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


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

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with the variables filled in. Raises ``ConfigError`` on missing or unknown variables."""
        given, declared = set(values), set(self.variables)
        if given != declared:
            raise ConfigError(
                f"prompt {self.name} v{self.version}: "
                f"missing {sorted(declared - given)}, unknown {sorted(given - declared)}"
            )
        return [
            {"role": "system", "content": self.system.format(**values).strip()},
            {"role": "user", "content": self.user.format(**values).strip()},
        ]


@lru_cache(maxsize=32)
def load_prompt(ref: str, prompts_dir: Path = PROMPTS_DIR) -> Prompt:
    """Load ``<graph>/<name>`` (e.g. ``chat/analyze``) from the prompts folder."""
    import yaml

    path = prompts_dir / f"{ref}.yaml"
    if not path.is_file():
        raise ConfigError(f"prompt {ref!r} not found at {path}")
    try:
        return Prompt.model_validate(yaml.safe_load(path.read_text()))
    except ValueError as exc:
        raise ConfigError(f"prompt {ref!r} is invalid: {exc}") from exc
