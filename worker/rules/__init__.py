"""The rule engine: YAML rules compiled once, evaluated purely (contract §3).

``load_bundle`` reads a directory of rule files; ``evaluate`` runs one event through it
and ``fire_due`` runs the timers; both return actions, state changes and a trace and never
touch the clock, the network or Kafka.
"""

from worker.rules.engine import evaluate, fire_due
from worker.rules.expressions import EvaluationError, ExpressionError
from worker.rules.loader import check_bundle, load_bundle
from worker.rules.model import Diagnostic, Rule, RuleBundle, RuleLoadError
from worker.rules.normalise import FIELDS, UnknownEvent, normalise
from worker.rules.records import ActionRecord, Evaluation, RuleTrace

__all__ = [
    "FIELDS",
    "ActionRecord",
    "Diagnostic",
    "Evaluation",
    "EvaluationError",
    "ExpressionError",
    "Rule",
    "RuleBundle",
    "RuleLoadError",
    "RuleTrace",
    "UnknownEvent",
    "check_bundle",
    "evaluate",
    "fire_due",
    "load_bundle",
    "normalise",
]
