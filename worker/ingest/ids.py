"""Time-ordered unique ids (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32).

Envelope ids sort by receive time, so a data team can tell order and spot a re-sent
event (it keeps its id). Within one millisecond the random part is incremented, as in
the ULID "monotonic" variant, so ids from one generator are strictly increasing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS: Final = 80
_RANDOM_MAX: Final = (1 << _RANDOM_BITS) - 1
_TIME_MAX: Final = (1 << 48) - 1


#: Every pair of digits, indexed by the 10 bits they stand for.
_PAIRS: Final = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
#: Where the 12 pairs after the first digit start: bits 124..115, ..., 14..5.
_PAIR_SHIFTS: Final = tuple(range(115, 4, -10))


def encode_ulid(epoch_ms: int, randomness: int) -> str:
    """The 26-character text of a ULID with this time and random part."""
    if not 0 <= epoch_ms <= _TIME_MAX:
        raise ValueError(f"time {epoch_ms} ms does not fit in 48 bits")
    if not 0 <= randomness <= _RANDOM_MAX:
        raise ValueError("random part does not fit in 80 bits")
    # 26 base32 digits are 130 bits: the 128-bit value with two zero bits in front. So a
    # first digit of its top 3 bits, 12 pairs of digits looked up 10 bits at a time, and a
    # last digit. Ingest makes one per event: this takes half the time or less of the
    # standard library's base32 (pure Python, 5 bytes at a time) (bench/README.md).
    value = (epoch_ms << _RANDOM_BITS) | randomness
    pairs = _PAIRS
    return "".join(
        [
            _ALPHABET[value >> 125],
            *[pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS],
            _ALPHABET[value & 31],
        ]
    )


def decode_ulid_time(ulid: str) -> int:
    """Milliseconds since the epoch encoded in a ULID's first 10 characters."""
    value = 0
    for char in ulid[:10].upper():
        value = (value << 5) | _ALPHABET.index(char)
    return value


class UlidGenerator:
    """Makes strictly increasing ULIDs from the times it is given.

    Pure apart from its own counter: the caller passes the time, and the random source
    can be replaced for tests.
    """

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._last_random = 0

    def new(self, epoch_ms: int) -> str:
        if epoch_ms <= self._last_ms:
            # Same millisecond (or the clock stepped back): keep order by counting up.
            epoch_ms = self._last_ms
            randomness = self._last_random + 1
            if randomness > _RANDOM_MAX:
                epoch_ms += 1
                randomness = int.from_bytes(self._random_bytes(10), "big") >> 1
        else:
            # The top bit stays clear so that thousands of increments never overflow.
            randomness = int.from_bytes(self._random_bytes(10), "big") >> 1
        self._last_ms = epoch_ms
        self._last_random = randomness
        return encode_ulid(epoch_ms, randomness)
