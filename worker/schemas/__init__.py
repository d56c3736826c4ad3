"""JSON Schemas of what zapflow writes to Kafka, shipped with the package.

``envelope``: every record of ``codechat.<event>``; ``invalid``: ``codechat.invalid``;
``action``: ``codechat.actions``; ``dlq``: ``codechat.dlq``. Data teams can validate
against the same files (``python -c "import worker.schemas as s; print(s.path('envelope'))"``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

NAMES = ("envelope", "invalid", "action", "dlq")


def path(name: str) -> Path:
    """File system path of a shipped schema."""
    return Path(str(resources.files("worker.schemas").joinpath(f"{name}.schema.json")))


@cache
def load(name: str) -> dict[str, Any]:
    if name not in NAMES and not path(name).exists():
        raise KeyError(f"no schema named {name!r}; shipped: {', '.join(NAMES)}")
    data: dict[str, Any] = json.loads(path(name).read_text())
    return data


@cache
def _registry() -> Registry[Any]:
    resources_ = [(load(n)["$id"], Resource.from_contents(load(n))) for n in NAMES]
    return Registry().with_resources(resources_)


@cache
def validator(name: str) -> Draft202012Validator:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def errors(name: str, instance: Any) -> list[str]:
    """Every way ``instance`` breaks schema ``name``, as ``path: message`` lines (empty = valid)."""
    found = []
    for error in sorted(validator(name).iter_errors(instance), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(root)"
        found.append(f"{where}: {error.message}")
    return found
