import hashlib

from worker.actions.ids import external_attributes, is_our_message_id, message_id_for


def test_message_id_is_zf_and_30_upper_hex_digits_of_the_key_hash():
    key = "after-hours-reply:01JDX:0:-:fire"
    expected = "ZF" + hashlib.sha256(key.encode()).hexdigest()[:30].upper()
    assert message_id_for(key) == expected
    assert len(message_id_for(key)) == 32


def test_message_id_is_stable_and_differs_per_key():
    assert message_id_for("a:b:0:-:fire") == message_id_for("a:b:0:-:fire")
    assert message_id_for("a:b:0:-:fire") != message_id_for("a:b:0:-:resolve")


def test_our_message_ids_are_recognised():
    assert is_our_message_id(message_id_for("k"))
    assert not is_our_message_id("3EB0C767D0D1A8B3F1D2")
    assert not is_our_message_id("ZF" + "g" * 30)


def test_external_attributes_carry_rule_and_key():
    assert external_attributes("r", "r:e:0:-:fire") == {
        "zapflow": {"rule": "r", "key": "r:e:0:-:fire"}
    }
