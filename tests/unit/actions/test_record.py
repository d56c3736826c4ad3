from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from worker import schemas
from worker.actions.record import (
    ActionRecord,
    InvalidActionRecord,
    dlq_value,
    idempotency_key_for,
    rfc3339,
)

RECORD = {
    "idempotency_key": "after-hours-reply:01JDX:0:-:fire",
    "rule_id": "after-hours-reply",
    "bundle_version": "v1",
    "event_id": "01JDX",
    "action_index": 0,
    "item": None,
    "phase": "fire",
    "instance": "shop-bot",
    "kind": "whatsapp.send_text",
    "params": {"instance": "shop-bot", "to": "5511@s.whatsapp.net", "text": "hi"},
    "created_at": "2026-11-25T20:41:07.130Z",
}


def test_record_round_trips_through_json_unchanged():
    record = ActionRecord.from_json(orjson.dumps(RECORD))
    assert orjson.loads(record.to_json()) == RECORD


def test_idempotency_key_uses_dash_for_no_item():
    assert idempotency_key_for("r", "e", 2, None, "resolve") == "r:e:2:-:resolve"
    assert idempotency_key_for("r", "e", 0, "5511", "fire") == "r:e:0:5511:fire"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "invalid action record: not JSON"),
        (b"[1]", "invalid action record: expected a JSON object, found list"),
        (
            orjson.dumps({k: v for k, v in RECORD.items() if k not in ("kind", "params")}),
            "invalid action record: missing field(s) kind, params",
        ),
        (
            orjson.dumps({**RECORD, "kind": "sms"}),
            "invalid action record: unknown kind 'sms' (expected one of http, kafka.produce, "
            "log, notify, whatsapp.group_participants, whatsapp.send_text)",
        ),
        (
            orjson.dumps({**RECORD, "phase": "later"}),
            "invalid action record: field 'phase' must be 'fire' or 'resolve', not 'later'",
        ),
        (
            orjson.dumps({**RECORD, "action_index": "0"}),
            "invalid action record: field 'action_index' must be an integer",
        ),
        (
            orjson.dumps({**RECORD, "idempotency_key": ""}),
            "invalid action record: field 'idempotency_key' must not be empty",
        ),
        (
            orjson.dumps({**RECORD, "params": []}),
            "invalid action record: field 'params' must be an object",
        ),
    ],
)
def test_invalid_records_are_rejected_with_the_reason(raw, message):
    with pytest.raises(InvalidActionRecord) as info:
        ActionRecord.from_json(raw)
    assert str(info.value).startswith(message)


def test_rfc3339_is_utc_with_milliseconds():
    assert rfc3339(datetime(2026, 11, 25, 20, 41, 7, 123456, tzinfo=UTC)) == (
        "2026-11-25T20:41:07.123Z"
    )
    brasilia = timezone(timedelta(hours=-3))
    assert rfc3339(datetime(2026, 12, 31, 22, 0, 0, tzinfo=brasilia)) == (
        "2027-01-01T01:00:00.000Z"
    )


def test_dlq_value_has_the_contract_fields():
    record = ActionRecord.from_dict(RECORD)
    value = dlq_value(
        record,
        error="HTTP 400 Bad Request",
        retriable=False,
        attempts=1,
        failed_at=datetime(2026, 11, 25, 20, 41, 8, tzinfo=UTC),
    )
    assert value == {
        "record": RECORD,
        "error": "HTTP 400 Bad Request",
        "retriable": False,
        "attempts": 1,
        "failed_at": "2026-11-25T20:41:08.000Z",
    }


def test_dlq_values_validate_against_the_shipped_schema():
    value = dlq_value(
        ActionRecord.from_dict(RECORD),
        error="x",
        retriable=True,
        attempts=5,
        failed_at=datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert schemas.errors("dlq", value) == []
