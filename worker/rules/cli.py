"""``zapflow rules check | test | explain``: the ops tooling; no Kafka, no network."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="check, test and explain YAML rules (no Kafka needed)",
        description="Validate rule files, run their tests, and explain decisions for one event.",
    )
    sub = parser.add_subparsers(dest="rules_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: _usage(parser))

    check = sub.add_parser(
        "check",
        help="validate every rule file in DIR",
        description="Parse and validate every rule file: keys, conditions, regexes, templates "
        "(rendered against a sample of each event). Exit 0 when clean, 1 on errors, "
        "2 on warnings with --strict.",
    )
    check.add_argument("directory", metavar="DIR", help="directory of rule files (or one file)")
    check.add_argument("--strict", action="store_true", help="exit 2 when there are warnings")
    check.set_defaults(handler=_check)

    test = sub.add_parser(
        "test",
        help="run the rule tests in DIR/tests",
        description="Run YAML rule tests on a virtual clock; every produced action must be "
        "expected. Exit 0 when all pass, 1 otherwise.",
    )
    test.add_argument("directory", metavar="DIR", help="directory of rule files")
    test.add_argument("--tests", metavar="PATH", help="test directory or file (default DIR/tests)")
    test.add_argument("--run", metavar="REGEX", help="only tests whose name matches")
    test.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    test.add_argument(
        "-v", "--verbose", action="store_true", help="print the timeline of passing tests too"
    )
    test.set_defaults(handler=_test)

    explain = sub.add_parser(
        "explain",
        help="show how every rule treats one event",
        description="Print the normalised view of one envelope and every rule's decision.",
    )
    explain.add_argument("directory", metavar="DIR", help="directory of rule files")
    explain.add_argument(
        "--event", metavar="FILE", default="-", help="envelope JSON file (default: stdin)"
    )
    explain.add_argument(
        "--at",
        metavar="TIME",
        help="evaluation time, ISO 8601 (default: the envelope's received_at)",
    )
    explain.add_argument("--data", action="store_true", help="also print the raw payload")
    explain.set_defaults(handler=_explain)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _check(args: argparse.Namespace) -> int:
    from worker.rules import commands

    return commands.check(args)


def _test(args: argparse.Namespace) -> int:
    from worker.rules import commands

    return commands.test(args)


def _explain(args: argparse.Namespace) -> int:
    from worker.rules import commands

    return commands.explain(args)
