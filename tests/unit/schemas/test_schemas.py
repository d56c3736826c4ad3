from __future__ import annotations

import orjson
import pytest

from worker import schemas

ENVELOPE = {
    "id": "01JV6Z8K3QW5T7Y9B2N4M6P8R0",
    "instance": "shop-bot",
    "event": "connection.update",
    "received_at": "2026-11-25T20:41:07.123Z",
    "source": {"gateway": "localhost:8084", "connection": "c1", "seq": 1},
    "data": {"instance": "shop-bot", "state": "close", "statusReason": 401},
}

ACTION = {
    "idempotency_key": "r:01JV:0:-:fire",
    "rule_id": "r",
    "bundle_version": "v1",
    "event_id": "01JV",
    "action_index": 0,
    "item": None,
    "phase": "fire",
    "instance": "shop-bot",
    "kind": "notify",
    "params": {"text": "x"},
    "created_at": "2026-11-25T20:41:07.130Z",
}


@pytest.mark.parametrize("name", schemas.NAMES)
def test_every_shipped_schema_is_a_valid_json_schema(name: str) -> None:
    assert schemas.validator(name) is not None


def test_a_correct_envelope_validates() -> None:
    assert schemas.errors("envelope", ENVELOPE) == []


def test_envelope_errors_name_the_field_and_the_problem() -> None:
    broken = {**ENVELOPE, "event": "messaging-history.set", "received_at": "yesterday"}
    del broken["id"]
    found = schemas.errors("envelope", broken)
    assert "(root): 'id' is a required property" in found
    assert any(line.startswith("event: 'messaging-history.set' is not one of") for line in found)
    assert any(line.startswith("received_at: 'yesterday' does not match") for line in found)


def test_dead_letters_embed_a_valid_action_record() -> None:
    letter = {
        "record": ACTION,
        "error": "HTTP 400",
        "retriable": False,
        "attempts": 1,
        "failed_at": "2026-11-25T20:41:08.000Z",
    }
    assert schemas.errors("dlq", letter) == []
    bad = {**letter, "record": {**ACTION, "kind": "fax"}}
    assert schemas.errors("dlq", bad)[0].startswith("record/kind: 'fax' is not one of")


def test_unknown_schema_names_list_the_shipped_ones() -> None:
    with pytest.raises(KeyError) as err:
        schemas.load("nope")
    assert "shipped: envelope, invalid, action, dlq" in str(err.value)


def test_the_benchmarks_envelopes_are_envelopes_of_the_contract() -> None:
    # The benchmarks build their envelopes by hand, for speed; they must stay what ingest
    # writes, or the benchmarks measure something else.
    from bench import bench_rules, process_throughput, workload
    from bench.baselines import sample_envelope
    from worker.ingest.keys import partition_key

    def key_of(envelope: dict[str, object]) -> str:
        return partition_key(str(envelope["instance"]), str(envelope["event"]), envelope["data"])

    for key, raw in workload.envelopes(50):
        envelope = orjson.loads(raw)
        assert schemas.errors("envelope", envelope) == []
        assert len(raw) >= 1000
        assert key.decode() == key_of(envelope)
    for event, key, raw in process_throughput.events(300):
        envelope = orjson.loads(raw)
        assert schemas.errors("envelope", envelope) == []
        assert (event, key.decode()) == (envelope["event"], key_of(envelope))
    for envelope in bench_rules.make_events(300):
        assert schemas.errors("envelope", envelope) == []
    assert schemas.errors("envelope", sample_envelope(1000, 1)) == []
