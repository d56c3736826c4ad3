"""Secrets by reference: ``${env:NAME}`` in action parameters and settings.

Records and config hold references only; the executor resolves them at send time, so a secret
never lands in Kafka, in the dead-letter topic, or in a log line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_REFERENCE: Final = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REFERENCE: Final = re.compile(r"\$\{([^}]*)\}")


class SecretNotSet(LookupError):
    """A ``${env:NAME}`` reference names a variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"secret reference ${{env:{self.name}}} cannot be resolved: environment variable "
            f"{self.name} is not set in the executor's environment; set it and restart"
        )


class BadSecretReference(ValueError):
    """A ``${...}`` that is not of the form ``${env:NAME}``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"bad secret reference {self.text!r}: expected ${{env:NAME}}"


def has_references(value: Any) -> bool:
    """True if ``value`` (a string or nested JSON) contains a ``${env:NAME}`` reference."""
    if isinstance(value, str):
        return _REFERENCE.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_references(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_references(v) for v in value)
    return False


def resolve_secrets(value: Any, env: Mapping[str, str]) -> Any:
    """Replace every ``${env:NAME}`` in the strings of ``value`` (nested JSON) with ``env[NAME]``.

    Keys of mappings are left as they are; only values are resolved.

    Raises:
        SecretNotSet: a referenced variable is missing from ``env``.
        BadSecretReference: a ``${...}`` is not an ``env:`` reference.
    """
    if isinstance(value, str):
        return _resolve_text(value, env)
    if isinstance(value, Mapping):
        return {k: resolve_secrets(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_secrets(v, env) for v in value]
    return value


def _resolve_text(text: str, env: Mapping[str, str]) -> str:
    if "${" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        inner = _REFERENCE.fullmatch(match.group(0))
        if inner is None:
            raise BadSecretReference(match.group(0))
        name = inner.group(1)
        if name not in env:
            raise SecretNotSet(name)
        return env[name]

    return _ANY_REFERENCE.sub(replace, text)
