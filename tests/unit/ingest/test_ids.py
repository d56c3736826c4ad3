from __future__ import annotations

import itertools
import random

import pytest

from worker.ingest.ids import UlidGenerator, decode_ulid_time, encode_ulid

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def counting_random(n: int) -> bytes:
    return bytes(n)


def test_encode_ulid_is_26_crockford_characters() -> None:
    text = encode_ulid(1_764_103_267_123, 12345)
    assert len(text) == 26
    assert set(text) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_encode_ulid_of_zero_and_max() -> None:
    assert encode_ulid(0, 0) == "0" * 26
    assert encode_ulid((1 << 48) - 1, (1 << 80) - 1) == "7" + "Z" * 25


def test_encode_ulid_matches_the_ulid_specifications_example() -> None:
    # github.com/ulid/spec: ulid(1469918176385) -> 01ARYZ6S41TSV4RRFFQ69G5FAV
    randomness = 0
    for char in "TSV4RRFFQ69G5FAV":
        randomness = randomness * 32 + ALPHABET.index(char)
    assert encode_ulid(1_469_918_176_385, randomness) == "01ARYZ6S41TSV4RRFFQ69G5FAV"


def test_encode_ulid_agrees_with_digit_by_digit_encoding() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        epoch_ms, randomness = rng.getrandbits(48), rng.getrandbits(80)
        value = (epoch_ms << 80) | randomness
        expected = "".join(ALPHABET[(value >> (125 - 5 * i)) & 31] for i in range(26))
        assert encode_ulid(epoch_ms, randomness) == expected


def test_time_round_trips() -> None:
    assert decode_ulid_time(encode_ulid(1_764_103_267_123, 99)) == 1_764_103_267_123


def test_encode_refuses_time_beyond_48_bits() -> None:
    with pytest.raises(ValueError, match="does not fit in 48 bits"):
        encode_ulid(1 << 48, 0)


def test_ids_of_one_generator_strictly_increase_within_a_millisecond() -> None:
    gen = UlidGenerator()
    ids = [gen.new(1_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_ids_increase_even_when_the_clock_steps_back() -> None:
    gen = UlidGenerator()
    first = gen.new(5_000)
    second = gen.new(4_000)
    assert second > first
    assert decode_ulid_time(second) == 5_000


def test_ids_sort_by_time() -> None:
    gen = UlidGenerator()
    times = [1_000, 1_001, 2_000, 86_400_000]
    ids = [gen.new(t) for t in times]
    assert ids == sorted(ids)
    assert [decode_ulid_time(i) for i in ids] == times


def test_random_part_comes_from_the_given_source() -> None:
    source = itertools.count()

    def rand(n: int) -> bytes:
        return next(source).to_bytes(n, "big")

    gen = UlidGenerator(rand)
    assert gen.new(1) == encode_ulid(1, 0)
    assert gen.new(2) == encode_ulid(2, 0)  # 1 >> 1 == 0
