from __future__ import annotations

import orjson
import pytest

from worker.process.forward import Forward, read_forward, rekeyed_topic_name

ENVELOPE = b'{"id": "01JA", "instance": "shop-bot", "event": "messages.upsert", "data": {}}'


def test_forward_record_carries_the_rule_ids_and_the_envelope_bytes_as_read() -> None:
    forward = Forward("shop-bot", ("per-instance", "quiet"), "01JA", ENVELOPE)
    assert forward.to_json() == b'{"rules":["per-instance","quiet"],"envelope":' + ENVELOPE + b"}"
    assert orjson.loads(forward.to_json()) == {
        "rules": ["per-instance", "quiet"],
        "envelope": orjson.loads(ENVELOPE),
    }
    assert read_forward(forward.to_json()) == (("per-instance", "quiet"), orjson.loads(ENVELOPE))
    assert str(forward) == "forward of event 01JA by key 'shop-bot'"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1]", "a forward record is a JSON object, found list"),
        (b'{"rules": [1], "envelope": {}}', "a forward record's 'rules' is a list of rule ids"),
        (b'{"rules": ["a"], "envelope": "x"}', "a forward record's 'envelope' is a JSON object"),
    ],
)
def test_records_that_are_not_forwards_are_refused_with_what_is_wrong(
    raw: bytes, message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        read_forward(raw)
    assert str(raised.value) == message


def test_the_repartition_topic_is_named_after_the_app() -> None:
    assert rekeyed_topic_name("zapflow-process") == "zapflow-process-rekeyed"
