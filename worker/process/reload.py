"""Hot reload of the rules directory: notice changes, load the whole bundle, swap or keep.

Polling is enough: rule files change a few times a day, a stat of a dozen files a second
costs nothing, and it needs no file-watching dependency. A changed directory is loaded as a
whole; any error keeps the bundle in force (and is reported once per change, not every poll).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from worker.process.engine import BundleLike, RulesEngine

log = logging.getLogger("zapflow.process.reload")

#: Files that make up a rules directory for change detection.
RULE_FILE_SUFFIXES = (".yaml", ".yml")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """(name, size, mtime in ns) of every rule file directly in ``directory``, sorted.

    Only the top level, as the loader reads it (``rules/tests/`` holds rule tests).

    A vanished or unreadable directory yields an empty fingerprint, which loading then
    reports as an error (the old bundle stays).
    """
    entries: list[tuple[str, int, int]] = []
    try:
        paths = sorted(directory.iterdir())
    except OSError:
        return ()
    for path in paths:
        if path.suffix not in RULE_FILE_SUFFIXES or not path.is_file():
            continue
        try:
            info = path.stat()
        except OSError:
            continue
        entries.append((path.name, info.st_size, info.st_mtime_ns))
    return tuple(entries)


def stale_rules(old: Mapping[str, str], new: Mapping[str, str]) -> frozenset[str]:
    """Rules whose state must go: removed, or defined differently in the new bundle."""
    return frozenset(rule_id for rule_id, digest in old.items() if new.get(rule_id) != digest)


@dataclass(frozen=True)
class LoadedRules:
    """A bundle in force, with what is needed to decide about the next one."""

    bundle: BundleLike
    #: The directory as it was when this bundle was read.
    fingerprint: Fingerprint
    #: Rule id -> digest of its definition.
    digests: Mapping[str, str]


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload check did."""

    #: ``"unchanged"``, ``"swapped"``, ``"same-version"`` or ``"failed"``.
    status: str
    #: Rules whose state is to be dropped (only when swapped).
    stale: frozenset[str] = frozenset()
    #: One line per problem when failed.
    errors: tuple[str, ...] = ()


@dataclass
class RulesWatcher:
    """Holds the bundle in force and replaces it when the directory changes."""

    directory: Path
    engine: RulesEngine
    current: LoadedRules
    #: Fingerprint of the last directory state that failed to load (reported once).
    failed: Fingerprint | None = field(default=None)

    @classmethod
    def start(cls, directory: Path, engine: RulesEngine) -> RulesWatcher:
        """Load the directory for the first time; load errors propagate to the caller."""
        before = fingerprint(directory)
        bundle = engine.load(directory)
        loaded = LoadedRules(bundle, before, dict(engine.rule_digests(bundle)))
        return cls(directory, engine, loaded)

    def check(self, force: bool = False) -> ReloadOutcome:
        """Reload when the directory changed since the bundle in force (or ``force``).

        Blocking (reads and compiles files); the caller may run it off the event loop, since
        the swap itself is a single attribute assignment.
        """
        now_print = fingerprint(self.directory)
        if not force and now_print in (self.current.fingerprint, self.failed):
            return ReloadOutcome("unchanged")
        try:
            bundle = self.engine.load(self.directory)
        except self.engine.load_error as exc:
            self.failed = now_print
            lines = tuple(str(exc).splitlines()) or (repr(exc),)
            log.error(
                "rules in %s not reloaded, keeping version %s:\n%s",
                self.directory,
                self.current.bundle.version,
                "\n".join(lines),
            )
            return ReloadOutcome("failed", errors=lines)
        self.failed = None
        if bundle.version == self.current.bundle.version:
            self.current = LoadedRules(self.current.bundle, now_print, self.current.digests)
            return ReloadOutcome("same-version")
        digests = dict(self.engine.rule_digests(bundle))
        stale = stale_rules(self.current.digests, digests)
        old_version = self.current.bundle.version
        self.current = LoadedRules(bundle, now_print, digests)
        log.info(
            "rules reloaded from %s: version %s -> %s (%d rules changed or removed)",
            self.directory,
            old_version,
            bundle.version,
            len(stale),
        )
        return ReloadOutcome("swapped", stale=stale)
