"""Loading ``zapflow.yaml``: YAML, environment overrides and secret references.

Every stage reads its own section of one file. This module knows nothing about the
sections; it gives them a typed reader (:class:`ConfigSection`) whose errors name the
file (or the environment variable), the key and the fix, because the person reading
them is an operator at a terminal, not a programmer at a debugger.

Environment overrides: ``ZAPFLOW_<KEY>__<SUBKEY>=value`` replaces ``key.subkey`` (keys
upper-cased, ``__`` between levels, e.g. ``ZAPFLOW_KAFKA__BOOTSTRAP_SERVERS``; a name
without ``__``, such as ``ZAPFLOW_OPS_WEBHOOK``, is not an override). The value
is read as a YAML scalar or flow collection, so ``8``, ``true`` and ``[a, b]`` mean what
they look like.

Secrets are never written in the file itself but referenced: ``${env:NAME}`` (an
environment variable) or ``${file:PATH}`` (a file, relative to the config file, trailing
newline removed). They resolve into :class:`Secret`, whose ``repr`` and ``str`` hide the
value so that it cannot end up in a log line by accident.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

ENV_PREFIX: Final = "ZAPFLOW_"

_SECRET_REF = re.compile(r"^\$\{(env|file):([^}]+)\}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_DURATION_UNITS: Final = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS: Final = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


class ConfigError(Exception):
    """A configuration value that cannot be used.

    Attributes:
        origin: where the value came from: the file path or ``environment ZAPFLOW_…``.
        key: the dotted key path, e.g. ``kafka.partitions`` or ``instances[1].token``.
        problem: what is wrong, with the value found.
        fix: what to do about it.
    """

    def __init__(self, origin: str, key: str, problem: str, fix: str = "") -> None:
        super().__init__(origin, key, problem, fix)
        self.origin = origin
        self.key = key
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        where = f"{self.origin}: {self.key}: " if self.key else f"{self.origin}: "
        return f"{where}{self.problem}" + (f"; {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Secret:
    """A resolved secret. Its value is only reachable through :meth:`reveal`."""

    value: str = field(repr=False)
    reference: str = ""

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return f"<secret {self.reference}>" if self.reference else "<secret>"

    def __repr__(self) -> str:
        return f"Secret({self.reference or '***'})"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_duration(text: str | float) -> float:
    """Seconds from ``5``, ``2.5``, ``500ms``, ``5s``, ``2m`` or ``1h``.

    Raises:
        ValueError: the text is not such a duration.
    """
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str | int) -> int:
    """Bytes from ``1048576``, ``64KiB``, ``1GiB``, ``10MB``.

    Raises:
        ValueError: the text is not such a size.
    """
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(text)
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply ``ZAPFLOW_A__B=value`` variables to the loaded document.

    Returns:
        The new document and, for every overridden dotted key, the variable name, so
        errors about those values can name the variable instead of the file.
    """
    result: dict[str, Any] = _deep_copy(data)
    origins: dict[str, str] = {}
    for name in sorted(environ):
        # Only ZAPFLOW_SECTION__KEY… names are overrides: a name without "__" (such as
        # ZAPFLOW_OPS_WEBHOOK, referenced by rules) is an ordinary variable.
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if any(not part for part in path):
            continue
        raw = environ[name]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str | int | float | bool | list | dict) or value is None:
            pass
        else:  # dates and the like: keep what the person typed
            value = raw
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
        origins[".".join(path)] = f"environment {name}"
    return result, origins


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


@dataclass(frozen=True)
class ConfigDocument:
    """A loaded ``zapflow.yaml`` with its overrides applied, ready to be read by sections."""

    path: Path
    data: Mapping[str, Any]
    env_origins: Mapping[str, str]
    environ: Mapping[str, str]

    def root(self) -> ConfigSection:
        return ConfigSection(self, "", self.data)

    def origin_of(self, key: str) -> str:
        """The file, or the environment variable that set ``key`` or one of its parents."""
        probe = key
        while probe:
            plain = re.sub(r"\[\d+\]", "", probe)
            if plain in self.env_origins:
                return self.env_origins[plain]
            if "." not in probe:
                break
            probe = probe.rsplit(".", 1)[0]
        return str(self.path)


def load_document(path: Path, environ: Mapping[str, str] | None = None) -> ConfigDocument:
    """Read the YAML file and apply environment overrides.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML or not a mapping.
    """
    env = dict(os.environ if environ is None else environ)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path), "", "file not found", "pass an existing file with --config"
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the file ({exc.strerror})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, "", f"not valid YAML: {problem}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            str(path),
            "",
            f"expected a mapping of settings at the top, found {_kind(loaded)}",
            "start the file with keys such as 'gateway:' and 'kafka:'",
        )
    data, origins = env_overrides(loaded, env)
    return ConfigDocument(path=path, data=data, env_origins=origins, environ=env)


def document_from_mapping(
    data: Mapping[str, Any],
    path: Path = Path("zapflow.yaml"),
    environ: Mapping[str, str] | None = None,
) -> ConfigDocument:
    """A document built from data already in memory (tests, ``zapflow dev``)."""
    env = dict(os.environ if environ is None else environ)
    merged, origins = env_overrides(dict(data), env)
    return ConfigDocument(path=path, data=merged, env_origins=origins, environ=env)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_MISSING: Final = object()


class ConfigSection:
    """Typed, checked access to one mapping of the document.

    Every getter takes the key, a default (omit it to make the key required) and returns
    a plain Python value or raises :class:`ConfigError` naming file, key and fix.
    """

    def __init__(self, document: ConfigDocument, prefix: str, data: Any) -> None:
        self.document = document
        self.prefix = prefix
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self._error_at(
                prefix, f"expected a mapping, found {_kind(data)}", "write it as 'key: value' lines"
            )
        self.data: Mapping[str, Any] = data

    # --- helpers ---------------------------------------------------------------
    def key_path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _error_at(self, key_path: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(self.document.origin_of(key_path), key_path, problem, fix)

    def error(self, key: str, problem: str, fix: str = "") -> ConfigError:
        """A :class:`ConfigError` for ``key`` of this section."""
        return self._error_at(self.key_path(key), problem, fix)

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self.error(key, "missing", f"add '{key}:' to the section")
            return default
        return value

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def check_keys(self, known: Iterable[str]) -> None:
        """Refuse keys this section does not define (typos must not be ignored)."""
        known_list = list(known)
        for key in self.data:
            if key not in known_list:
                raise self.error(
                    str(key),
                    f"unknown key{did_you_mean(str(key), known_list)}",
                    "known keys here: " + ", ".join(known_list),
                )

    # --- getters ---------------------------------------------------------------
    def section(self, key: str) -> ConfigSection:
        return ConfigSection(self.document, self.key_path(key), self.data.get(key))

    def sections(self, key: str) -> list[ConfigSection]:
        """A list of mappings, e.g. ``instances:``."""
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self.error(
                key, f"expected a list, found {_kind(value)}", "write one '- ' item per entry"
            )
        return [
            ConfigSection(self.document, f"{self.key_path(key)}[{i}]", item)
            for i, item in enumerate(value)
        ]

    def string(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected text, found {_kind(value)}", "write it as text")
        return str(value)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(
                key, f"expected true or false, found {_kind(value)}", "write true or false"
            )
        return value

    def integer(
        self, key: str, default: Any = _MISSING, minimum: int | None = None, example: int = 1
    ) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(
                key, f"expected a whole number, found {_kind(value)}", f"write e.g. {example}"
            )
        if minimum is not None and value < minimum:
            raise self.error(
                key, f"must be at least {minimum}, found {value}", f"write e.g. {example}"
            )
        return value

    def number(self, key: str, default: Any = _MISSING, minimum: float | None = None) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, found {_kind(value)}", "write e.g. 0.8")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, found {value}")
        return float(value)

    def duration(self, key: str, default: Any = _MISSING, minimum: float = 0.0) -> float:
        """Seconds; accepts ``5``, ``500ms``, ``5s``, ``2m``, ``1h``."""
        value = self._get(key, default)
        try:
            seconds = parse_duration(value)
        except (ValueError, TypeError):
            raise self.error(
                key,
                f"expected a duration, found {_kind(value)}",
                "write e.g. 5s, 500ms, 2m or a number of seconds",
            ) from None
        if seconds < minimum:
            raise self.error(
                key, f"must be at least {minimum:g}s, found {_kind(value)}", "write a longer one"
            )
        return seconds

    def size(self, key: str, default: Any = _MISSING, minimum: int = 0) -> int:
        """Bytes; accepts ``1048576``, ``64KiB``, ``1GiB``."""
        value = self._get(key, default)
        try:
            size = parse_size(value)
        except (ValueError, TypeError):
            raise self.error(
                key,
                f"expected a size, found {_kind(value)}",
                "write e.g. 512KiB, 1GiB or a number of bytes",
            ) from None
        if size < minimum:
            raise self.error(key, f"must be at least {minimum} bytes, found {_kind(value)}")
        return size

    def choice(self, key: str, choices: Iterable[str], default: Any = _MISSING) -> str:
        options = list(choices)
        value = self.string(key, default)
        if value not in options:
            raise self.error(
                key,
                f"unknown value {value!r}{did_you_mean(value, options)}",
                "use one of: " + ", ".join(options),
            )
        return value

    def string_list(self, key: str, default: Any = _MISSING) -> list[str]:
        """A list of text items; a single text item or ``a,b`` text is accepted too."""
        value = self._get(key, default)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                key, f"expected a list of text items, found {_kind(value)}", "write [a, b]"
            )
        return list(value)

    def secret(self, key: str, default: Any = _MISSING) -> Secret | None:
        """A secret given as ``${env:NAME}`` or ``${file:PATH}``; ``None`` if absent and optional.

        A literal value is refused: secrets in config files end up in repositories.
        """
        value = self._get(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a reference, found {_kind(value)}", _SECRET_FIX)
        match = _SECRET_REF.match(value.strip())
        if match is None:
            raise self.error(
                key, "secrets are not written in the file (found a literal value)", _SECRET_FIX
            )
        kind, target = match.group(1), match.group(2).strip()
        if kind == "env":
            env_value = self.document.environ.get(target)
            if env_value is None or not env_value.strip():
                raise self.error(
                    key,
                    f"environment variable {target} is not set",
                    f"export {target}=... before starting zapflow",
                )
            return Secret(env_value.strip(), value.strip())
        secret_path = Path(target)
        if not secret_path.is_absolute():
            secret_path = self.document.path.parent / secret_path
        try:
            text = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise self.error(
                key,
                f"cannot read secret file {secret_path} ({exc.strerror})",
                "create the file or fix the path",
            ) from None
        if not text:
            raise self.error(key, f"secret file {secret_path} is empty", "write the secret in it")
        return Secret(text, value.strip())


_SECRET_FIX: Final = "write ${env:NAME} or ${file:PATH} and put the secret there"
